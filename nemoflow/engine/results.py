"""Build results as data: what ran, what was skipped, what failed, each with its reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StepOutcome:
    """One step's part in a build."""

    name: str
    key: str
    reason: str
    error: str | None = None
    exit_code: int | None = None
    seconds: float | None = None
    log: str | None = None  # where its full log is (a failed attempt's folder), when it ran

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "key": self.key, "reason": self.reason}
        for extra in ("error", "exit_code", "seconds", "log"):
            if getattr(self, extra) is not None:
                data[extra] = getattr(self, extra)
        return data


@dataclass
class BuildResult:
    """``ran`` built now, ``skipped`` were up to date, ``failed`` failed or could not run."""

    ran: list[StepOutcome] = field(default_factory=list)
    skipped: list[StepOutcome] = field(default_factory=list)
    failed: list[StepOutcome] = field(default_factory=list)
    experiment_id: str | None = None
    submitted: list[StepOutcome] = field(default_factory=list)  # (--detach) handed to their cluster, collected later
    deferred: list[StepOutcome] = field(default_factory=list)  # (--detach) downstream of submitted steps: a later build

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        return {
            "experiment_id": self.experiment_id,
            "ran": [o.as_dict() for o in self.ran],
            "skipped": [o.as_dict() for o in self.skipped],
            "failed": [o.as_dict() for o in self.failed],
            "submitted": [o.as_dict() for o in self.submitted],
            "deferred": [o.as_dict() for o in self.deferred],
        }
