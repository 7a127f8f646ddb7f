"""The executor interface: submit a job, follow it, get a JobResult back."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic


class JobState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"  # it ran longer than its time limit and was stopped

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMEOUT)


@dataclass
class Job:
    """One step, ready to launch: a command run in ``cwd`` with ``env``, writing ``output_dir``."""

    step: str
    key: str
    command: list[str]
    output_dir: Path
    log_path: Path
    cwd: str
    env: dict[str, str] = field(default_factory=dict)
    tail_logs: bool = False
    follows_parent: bool = False  # the command ends itself when the build dies (nemoflow.run_step does)
    spec: dict[str, Any] | None = None  # what `python -m nemoflow.run_step` reads; paths as on this machine
    run_id: str = ""
    experiment_id: str = ""
    stage_dir: Path | None = None  # a build-wide folder where executors may keep packages they stage

    @property
    def name(self) -> str:
        """A short, unique and readable name for this job (a Slurm job name, a container name)."""
        return f"{self.step}-{self.key[:12]}-{self.run_id[-8:]}" if self.run_id else f"{self.step}-{self.key[:12]}"


@dataclass
class Handle:
    """What ``submit`` returns; ``job_id`` is the backend's own id (a pid, a Slurm job id...)."""

    job: Job
    job_id: str
    native: Any = None  # the backend's object (a Popen, a container...)
    details: dict[str, Any] = field(default_factory=dict)  # recorded in the ledger: where the job lives, code digest


@dataclass(frozen=True)
class JobResult:
    """How a job ended."""

    state: JobState
    exit_code: int | None = None
    error: str | None = None
    backend_state: str | None = None  # the backend's own word for it (Slurm's COMPLETED, FAILED, TIMEOUT...)

    @property
    def succeeded(self) -> bool:
        return self.state is JobState.SUCCEEDED


class Executor(pydantic.BaseModel):
    """Where and how a step runs. Subclasses implement the five verbs."""

    model_config = pydantic.ConfigDict(extra="forbid", validate_assignment=True)

    env_vars: dict[str, str] = {}
    timeout: float | None = pydantic.Field(default=None, gt=0)
    """Seconds a step may run; then it is stopped (``cancel``), recorded ``timeout`` and failed.
    None: the build's ``--step-timeout``, else no limit."""

    @property
    def name(self) -> str:
        """The registry name of this executor kind (``local``, ``slurm``, ...)."""
        return type(self).__name__.removesuffix("Executor").lower()

    def submit(self, job: Job) -> Handle:
        raise NotImplementedError

    def status(self, handle: Handle) -> JobState:
        raise NotImplementedError

    def logs(self, handle: Handle, follow: bool = False) -> str:
        return handle.job.log_path.read_text() if handle.job.log_path.exists() else ""

    def cancel(self, handle: Handle) -> None:
        raise NotImplementedError

    def wait(self, handle: Handle) -> JobResult:
        raise NotImplementedError
