"""NeMo Run's jobs: their names, the task forms ``exp.add`` takes, and the errors NeMo Run raises about them."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nemoflow.configs.core import Buildable, Partial, Script
from nemoflow.errors import UserError, did_you_mean

STEP_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.=+-]*$")

if TYPE_CHECKING:  # pragma: no cover
    from nemoflow.pipeline.experiment import Experiment, Step


class ExperimentAssertionError(UserError, AssertionError):
    """What NeMo Run asserts (a job group without a name, an unknown dependency), as a UserError."""


class ExperimentTypeError(UserError, TypeError):
    """A task that is not a config, Script or function (NeMo Run raises TypeError), as a UserError."""


class ExperimentValueError(UserError, ValueError):
    """A bad value for an experiment option (a log level), as a UserError."""


@dataclass
class Job:
    """NeMo Run's view of one job of an experiment (``exp.jobs``): a step, or a job group's steps."""

    id: str
    tasks: list[Any]
    executors: list[Any]
    dependencies: list[str]
    tail_logs: bool = False
    steps: list[str] = field(default_factory=list)  # nemoflow's steps of the job
    group: bool = False

    @property
    def task(self) -> Any:
        """The task of a single job (a group: the list of its tasks)."""
        return self.tasks if self.group else self.tasks[0]

    @property
    def executor(self) -> Any:
        """The executor of the job (a group: of its first task)."""
        return self.executors[0]


class JobLookup:
    """An experiment's jobs as NeMo Run names them: ``exp.jobs``, ``exp.tasks``, the steps a job id names, free names."""

    steps: dict[str, Step]
    groups: dict[str, list[str]]
    rename_duplicates: bool

    def _unique(self, step_name: str, *, explicit: bool) -> str:
        """The name itself when free; taken: NeMo Run's ``<name>_<n>`` with ``rename_duplicates``, else an error."""
        if not STEP_NAME.match(step_name):
            raise UserError(f"invalid step name {step_name!r}", hint="use letters, digits, '_', '-', '.', '=', '+'")
        if self._taken(step_name) and self.rename_duplicates:
            step_name = f"{step_name}_{len(self.tasks)}"
        if self._taken(step_name):
            raise UserError(
                f"two steps are named {step_name!r}",
                hint="give each step a unique name=..., or Experiment(..., rename_duplicates=True)",
            )
        return step_name

    def _taken(self, name: str) -> bool:
        return name in self.steps or name in self.groups

    def _check_free(self, name: str) -> None:
        if self._taken(name):
            raise UserError(f"two steps are named {name!r}", hint="give each step a unique name=...")

    def _free_name(self, task: Buildable[Any] | Script) -> str:
        base = target_base(task)
        name, n = base, 1
        while self._taken(name) and not self.rename_duplicates:
            n += 1
            name = f"{base}-{n}"
        return name

    @property
    def jobs(self) -> list[Job]:
        """The jobs in the order they were added, as NeMo Run lists them (a job group is one job)."""
        grouped = {member: group for group, members in self.groups.items() for member in members}
        jobs: dict[str, Job] = {}
        for name, step in self.steps.items():
            job_id = grouped.get(name, name)
            job = jobs.get(job_id)
            if job is None:
                outside = [d for d in step.dependencies if grouped.get(d) != job_id]
                plain = name not in grouped and not any(d in grouped for d in outside)
                # a step's own list, so appending to it adds a dependency, as in NeMo Run
                dependencies = step.dependencies if plain else _job_ids(outside, grouped)
                job = Job(job_id, [], [], dependencies, step.tail_logs, group=name in grouped)
                jobs[job_id] = job
            job.tasks.append(step.task)
            job.executors.append(step.executor)
            job.steps.append(name)
        return list(jobs.values())

    def _job(self, job_id: str) -> list[str]:
        if job_id in self.groups:
            return self.groups[job_id]
        if job_id in self.steps:
            return [job_id]
        return by_nemo_run_id(job_id, self.steps)

    def step_names(self, job_id: Any) -> list[str]:
        """The steps a job id names: a step, a job group's steps, or NeMo Run's id of a step.

        Raises:
            UserError: no such step.
        """
        key = str(job_id)  # a StepHandle is its name
        names = self._job(key)
        if not names:
            raise UserError(f"no step named {key!r}", hint=did_you_mean(key, [*self.steps, *self.groups]))
        return names

    @property
    def tasks(self) -> list[Any]:
        """The tasks in the order they were added (a job group: the list of its tasks), as NeMo Run's
        ``exp.tasks``; change one in place to change its step."""
        return [job.task for job in self.jobs]


def _job_ids(names: list[str], grouped: dict[str, str]) -> list[str]:
    """Step names as job ids: the steps of a group become the group, once."""
    return list(dict.fromkeys(grouped.get(name, name) for name in names))


def namespace(task: Any) -> str:
    """NeMo Run's default job id of a task: ``module.qualname`` of its target, or the Script's name."""
    if isinstance(task, Script):
        return task.get_name() if hasattr(task, "get_name") else Path(task.path or "script").name
    target = task.__fn_or_cls__ if isinstance(task, Buildable) else task
    module = getattr(target, "__module__", "") or ""
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", "step")
    return f"{module}.{name}" if module and module != "__main__" else name


def target_base(task: Any) -> str:
    """nemoflow's default step name of a task: its function's or script's name."""
    if isinstance(task, Script):
        return Path(task.path).stem if task.path else "script"
    return getattr(task.__fn_or_cls__, "__name__", "step")


def by_nemo_run_id(job_id: str, steps: dict[str, Step]) -> list[str]:
    """The steps NeMo Run would have called ``job_id``: ``module.function`` is the first step of that
    target, ``module.function_<n>`` the one added at position ``n``; [] when none."""
    order = list(steps.values())
    match = re.fullmatch(r"(.*)_(\d+)", job_id)
    if match:
        base, position = match.group(1), int(match.group(2))
        if position < len(order) and namespace(order[position].task) == base:
            return [order[position].name]
    return [step.name for step in order if namespace(step.task) == job_id][:1]


def as_task(task: Any, arguments: dict[str, Any]) -> Buildable[Any] | Script:
    """A step's task: a config or Script as it is; a plain function with its arguments as a Partial."""
    if isinstance(task, (Buildable, Script)):
        if arguments:
            raise ExperimentTypeError(
                f"exp.add() got unexpected keyword arguments {sorted(arguments)} for a {type(task).__name__}",
                hint="set them on the config, or pass the plain function",
            )
        return task
    if callable(task) and not isinstance(task, type):
        return Partial(task, **arguments)
    raise ExperimentTypeError(
        f"a step's task must be a nemoflow.Partial, Config, Script or function, got {type(task).__name__}",
        hint="wrap the function: nemoflow.Partial(fn, **arguments)",
    )


def copy_task(task: Any, exp: Experiment) -> Any:
    """A deep copy of a task whose step references still point at ``exp`` (not at a copy of it)."""
    return copy.deepcopy(task, {id(exp): exp})


def default_executor() -> Any:
    """The executor of a step added without one, for its plugins to change: a local subprocess."""
    from nemoflow.runs.launch import default_executor

    return default_executor()
