"""Lineage downstream: every target and experiment run built from a target or an input file, transitively.

The walk is one recursive SQL query over the ledger's ``edges`` (each edge read once), so a
store of 100,000 steps answers in one pass. Which steps read an input file comes from their
recorded configs (``nemoflow.File`` is ``{"_file_": path}`` there) and declared files
(``file:<path>`` code parts); each candidate's manifest then says which content of it was used.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemoflow.errors import UserError
from nemoflow.record.audit import locate_target
from nemoflow.record.ledger import Ledger
from nemoflow.store.targets import Store

_DOWNSTREAM = """
with recursive down(key, depth) as (
    select value, 0 from json_each(?)
    union
    select e.key, d.depth + 1 from edges e join down d on e.upstream_key = d.key
)
select down.key as key, min(down.depth) as depth, s.name as name
from down left join steps s on s.key = down.key
group by down.key order by depth, name
"""
_RUNS = """
select distinct e.id, e.name, e.created, e.status from experiments e
join experiment_steps m on m.experiment_id = e.id
where m.key in (select value from json_each(?)) order by e.created
"""


@dataclass
class Downstream:
    """What was built from ``subject``: the seeds (depth 0) and everything after them."""

    subject: str
    input_file: str | None  # the subject as an input file (None: a target)
    targets: list[dict[str, Any]] = field(default_factory=list)  # step, key, depth, present, input_sha256
    experiments: list[dict[str, Any]] = field(default_factory=list)  # id, name, created, status

    def as_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "input_file": self.input_file,
            "targets": self.targets,
            "experiments": self.experiments,
        }


def downstream(subject: str, *, store: Store, ledger: Ledger) -> Downstream:
    """Every target built from ``subject`` (a file or folder in the store, a key, or an input file), and the runs.

    Raises:
        UserError: ``subject`` is none of those.
    """
    seeds, used, input_file = _seeds(subject, store, ledger)
    report = Downstream(subject, input_file)
    for row in ledger.rows(_DOWNSTREAM, [json.dumps(sorted(seeds))]):
        name = row["name"] or seeds.get(row["key"], "")
        report.targets.append(
            {
                "step": name,
                "key": row["key"],
                "depth": row["depth"],
                "present": store.is_complete(name, row["key"]) if name else False,
                **({"input_sha256": used[row["key"]]} if row["key"] in used else {}),
            }
        )
    keys = json.dumps([t["key"] for t in report.targets])
    report.experiments = list(ledger.rows(_RUNS, [keys]))
    return report


def _seeds(subject: str, store: Store, ledger: Ledger) -> tuple[dict[str, str], dict[str, str], str | None]:
    """(key -> step of the starting targets, key -> sha256 of the input each used, the input file or None)."""
    path = Path(subject)
    inside_store = path.exists() and os.path.abspath(path).startswith(str(store.root) + os.sep)
    if not path.exists() or inside_store:
        step, key, _ = locate_target(subject, store)
        return {key: step}, {}, None
    seeds, used = {}, {}
    for row in ledger.rows(
        "select key, name from steps where config like ? or code_parts like ?",
        [f"%{path.name}%", f"%{path.name}%"],
    ):
        sha = _input_used(store, row["name"], row["key"], ledger, path)
        if sha is not None:
            seeds[row["key"]], used[row["key"]] = row["name"], sha
    return seeds, used, str(path)


def _input_used(store: Store, step: str, key: str, ledger: Ledger, path: Path) -> str | None:
    """The sha256 of ``path`` the target read ("" when its manifest is gone), or None when it did not read it."""
    manifest = store.read_manifest(step, key)
    if manifest is not None:
        inputs = manifest.get("inputs", {})
        declared = {
            p.removeprefix("file:"): v for p, v in manifest.get("code_parts", {}).items() if p.startswith("file:")
        }
        for written, sha in {**inputs, **declared}.items():
            if _same_file(written, path, _workdir(ledger, manifest)):
                return sha
        return None
    return "" if f'"{path}"' in json.dumps(ledger.step_configs([key]).get(key)) else None


def _workdir(ledger: Ledger, manifest: dict[str, Any]) -> str | None:
    row = ledger.experiment(manifest.get("experiment_id") or "")
    return row.get("workdir") if row else None


def _same_file(written: str, path: Path, workdir: str | None) -> bool:
    """Is the input path as a step wrote it (relative to its build's folder) the file ``path``?"""
    target = os.path.realpath(path)
    if os.path.isabs(written):
        return os.path.realpath(written) == target
    return any(
        os.path.realpath(os.path.join(base, written)) == target for base in {workdir or os.getcwd(), os.getcwd()}
    )


def ensure_known(report: Downstream) -> None:
    """An input file no recorded step read is an error the auditor should see, not an empty answer."""
    if report.input_file is not None and not report.targets:
        raise UserError(
            f"no recorded step read {report.input_file}",
            hint="give the path as the pipeline names it (relative to where the build ran), or a target's file",
        )
