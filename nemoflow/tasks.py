"""The luigi adapter: one ``StepTask`` class whose only significant parameter is the step's key.

luigi may hand several ready steps to a worker as one batch (``key`` then holds their keys,
comma-separated): that keeps luigi's per-task cost off each step of a wide DAG.
"""

from __future__ import annotations

from typing import ClassVar

import luigi

from nemoflow.errors import StepFailed
from nemoflow.plan import PlannedStep
from nemoflow.runner import BuildContext, run_planned_step

_SEP = ","


class StepTask(luigi.Task):
    """A planned step as luigi sees it: complete when its manifest exists; run builds it.

    The config lives in the plan, looked up by key; ``step`` is only there for display.
    """

    key: str = luigi.Parameter(batch_method=_SEP.join)
    step: str = luigi.Parameter(significant=False, default="", batch_method=_SEP.join)
    max_batch_size = 1  # the scheduler raises it when batches pay off

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
        """The step (or, for a batch, the steps) this task stands for."""
        by_key = self._context().plan.by_key
        return [by_key[key] for key in self.key.split(_SEP)]

    def requires(self) -> list[StepTask]:
        steps = self._context().plan.steps
        return [
            StepTask(key=key, step=name)
            for planned in self.planned()
            for name, key in planned.upstream.items()
            if name in steps and steps[name].runs
        ]

    def complete(self) -> bool:
        try:
            ctx = self._context()
            return all(ctx.is_done(step) for step in self.planned())
        except Exception:  # complete() must never raise
            return False

    def run(self) -> None:
        """Build each step; a step that fails stays incomplete, which stops its dependents.

        A batch fails as a whole only when all of its steps failed, so luigi does not mark
        steps that succeeded as failed.
        """
        ctx = self._context()
        steps = self.planned()
        failures = []
        for step in steps:
            try:
                run_planned_step(ctx, step)
            except StepFailed as exc:
                failures.append(exc)
        if failures and len(failures) == len(steps):
            raise failures[0]
