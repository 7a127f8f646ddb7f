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
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from nemoflow.cli.guard import reporting_errors
from nemoflow.cli.options import (
    EXPORTS,
    OPTION_HELP,
    OVERRIDE_HELP,
    Options,
    apply_reserved,
    parameter_rows,
    parse_argv,
    unset_defaults,
)
from nemoflow.errors import UserError

F = TypeVar("F", bound=Callable[..., Any])


def entrypoint(fn: F | None = None, /, *, name: str | None = None, help: str | None = None) -> Any:
    """Mark ``fn`` as a command-line entrypoint (``name``: its step name; ``help``: its description).

    Usable bare (``@entrypoint``) or with arguments (``@entrypoint(name="pretrain")``); the
    function itself is returned, still callable and importable.
    """

    def mark(target: F) -> F:
        target.__nemoflow_entrypoint__ = {"name": name, "help": help}  # type: ignore[attr-defined]
        return target

    return mark(fn) if fn is not None else mark


def factory(fn: F | None = None, /, *, name: str | None = None, for_type: Any = None) -> Any:
    """Register a function returning a ``nemoflow.Config[T]`` as a factory, picked by ``model=NAME``.

    Args:
        name: the name to pick it by (default: the function's name).
        for_type: the type its config builds (default: T from a ``-> Config[T]`` annotation);
            it fits parameters of that type only. The entrypoint function itself, for ``--factory``.
    """

    def register(target: F) -> F:
        from nemoflow.cli.factories import register as add

        add(target, name=name, for_type=for_type)
        return target

    return register(fn) if fn is not None else register


def main(fn: Callable[..., Any], argv: Sequence[str] | None = None) -> NoReturn:
    """Run ``fn`` as a command-line program on ``sys.argv`` and exit with its code."""
    sys.exit(run_entrypoint(fn, argv))


def run_entrypoint(fn: Callable[..., Any], argv: Sequence[str] | None = None) -> int:
    """Run ``fn`` as a command-line program; return the exit code.

    0: done (or up to date); 1: the step failed or the run was not confirmed; 2: bad input
    (shown as one message; ``--debug`` shows the traceback); 130: interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    return reporting_errors(lambda: _run(fn, argv), debug="--debug" in argv, interrupted="interrupted")


def _run(fn: Callable[..., Any], argv: list[str]) -> int:
    from nemoflow.cli import render
    from nemoflow.cli.overrides import apply_overrides, split_reserved
    from nemoflow.configs.validation import signature_of

    opts = parse_argv(argv)
    fn, script = importable(fn, direct=opts.direct)
    info = getattr(fn, "__nemoflow_entrypoint__", None) or {}
    cfg = root_config(fn, opts.factory)
    if opts.help:
        doc = info.get("help") or fn.__doc__ or ""
        title = opts.name or info.get("name") or fn.__name__
        render.entrypoint_help(title, doc, parameter_rows(cfg), OPTION_HELP, OVERRIDE_HELP)
        return 0
    reserved, tokens = split_reserved(opts.tokens, taken=signature_of(fn).params)
    for override in reserved:
        apply_reserved(opts, override)
    name = opts.name or info.get("name") or fn.__name__  # run.name=... may have set it
    cfg = apply_overrides(cfg, tokens)
    for fmt, path in opts.exports:
        _export(cfg, fmt, path)
    exp = one_step_experiment(fn, cfg, opts, name=name, script=script)
    if opts.dryrun:
        _show_plan(exp, cfg, opts)
        return 0
    if opts.exports:
        return 0
    if not opts.yes and not _confirm(name, cfg):
        render.note("not run (pass --yes or -y to run without asking)")
        return 1
    return _build(exp, opts)


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


def root_config(fn: Callable[..., Any], factory_text: str | None = None) -> Any:
    """``Partial(fn)`` with a nested config for each dataclass-typed parameter, or ``--factory``'s product."""
    from nemoflow.cli.factories import default_config
    from nemoflow.configs.core import Partial
    from nemoflow.configs.validation import signature_of

    cfg = _from_factory(fn, factory_text) if factory_text else Partial(fn)
    for param in signature_of(fn).params.values():
        if param.name in cfg.__arguments__ or param.default is None:
            continue
        nested = default_config(param.annotation, param.default)
        if nested is not None:
            setattr(cfg, param.name, nested)
    return cfg


def _from_factory(fn: Callable[..., Any], text: str) -> Any:
    from nemoflow.cli import factories
    from nemoflow.cli.tokens import FactoryCall, parse_value
    from nemoflow.configs.core import Buildable, Config, Partial

    where = f"--factory {text}"
    value, _ = parse_value(text, token=text)
    call = value if isinstance(value, FactoryCall) else FactoryCall(str(value))
    made = factories.call(
        factories.resolve(call.name, fn, where=where), call.args, call.kwargs, name=call.name, where=where
    )
    if not isinstance(made, Buildable) or made.__fn_or_cls__ is not fn:
        raise UserError(f"factory {call.name} returned {made!r}, not a config of {fn.__name__}", where=where)
    return Partial(fn, **made.__arguments__) if isinstance(made, Config) else made


def _export(cfg: Any, fmt: str, path: str) -> None:
    from nemoflow.cli import render
    from nemoflow.configs.serialize import dumps

    try:
        Path(path).write_text(dumps(cfg, fmt))
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}", where=EXPORTS[fmt]) from None
    render.note(f"wrote {path}")


def one_step_experiment(fn: Callable[..., Any], cfg: Any, opts: Options, *, name: str, script: Path | None) -> Any:
    """The experiment that runs ``cfg`` as its one step, named ``name``."""
    from nemoflow.pipeline.experiment import Experiment

    exp = Experiment(name, description=(fn.__doc__ or "").strip().split("\n")[0])
    exp.add(cfg, name=name, executor=_executor(opts), plugins=opts.plugins)
    if script is not None:  # the step subprocess imports the script under its file name, like a pipeline
        exp.pipeline_file = script
        exp.module_name = script.stem
    return exp


def _executor(opts: Options) -> Any:
    import pydantic

    from nemoflow.executors import make_executor

    try:
        return make_executor(opts.executor, **opts.executor_fields)
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UserError(f"executor {opts.executor}: {problems}") from None


def _show_plan(exp: Any, cfg: Any, opts: Options) -> None:
    from nemoflow.cli import render
    from nemoflow.configs.serialize import dumps
    from nemoflow.engine.build import default_store
    from nemoflow.pipeline.plan import make_plan
    from nemoflow.store.targets import Store

    render.resolved_config(dumps(cfg, "yaml"), unset_defaults(cfg))
    render.plan(make_plan(exp, Store(opts.store) if opts.store else default_store()), as_json=False)


def _confirm(name: str, cfg: Any) -> bool:
    from nemoflow.cli import render
    from nemoflow.configs.serialize import dumps

    render.resolved_config(dumps(cfg, "yaml"), unset_defaults(cfg))
    question = f"Run {name} with this config? [y/N] "
    if not sys.stdin.isatty():
        render.note(f"{question}no (stdin is not a terminal)")
        return False
    try:
        answer = input(question)
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _build(exp: Any, opts: Options) -> int:
    from nemoflow.cli import render
    from nemoflow.engine.build import build_experiment, default_store
    from nemoflow.store.targets import Store

    started = time.perf_counter()
    store = Store(opts.store) if opts.store else default_store()
    result = build_experiment(exp, store=store, direct=opts.direct, tail_logs=opts.tail_logs, raise_on_failure=False)
    render.build_result(result, as_json=False, seconds=time.perf_counter() - started)
    if not result.ok:
        return 1
    (outcome,) = [*result.ran, *result.skipped]
    render.result_value(store.load_result(outcome.name, outcome.key))
    return 0
