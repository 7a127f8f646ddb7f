"""NeMo Run's script CLI: ``@nemoflow.cli.entrypoint``, ``@nemoflow.cli.factory``, ``nemoflow.cli.main(fn)``.

    @nemoflow.cli.entrypoint
    def train(model: ModelConfig, lr: float = 1e-3) -> dict: ...

    if __name__ == "__main__":
        nemoflow.cli.main(train)

``python train.py model.hidden_size=1024 lr=2e-4 -y`` runs ``train`` as a one-step experiment
through the build engine (keyed, cached, ledgered). Importing this module is cheap: the engine,
pydantic and rich load only when a command needs them.
"""

from __future__ import annotations

# The engine is imported inside the functions that run a script's config: `python train.py --help` stays fast.
import dataclasses
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from nemoflow.cli.decorators import Entrypoint, entrypoint, entrypoint_of, factory
from nemoflow.cli.guard import reporting_errors
from nemoflow.cli.options import (
    OPTION_HELP,
    OVERRIDE_HELP,
    Options,
    apply_reserved,
    parameter_rows,
    parse_argv,
    unset_defaults,
)
from nemoflow.errors import UserError

__all__ = ["entrypoint", "factory", "importable", "main", "one_step_experiment", "root_config", "run_entrypoint"]


def main(
    fn: Callable[..., Any],
    default_factory: Callable[..., Any] | None = None,
    default_executor: Any = None,
    default_plugins: Any = None,
    cmd_defaults: Mapping[str, Any] | None = None,
    *,
    argv: Sequence[str] | None = None,
    **entrypoint_options: Any,
) -> NoReturn:
    """Run ``fn`` as a command-line program on ``sys.argv`` and exit with its code (NeMo Run's ``run.cli.main``).

    Args:
        fn: the function (an ``@entrypoint``, or a plain function: it is made one with
            ``entrypoint_options``).
        default_factory: a function returning the config to start from (``--factory`` replaces it).
        default_executor: the executor, or its Config, when the command line names none.
        default_plugins: a plugin Config, or a list of them, when the command line names none.
        cmd_defaults: option defaults: ``{"skip_confirmation": True, "tail_logs": True, ...}``.

    Raises:
        EntrypointError: (also a ValueError) ``default_plugins`` is not a Config or a list of Configs.
    """
    sys.exit(
        run_entrypoint(
            fn,
            argv,
            default_factory=default_factory,
            default_executor=default_executor,
            default_plugins=default_plugins,
            cmd_defaults=cmd_defaults,
            **entrypoint_options,
        )
    )


def run_entrypoint(
    fn: Callable[..., Any],
    argv: Sequence[str] | None = None,
    *,
    default_factory: Callable[..., Any] | None = None,
    default_executor: Any = None,
    default_plugins: Any = None,
    cmd_defaults: Mapping[str, Any] | None = None,
    **entrypoint_options: Any,
) -> int:
    """Run ``fn`` as a command-line program; return the exit code (arguments as :func:`main`'s).

    0: done (or up to date); 1: the step failed or the run was not confirmed; 2: bad input
    (shown as one message; ``--debug`` shows the traceback); 130: interrupted.
    """
    from nemoflow.cli.configs import check_plugins

    argv = list(sys.argv[1:] if argv is None else argv)
    check_plugins(default_plugins)
    info = getattr(fn, "__nemoflow_entrypoint__", None)
    if not isinstance(info, Entrypoint) or entrypoint_options:
        entrypoint(fn, **{"namespace": getattr(fn, "__module__", None), **entrypoint_options})
    info = dataclasses.replace(
        entrypoint_of(fn),
        **{
            k: v
            for k, v in (
                ("default_factory", default_factory),
                ("default_executor", default_executor),
                ("default_plugins", default_plugins),
            )
            if v is not None
        },
    )
    return reporting_errors(lambda: _run(info, argv, cmd_defaults), debug="--debug" in argv, interrupted="interrupted")


def _run(info: Entrypoint, argv: list[str], cmd_defaults: Mapping[str, Any] | None) -> int:
    from nemoflow.cli import render
    from nemoflow.cli.configs import entry_config, export, factory_rows, is_run_context, plugins_of, prepare
    from nemoflow.cli.overrides import apply_overrides, split_reserved
    from nemoflow.configs.validation import signature_of

    opts = parse_argv(argv, cmd_defaults)
    fn, script = importable(info.fn, direct=opts.direct)
    opts.yes = opts.yes or info.skip_confirmation
    opts.default_executor = same_in_script(info.default_executor, script)
    opts.plugins = plugins_of(same_in_script(info.default_plugins, script))
    if opts.load:
        raise UserError("--load is not implemented (as in NeMo Run)", hint="use --yaml FILE or @FILE")
    experiment = info.type == "experiment"
    cfg = entry_config(fn, opts.factory or same_in_script(info.default_factory, script), yaml=opts.yaml)
    if opts.help:
        doc = info.help or fn.__doc__ or ""
        title = opts.name or info.name
        rows = factory_rows(fn, cfg) + _default_rows(info)
        render.entrypoint_help(title, doc, parameter_rows(cfg), OPTION_HELP, OVERRIDE_HELP, rows)
        return 0
    params = signature_of(fn).params
    taken = [p for p in params if not (experiment and is_run_context(params[p].annotation))]  # ctx.executor=...
    reserved, tokens = split_reserved(opts.tokens, taken=taken)
    for override in reserved:
        apply_reserved(opts, override)
    name = opts.name or info.name  # run.name=... may have set it
    cfg = apply_overrides(cfg, tokens)
    for fmt, path in opts.exports:
        export(cfg, fmt, path)
    if opts.exports:
        render.note("Export complete. Skipping execution.")
        return 0
    executor, plugins = prepare(opts)
    if experiment:
        from nemoflow.cli.experiment_entry import run_experiment_entry

        return run_experiment_entry(
            fn, cfg, opts, name=name, script=script, executor=executor, plugins=plugins, ctx_cls=info.run_ctx_cls
        )
    return _run_task(fn, cfg, opts, name=name, script=script, executor=executor, plugins=plugins)


def _run_task(
    fn: Callable[..., Any],
    cfg: Any,
    opts: Options,
    *,
    name: str,
    script: Path | None,
    executor: Any,
    plugins: list[Any],
) -> int:
    """A task entrypoint: ``--repl``, ``--dryrun``, or (confirmed) a one-step build of ``cfg``."""
    from nemoflow.cli import render
    from nemoflow.cli.configs import ask

    def experiment() -> Any:
        return one_step_experiment(fn, cfg, name=name, script=script, executor=executor, plugins=plugins)

    if opts.repl:
        return _repl(cfg, lambda: _build(experiment(), opts))
    if opts.dryrun:
        print(f"Dry run for {name}:", flush=True)  # NeMo Run's words
        _show_plan(experiment(), cfg, opts)
        return 0
    if not opts.yes and not ask(name, cfg):
        render.note("not run (pass --yes or -y to run without asking)")
        return 1
    print(f"Launching {name}...", flush=True)
    return _build(experiment(), opts)


def importable(fn: Callable[..., Any], *, direct: bool = False) -> tuple[Callable[..., Any], Path | None]:
    """``fn`` as its step subprocess will import it.

    A function of a script run as ``__main__`` is taken from the script imported again under its
    file name (as ``nemoflow build`` imports a pipeline), so its configs name it ``train:train``
    and a new process can import it. Returns the function and the script (None for a module).
    """
    if getattr(fn, "__module__", None) != "__main__":
        return fn, None
    file = getattr(sys.modules["__main__"], "__file__", None)
    if not file:
        if direct:
            return fn, None
        raise UserError(
            f"{fn.__name__} is defined in an interactive session: a step subprocess cannot import it",
            hint="define it in a file, or pass --direct",
        )
    from nemoflow.pipeline.loading import import_pipeline_module

    script = Path(file).absolute()
    target: Any = import_pipeline_module(script)
    for part in fn.__qualname__.split("."):
        target = getattr(target, part)
    return target, script


def _default_rows(info: Entrypoint) -> list[tuple[str, str]]:
    """``--help``'s defaults, as NeMo Run's help panel shows them: the default factory, executor, plugins."""
    rows = []
    if info.default_factory is not None:
        rows.append(("default factory", getattr(info.default_factory, "__name__", repr(info.default_factory))))
    if info.default_executor is not None:
        rows.append(("default executor", repr(info.default_executor)))
    if info.default_plugins is not None:
        rows.append(("default plugins", repr(info.default_plugins)))
    return rows


def root_config(fn: Callable[..., Any], factory_text: Any = None) -> Any:
    """``Partial(fn)`` with a nested config for each dataclass-typed parameter, or the factory's product."""
    from nemoflow.cli.configs import entry_config

    return entry_config(fn, factory_text)


def same_in_script(value: Any, script: Path | None) -> Any:
    """A function or class of ``__main__`` as the script's module (imported again by its file name) has it."""
    if script is None or getattr(value, "__module__", None) != "__main__" or not hasattr(value, "__qualname__"):
        return value
    target: Any = sys.modules.get(script.stem)
    for part in value.__qualname__.split("."):
        target = getattr(target, part, None)
    return value if target is None else target


def one_step_experiment(
    fn: Callable[..., Any], cfg: Any, *, name: str, script: Path | None, executor: Any, plugins: list[Any]
) -> Any:
    """The experiment that runs ``cfg`` as its one step, named ``name``."""
    from nemoflow.pipeline.experiment import Experiment

    exp = Experiment(name, description=(fn.__doc__ or "").strip().split("\n")[0])
    exp.add(cfg, name=name, executor=executor, plugins=plugins)
    if script is not None:  # the step subprocess imports the script under its file name, like a pipeline
        exp.pipeline_file = script
        exp.module_name = script.stem
    return exp


def _show_plan(exp: Any, cfg: Any, opts: Options) -> None:
    from nemoflow.cli import render
    from nemoflow.configs.serialize import dumps
    from nemoflow.engine.build import default_store
    from nemoflow.pipeline.plan import make_plan
    from nemoflow.store.targets import Store

    render.resolved_config(dumps(cfg, "yaml"), unset_defaults(cfg))
    render.plan(make_plan(exp, Store(opts.store) if opts.store else default_store()), as_json=False)


def _repl(task: Any, run_task: Callable[[], int]) -> int:
    """``--repl``: an interactive shell with ``task`` (the config) and ``run_task()``; nothing runs unless asked."""
    from nemoflow.cli import render

    render.note("Entering interactive mode...")
    render.note("Use 'task' to access and modify the Partial object.")
    render.note("Use 'run_task()' to execute the task when ready.")
    names = {"task": task, "run_task": run_task}
    try:
        from IPython import embed  # type: ignore[import-not-found]
    except ImportError:
        import code

        code.interact(banner="", local=names, exitmsg="")
    else:
        embed(colors="neutral", user_ns=names)
    return 0


def _build(exp: Any, opts: Options) -> int:
    from nemoflow.cli import render
    from nemoflow.engine.build import build_experiment, default_store
    from nemoflow.store.targets import LOG, Store

    started = time.perf_counter()
    store = Store(opts.store) if opts.store else default_store()
    # The step's own output streams to the terminal, as NeMo Run shows a task's prints.
    result = build_experiment(exp, store=store, direct=opts.direct, tail_logs=opts.tail_logs, raise_on_failure=False)
    if opts.tail_logs:
        for outcome in result.skipped:  # from the store: show what it printed when it ran
            log = store.target_dir(outcome.name, outcome.key) / LOG
            text = log.read_text(errors="replace") if log.is_file() else ""
            render.note(f"{outcome.name} is up to date (key {outcome.key}): its output when it ran:")
            if text:
                sys.stdout.write("".join(f"[{outcome.name}] {line}" for line in text.splitlines(keepends=True)))
                sys.stdout.flush()
    render.build_result(result, as_json=False, seconds=time.perf_counter() - started)
    if not result.ok:
        return 1
    (outcome,) = [*result.ran, *result.skipped]
    value = store.load_result(outcome.name, outcome.key)
    if value is not None:  # a function that returns nothing prints nothing more (as under NeMo Run)
        render.result_value(value)
    return 0
