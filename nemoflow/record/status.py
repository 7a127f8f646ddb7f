"""The state of every step of a pipeline: built, to build, failed; with its last run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nemoflow.pipeline.plan import Plan
from nemoflow.record.ledger import Ledger
from nemoflow.record.reproduce import nondeterministic
from nemoflow.store.targets import process_alive


@dataclass(frozen=True)
class StepStatus:
    """A row of ``nemoflow status``."""

    name: str
    key: str
    state: str  # done, pending (would run), running, interrupted, cancelled, or failed (its last run failed)
    reason: str
    output: str | None
    last_run: dict[str, Any] | None
    code_parts: dict[str, str] = field(default_factory=dict)  # what its key counts (see nemoflow.pipeline.fingerprint)
    why: list[Any] = field(default_factory=list)  # Change records, when it would run
    nondeterministic: bool = False  # its latest `nemoflow reproduce` rebuilt different outputs

    @property
    def seconds(self) -> float | None:
        run = self.last_run
        return round(run["ended"] - run["started"], 3) if run and run.get("ended") else None

    def as_dict(self) -> dict[str, Any]:
        run = self.last_run or {}
        return {
            "name": self.name,
            "key": self.key,
            "state": self.state,
            "reason": self.reason,
            "output": self.output,
            "code_units": self.code_parts,
            "why": [c.to_data() for c in self.why],
            "last_run": run.get("id"),
            "started": run.get("started"),
            "seconds": self.seconds,
            "executor": run.get("executor"),
            "nondeterministic": self.nondeterministic,
        }


def plan_status(plan: Plan, ledger: Ledger | None) -> list[StepStatus]:
    """One row per planned step, with its latest run from the ledger (one query per 500 steps)."""
    runs = ledger.last_runs(s.key for s in plan) if ledger is not None else {}
    flaky = nondeterministic(ledger, (s.key for s in plan)) if ledger is not None else {}
    rows = []
    for step in plan:
        run = runs.get(step.key)
        reason = step.reason.value
        if not step.runs:
            state = "done"
        elif run is not None and run["status"] == "submitted":  # left to its cluster by a detached build
            state, reason = "submitted", f"{run.get('backend_state') or 'SUBMITTED'}, job {run.get('job_id')}"
        elif run is not None and run["status"] == "cancelled":
            state = "cancelled"
        elif run is not None and run["status"] not in ("succeeded", "running"):
            state = "failed"
        elif run is not None and run["status"] == "running":
            state = "running" if process_alive(run.get("host"), run.get("pid")) else "interrupted"
        else:
            state = "pending"
        output = str(plan.store.target_dir(step.name, step.key)) if state == "done" else None
        rows.append(
            StepStatus(step.name, step.key, state, reason, output, run, step.code_parts, step.why, step.key in flaky)
        )
    return rows
