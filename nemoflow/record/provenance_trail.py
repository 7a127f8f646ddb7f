"""The provenance trail of an experiment run or a target, gathered once from the store and the ledger.

Writers (nemoflow.record.prov_export) turn it into W3C PROV or an RO-Crate: targets, their output
files, input files and code units are entities; runs (and the experiment run) are activities; the
host and the user are agents.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemoflow.errors import UserError
from nemoflow.record.audit import audit
from nemoflow.record.code_store import blob_path, recorded_code
from nemoflow.record.ledger import Ledger
from nemoflow.store.targets import Store


@dataclass
class Target:
    step: str
    key: str
    folder: Path
    manifest: dict[str, Any]
    run: dict[str, Any] | None  # the run that built it


@dataclass
class Trail:
    """Everything an export names; ``experiment`` is None for a target's chain built across runs."""

    subject: str
    experiment: dict[str, Any] | None
    targets: list[Target]
    code_files: dict[str, dict[str, str]]  # label -> module, sha256 (the kept source)
    store: Store
    user: str
    environments: dict[str, dict[str, Any]] = field(default_factory=dict)

    def code_blob(self, sha256: str) -> Path:
        return blob_path(self.store, sha256)

    @property
    def workdir(self) -> str | None:
        return (self.experiment or {}).get("workdir")


def gather(subject: str, *, store: Store, ledger: Ledger) -> Trail:
    """The trail of an experiment run (id or name: its latest run) or of a target and its upstream chain.

    Raises:
        UserError: ``subject`` names neither.
    """
    experiment = None if Path(subject).exists() else ledger.experiment(subject)
    if experiment is None and not Path(subject).exists():
        runs = ledger.experiments(subject)
        experiment = runs[0] if runs else None
    if experiment is not None:
        pairs = [(m["name"], m["key"]) for m in ledger.experiment_steps(experiment["id"])]
    else:
        pairs = [(link.step, link.key) for link in audit(subject, store=store, ledger=ledger).chain if link.manifest]
    targets = []
    for step, key in pairs:
        manifest = store.read_manifest(step, key)
        if manifest is None:
            continue  # not built (failed, or removed since): nothing to attest
        run = next((r for r in ledger.runs_of(key) if r["id"] == manifest.get("run_id")), None)
        targets.append(Target(step, key, store.target_dir(step, key), manifest, run))
    if not targets:
        raise UserError(f"{subject!r} names no built target in {store.root}")
    if experiment is None:
        built_by = targets[0].manifest.get("experiment_id")
        experiment = ledger.experiment(built_by) if built_by else None
    code = recorded_code(ledger, experiment["id"]) if experiment else {}
    envs = {}
    for t in targets:
        env_id = (t.run or {}).get("environment_id")
        if env_id and env_id not in envs:
            envs[env_id] = ledger.environment(env_id) or {}
    return Trail(subject, experiment, targets, code, store, _owner(ledger.path), envs)


def _owner(path: Path) -> str:
    """Who built the store: the owner of its ledger (the ledger records hosts, not users)."""
    try:
        return pwd.getpwuid(os.stat(path).st_uid).pw_name
    except (KeyError, OSError):
        return "unknown"
