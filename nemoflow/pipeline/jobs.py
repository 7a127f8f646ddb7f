"""NeMo Run's jobs: their names, the task forms ``exp.add`` takes, and the errors NeMo Run raises about them."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nemoflow.configs.core import Buildable, Partial, Script
from nemoflow.errors import UserError, did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    from nemoflow.pipeline.experiment import Experiment, Step


class ExperimentAssertionError(UserError, AssertionError):
    """What NeMo Run asserts (a job group without a name, an unknown dependency), as a UserError."""


class ExperimentTypeError(UserError, TypeError):
    """A task that is not a config, Script or function (NeMo Run raises TypeError), as a UserError."""


class ExperimentValueError(UserError, ValueError):
    """A bad value for an experiment option (a log level), as a UserError."""


class JobLookup:
    """An experiment's jobs as NeMo Run names them: ``exp.tasks``, and the steps a job id names."""

    steps: dict[str, Step]
    groups: dict[str, list[str]]

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
        grouped = {member: group for group, members in self.groups.items() for member in members}
        tasks: list[Any] = []
        seen: set[str] = set()
        for name, step in self.steps.items():
            group = grouped.get(name)
            if group is None:
                tasks.append(step.task)
            elif group not in seen:
                seen.add(group)
                tasks.append([self.steps[m].task for m in self.groups[group]])
        return tasks


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
