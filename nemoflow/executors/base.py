"""The executor interface: submit a job, follow it, get a JobResult back."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import pydantic

from nemoflow.executors.launchers import Launcher, LauncherName, as_launcher, launcher_from_data
from nemoflow.executors.macros import ExecutorMacros


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


LauncherField = Annotated[
    pydantic.SerializeAsAny[Launcher] | LauncherName, pydantic.BeforeValidator(launcher_from_data)
]


class Executor(pydantic.BaseModel):
    """Where and how a step runs. Subclasses implement the five verbs.

    The NeMo Run helpers are here too: ``nnodes()``, ``nproc_per_node()``, ``assign(...)``,
    ``get_launcher()`` and ``macro_values()``; what ``assign`` sets is kept out of the fields, so it
    never reaches the executor's recorded data.
    """

    model_config = pydantic.ConfigDict(extra="forbid", validate_assignment=True)

    env_vars: dict[str, str] = {}
    timeout: float | None = pydantic.Field(default=None, gt=0)
    """Seconds a step may run; then it is stopped (``cancel``), recorded ``timeout`` and failed.
    None: the build's ``--step-timeout``, else no limit."""
    launcher: LauncherField | None = None
    """How a multi-process step is started: ``"torchrun"`` / ``Torchrun(...)``, or None (the command as is)."""

    _experiment_id: str | None = pydantic.PrivateAttr(default=None)
    _experiment_dir: str = pydantic.PrivateAttr(default="")
    _job_dir: str = pydantic.PrivateAttr(default="")
    _launchers: dict[str, Launcher] = pydantic.PrivateAttr(default_factory=dict)

    @property
    def name(self) -> str:
        """The registry name of this executor kind (``local``, ``slurm``, ...)."""
        return type(self).__name__.removesuffix("Executor").lower()

    # ---- NeMo Run's executor helpers --------------------------------------------------------------
    @property
    def experiment_id(self) -> str | None:
        """The experiment id :meth:`assign` gave (None before)."""
        return self._experiment_id

    @property
    def experiment_dir(self) -> str:
        """The experiment folder :meth:`assign` gave ("" before)."""
        return self._experiment_dir

    @property
    def job_dir(self) -> str:
        """The task's folder :meth:`assign` gave: ``exp_dir/task_dir`` ("" before)."""
        return self._job_dir

    def info(self) -> str:
        return type(self).__qualname__

    def clone(self) -> Executor:
        """An equal, independent copy."""
        return self.model_copy(deep=True)

    def assign(self, exp_id: str, exp_dir: str, task_id: str, task_dir: str) -> None:
        """Tie this executor to one task of an experiment (an executor kind that can run tasks implements it)."""
        raise NotImplementedError

    def _assign_dirs(self, exp_id: str, exp_dir: str, task_dir: str) -> None:
        self._experiment_id = exp_id
        self._experiment_dir = exp_dir
        self._job_dir = os.path.join(exp_dir, task_dir)

    def nnodes(self) -> int:
        """The number of nodes a step runs on (torchrun's ``--nnodes``)."""
        raise NotImplementedError

    def nproc_per_node(self) -> int:
        """The number of processes per node (torchrun's ``--nproc_per_node``)."""
        raise NotImplementedError

    def macro_values(self) -> ExecutorMacros | None:
        """This executor's values for the :class:`ExecutorMacros` placeholders (None: it has none)."""
        return None

    def get_launcher(self) -> Launcher:
        """The launcher as an object: ``Torchrun()`` for ``"torchrun"``, a plain ``Launcher()`` for None."""
        if isinstance(self.launcher, Launcher):
            return self.launcher
        name = self.launcher or "none"
        if name not in self._launchers:
            self._launchers[name] = as_launcher(self.launcher)
        return self._launchers[name]

    def cleanup(self, handle: str) -> None:
        """Nothing to clean up after a job by default."""

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
