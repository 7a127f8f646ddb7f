"""``nemoflow.cli.RunContext``: what an experiment entrypoint gets as ``ctx`` (NeMo Run's RunContext).

@run.cli.entrypoint(type="experiment")
def sweep(ctx: run.cli.RunContext, lr: float = 0.1):
    with run.Experiment("sweep") as exp:
        exp.add(run.Partial(train, lr=lr), executor=ctx.executor)
        ctx.launch(exp)
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any


@dataclasses.dataclass(kw_only=True)
class RunContext:
    """The command line's run options: how to launch, where (``executor``), with which ``plugins``."""

    name: str
    direct: bool = False
    dryrun: bool = False
    factory: Any = None
    load: str | None = None
    repl: bool = False
    detach: bool = False
    skip_confirmation: bool = False
    tail_logs: bool = False
    yaml: str | None = None
    to_yaml: str | None = None
    to_toml: str | None = None
    to_json: str | None = None
    executor: Any = None
    plugins: list[Any] = dataclasses.field(default_factory=list)
    store: str | None = None
    script: Path | None = dataclasses.field(default=None, repr=False)

    def launch(self, experiment: Any, sequential: bool = False) -> Any:
        """Run ``experiment`` as the command line asked: plan only with ``--dryrun``, else build it.

        Steps without an executor of their own run on ``ctx.executor``'s default (a local
        subprocess); ``direct`` runs them in this process.

        Returns:
            The BuildResult, or the Plan with ``--dryrun``.
        """
        from nemoflow.cli import render
        from nemoflow.engine.build import default_store
        from nemoflow.pipeline.plan import make_plan
        from nemoflow.store.targets import Store

        if self.script is not None and getattr(experiment, "pipeline_file", None) is None:
            experiment.pipeline_file = self.script  # step subprocesses import the script by its file name
            experiment.module_name = self.script.stem
        store = Store(self.store) if self.store else default_store()
        if self.dryrun:
            plan = make_plan(experiment, store, sequential=sequential)
            render.plan(plan, as_json=False)
            return plan
        options: dict[str, Any] = {"sequential": sequential, "direct": self.direct, "tail_logs": True}
        if self.detach:
            options["detach"] = True
        started = time.perf_counter()
        result = experiment.run(store=store, raise_on_failure=False, **options)
        render.build_result(result, as_json=False, seconds=time.perf_counter() - started)
        if not result.ok:
            from nemoflow.errors import BuildFailed

            raise BuildFailed(result)
        return result

    @classmethod
    def get_help(cls) -> str:
        """The help text of this class (its docstring)."""
        return cls.__doc__ or "No help available."
