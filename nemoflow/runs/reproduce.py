"""``nemoflow reproduce``: rebuild a target (and what it needs) in a scratch store from what was recorded, and compare.

What is used: the experiment run that built the target (its configs and executors, from the
ledger), the source of the user's modules that run imported (kept in the store: see
nemoflow.record.code_store), and the input files, which must still have the hashes the key
recorded (a changed input gives another key: reported, not hidden). The rebuild runs in a
fresh process whose import path starts with the recorded code, so the working tree may have
moved on. Outputs are then compared file by file (nemoflow.record.reproduce).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemoflow.errors import UserError
from nemoflow.record.audit import locate_target
from nemoflow.record.code_store import lay_out, recorded_code
from nemoflow.record.ledger import Ledger
from nemoflow.record.reproduce import FAILED, IDENTICAL, TargetComparison, compare_target, record_reproductions
from nemoflow.runs.catalog import latest_id, open_ledger
from nemoflow.store.targets import Store


@dataclass
class ReproduceReport:
    """Every target rebuilt for one subject, the subject's first."""

    subject: str
    experiment_id: str
    targets: list[TargetComparison] = field(default_factory=list)
    problem: str = ""  # why nothing could be rebuilt
    scratch: str | None = None  # kept scratch folder, if asked for

    @property
    def ok(self) -> bool:
        return not self.problem and all(t.outcome == IDENTICAL and t.rebuilt_key == t.key for t in self.targets)

    def as_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "experiment_id": self.experiment_id,
            "ok": self.ok,
            "problem": self.problem,
            "scratch": self.scratch,
            "targets": [t.as_dict() for t in self.targets],
        }


def reproduce(subject: str, store: Store, *, executor: str | None = None, keep: bool = False) -> ReproduceReport:
    """Rebuild ``subject`` (a file or folder of a target, a key or key prefix, or an experiment run id or name).

    Raises:
        UserError: the subject names nothing in the store or the ledger.
    """
    ledger = open_ledger(store)
    try:
        experiment_id, until = _subject(subject, store, ledger)
        row = ledger.experiment(experiment_id)
        if row is None:
            raise UserError(f"the experiment run {experiment_id} that built {subject} is not in {ledger.path}")
        code = recorded_code(ledger, experiment_id)
        members = {m["name"]: m["key"] for m in ledger.experiment_steps(experiment_id)}
    finally:
        ledger.close()
    report = ReproduceReport(subject, experiment_id)
    if not code:
        report.problem = f"the run {experiment_id} kept no code (built before nemoflow kept it): it cannot be rebuilt"
        return report
    scratch = Path(tempfile.mkdtemp(prefix="nemoflow-reproduce-"))
    try:
        rebuilt = _rebuild(store, scratch, row, code, until, executor)
        if rebuilt.get("problem"):
            report.problem = rebuilt["problem"]
        report.targets = _compare(store, Store(scratch / "targets"), members, rebuilt, until)
    finally:
        if keep:
            report.scratch = str(scratch)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    ledger = Ledger(ledger.path)
    try:
        record_reproductions(ledger, [t for t in report.targets if t.outcome != FAILED])
    finally:
        ledger.close()
    return report


def _subject(subject: str, store: Store, ledger: Ledger) -> tuple[str, list[str]]:
    """(experiment run id, the step to build up to, or [] for all of the run's steps)."""
    if ledger.experiment(subject) is not None:
        return subject, []
    if not Path(subject).exists() and ledger.experiments(subject):
        return latest_id(subject, store), []
    step, key, _ = locate_target(subject, store)
    manifest = store.read_manifest(step, key) or {}
    if not manifest.get("experiment_id"):
        raise UserError(f"the manifest of {step}/{key[:12]} names no experiment run: it cannot be rebuilt")
    return manifest["experiment_id"], [step]


def _rebuild(
    store: Store, scratch: Path, row: dict[str, Any], code: dict[str, Any], until: list[str], executor: str | None
) -> dict[str, Any]:
    """Run the job in a fresh process; what it reports (step -> rebuilt key, a problem)."""
    missing = lay_out(store, code, scratch / "code")
    if missing:
        return {"problem": f"the kept source of {', '.join(missing)} is gone from {store.root}/.code", "keys": {}}
    spec = {
        "experiment_id": row["id"],
        "store": str(store.root),
        "scratch_store": str(scratch / "targets"),
        "code_root": str(scratch / "code"),
        "pipeline": next((label for label, e in code.items() if e["module"] == row["module"]), None),
        "until": until,
        "executor": executor,
        "result": str(scratch / "result.json"),
    }
    (scratch / "spec.json").write_text(json.dumps(spec))
    workdir = row["workdir"] if row.get("workdir") and os.path.isdir(row["workdir"]) else os.getcwd()
    proc = subprocess.run(
        [sys.executable, "-m", "nemoflow.runs.reproduce_job", str(scratch / "spec.json")],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        return json.loads((scratch / "result.json").read_text())
    except (FileNotFoundError, ValueError):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"problem": "the rebuild failed: " + " | ".join(tail), "keys": {}}


def _compare(
    store: Store, scratch: Store, members: dict[str, str], rebuilt: dict[str, Any], until: list[str]
) -> list[TargetComparison]:
    """One comparison per rebuilt step (the subject first), against the target the run recorded."""
    keys: dict[str, str] = rebuilt.get("keys", {})
    names = [*until, *(n for n in keys if n not in until)] if keys else list(until or members)
    found = []
    for name in names:
        key = members.get(name) or keys.get(name, "")
        new_key = keys.get(name)
        comparison = TargetComparison(name, key, new_key)
        original = store.read_manifest(name, key) if key else None
        copy = scratch.read_manifest(name, new_key) if new_key else None
        if original is None:
            comparison.problem = "the recorded target is gone from the store (removed by gc?)"
        elif copy is None:
            comparison.problem = rebuilt.get("failed", {}).get(name) or rebuilt.get("problem") or "not rebuilt"
        else:
            comparison = compare_target(
                name, key, (store.target_dir(name, key), original), (scratch.target_dir(name, new_key), copy), new_key
            )
            if new_key != key:
                comparison.problem = ""  # compared by step name; the key change is reported with it
        found.append(comparison)
    return found
