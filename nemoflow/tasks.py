"""The luigi adapter: one ``StepTask`` class whose only significant parameter is the step's key."""

from __future__ import annotations

from typing import ClassVar

import luigi

from nemoflow.plan import PlannedStep
from nemoflow.runner import BuildContext, run_planned_step


class StepTask(luigi.Task):
    """A planned step as luigi sees it: complete when its manifest exists; run builds it.

    The config lives in the plan, looked up by key; ``step`` is only there for display.
    """

    key: str = luigi.Parameter()
    step: str = luigi.Parameter(significant=False, default="")

    context: ClassVar[BuildContext | None] = None  # set by the scheduler for the build in progress

    @property
    def planned(self) -> PlannedStep:
        ctx = self._context()
        return ctx.plan.steps[ctx_step_name(ctx, self.key, self.step)]

    @classmethod
    def _context(cls) -> BuildContext:
        if cls.context is None:
            raise RuntimeError("StepTask used outside a nemoflow build")
        return cls.context

    def requires(self) -> list[StepTask]:
        ctx = self._context()
        steps = ctx.plan.steps
        return [
            StepTask(key=key, step=name)
            for name, key in self.planned.upstream.items()
            if name in steps and steps[name].runs
        ]

    def complete(self) -> bool:
        try:
            return self._context().is_done(self.planned)
        except Exception:  # complete() must never raise
            return False

    def run(self) -> None:
        run_planned_step(self._context(), self.planned)


def ctx_step_name(ctx: BuildContext, key: str, hint: str) -> str:
    if hint in ctx.plan.steps and ctx.plan.steps[hint].key == key:
        return hint
    for step in ctx.plan.steps.values():
        if step.key == key:
            return step.name
    raise KeyError(key)
