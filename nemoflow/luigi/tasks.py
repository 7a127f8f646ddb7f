"""The luigi adapter: ``StepTask``, whose only significant parameter is the step's key (a subclass per step name).

A task may also stand for a group of steps (``key`` then holds their keys, comma-separated, in
plan order): in-process builds hand luigi one task per chunk of steps, which keeps luigi's
per-task cost off each step.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, ClassVar

import luigi

from nemoflow.errors import StepFailed
from nemoflow.pipeline.plan import PlannedStep, executor_name

if TYPE_CHECKING:  # the build hands its context in; luigi/ never imports engine/
    from nemoflow.engine.step import BuildContext

_SEP = ","
STEP_RESOURCE = "nemoflow_steps"  # luigi resource that caps running steps (``max_concurrent``)


def executor_resource(executor: str) -> str:
    """The luigi resource that caps the running steps of one executor on luigid."""
    return f"executor_{executor}"


class StepTask(luigi.Task):
    """A planned step as luigi sees it: complete when its manifest exists; run builds it.

    The config lives in the plan, looked up by key; ``step``, ``experiment`` and ``executor`` are
    only there for display (luigi's visualiser lists them with each task, in this order). A single
    step's task is of a subclass named after the step (:func:`step_class`), so its family, which
    the visualiser's list and graph show, says which step it is.
    """

    step: str = luigi.Parameter(significant=False, default="")
    key: str = luigi.Parameter()
    experiment: str = luigi.Parameter(significant=False, default="")
    executor: str = luigi.Parameter(significant=False, default="")

    context: ClassVar[BuildContext | None] = None  # set by the scheduler for the build in progress

    @classmethod
    def get_params(cls) -> list[tuple[str, luigi.Parameter]]:
        """luigi's own version walks ``dir(cls)`` on every task instantiation; the answer never changes."""
        cached = cls.__dict__.get("_nemoflow_params")
        if cached is None:
            cached = super().get_params()
            cls._nemoflow_params = cached
        return cached

    @classmethod
    def _context(cls) -> BuildContext:
        if cls.context is None:
            raise RuntimeError("StepTask used outside a nemoflow build")
        return cls.context

    def planned(self) -> list[PlannedStep]:
        """The step (or, for a group, the steps in plan order) this task stands for."""
        by_key = self._context().plan.by_key
        return [by_key[key] for key in self.key.split(_SEP)]

    @property
    def resources(self) -> dict[str, int]:  # type: ignore[override]
        """The luigi resources a running task holds one unit of.

        Local scheduler: ``STEP_RESOURCE`` when the build caps running steps (``max_concurrent``).
        Central (luigid): ``STEP_RESOURCE`` and ``executor_<name>`` (the step's executor), each only
        when luigid lists it (``nemoflow scheduler --resource NAME=N``). luigid gives a resource it
        does not list a capacity of 1, not unlimited (``Scheduler._has_resources``), so asking for
        one it lacks would run a single step at a time.
        """
        ctx = type(self).context
        if ctx is None:
            return {}
        if not ctx.central:
            return {STEP_RESOURCE: 1} if ctx.max_concurrent else {}
        wanted = [STEP_RESOURCE, *{executor_resource(executor_name(step)) for step in self.planned()}]
        return {name: 1 for name in wanted if name in ctx.scheduler_resources}

    def requires(self) -> list[StepTask]:
        """The upstream steps that this build runs too, outside this task's own group.

        With ``sequential``, the step run before this one (``PlannedStep.after``) too.
        """
        steps = self._context().plan.steps
        own = set(self.key.split(_SEP))
        tasks = [
            task_of(steps[name])
            for planned in self.planned()
            for name, key in planned.upstream.items()
            if key not in own and name in steps and steps[name].runs
        ]
        tasks.extend(
            task_of(steps[name]) for planned in self.planned() for name in planned.after if steps[name].key not in own
        )
        return tasks

    def complete(self) -> bool:
        try:
            ctx = self._context()
            return all(ctx.is_done(step) for step in self.planned())
        except Exception:  # complete() must never raise
            return False

    def run(self) -> None:
        """Build each step in order; a step whose upstream failed in this group is not run.

        Raises:
            StepFailed: a step failed (for a group: the first failure, after the rest ran).
        """
        ctx = self._context()
        if _SEP not in self.key:
            self._run_steps(ctx)
            return
        with ctx.ledger().steps_in_a_row():
            self._run_steps(ctx)

    def _run_steps(self, ctx: BuildContext) -> None:
        failed: dict[str, StepFailed] = {}
        for step in self.planned():
            if any(up in failed for up in step.upstream) or any(up in failed for up in step.after):
                failed[step.name] = StepFailed(step.name, "upstream failed")
                continue
            if ctx.central and ctx.is_done(step):  # another worker built it since luigid handed it here
                continue
            try:
                ctx.build_step(step)  # runs it, or waits for the job a detached build submitted
            except StepFailed as exc:
                failed[step.name] = exc
        if failed:
            raise next(iter(failed.values()))


@functools.cache
def step_class(step: str) -> type[StepTask]:
    """The StepTask subclass whose luigi family is ``step``: the same in every process, so the task
    ids that a build and its workers register with luigid agree (the id is the family and the key)."""
    return type(step, (StepTask,), {"__module__": __name__, "__doc__": f"The luigi task of step {step!r}."})


@functools.cache
def task_for(key: str, step: str, executor: str = "", experiment: str = "", family: str = "") -> StepTask:
    """The StepTask of a step, made once: luigi's own instance cache still normalises every parameter."""
    cls = step_class(family) if family else StepTask
    return cls(key=key, step=step, executor=executor, experiment=experiment)


def task_of(step: PlannedStep) -> StepTask:
    """The task of one planned step, of the family named after it."""
    ctx = StepTask.context
    experiment = ctx.plan.experiment.name if ctx is not None else ""
    return task_for(step.key, step.name, executor_name(step), experiment, family=step.name)


def group_task(steps: list[PlannedStep]) -> StepTask:
    """One task that builds ``steps`` (in plan order) in one go."""
    if len(steps) == 1:
        return task_of(steps[0])
    label = f"{steps[0].name}..{steps[-1].name} ({len(steps)} steps)"
    return task_for(_SEP.join(s.key for s in steps), label, "direct")
