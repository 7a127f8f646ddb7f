"""Experiment entrypoints (``@run.cli.entrypoint(type="experiment")``): the function runs here, with a RunContext.

The function builds an Experiment and calls ``ctx.launch(exp)``; its steps are keyed and cached
like any pipeline's. ``ctx`` carries the command line's options, executor and plugins.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from nemoflow.cli.context import RunContext
from nemoflow.cli.options import Options


def run_experiment_entry(
    fn: Callable[..., Any],
    cfg: Any,
    opts: Options,
    *,
    name: str,
    script: Path | None,
    executor: Any,
    plugins: list[Any],
    ctx_cls: type[RunContext] | None = None,
) -> int:
    """Show the config, ask (unless ``--yes`` or ``--dryrun``), then call ``fn`` with its ``ctx``; 0 when done."""
    from nemoflow.cli import render
    from nemoflow.cli.configs import ask, is_run_context
    from nemoflow.configs.core import build
    from nemoflow.configs.validation import signature_of

    ctx_name = next((p.name for p in signature_of(fn).params.values() if is_run_context(p.annotation)), "ctx")
    ctx = (ctx_cls or RunContext)(
        name=name,
        direct=opts.direct,
        dryrun=opts.dryrun,
        factory=opts.factory,
        load=opts.load,
        repl=opts.repl,
        detach=opts.detach,
        skip_confirmation=opts.yes,
        tail_logs=opts.tail_logs,
        yaml=opts.yaml,
        executor=executor,
        plugins=plugins,
        store=opts.store,
        script=script,
    )
    if not opts.dryrun and not opts.yes and not ask(name, cfg):
        render.note("not run (pass --yes or -y to run without asking)")
        return 1
    if opts.dryrun:
        from nemoflow.cli.options import unset_defaults
        from nemoflow.configs.serialize import dumps

        render.resolved_config(dumps(cfg, "yaml"), unset_defaults(cfg))
    build(cfg)(**{ctx_name: ctx})
    return 0
