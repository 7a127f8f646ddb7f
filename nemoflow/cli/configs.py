"""An entrypoint's starting config, its executor and plugins, and config export (``--to-yaml F:SECTION``)."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nemoflow.cli import factories
from nemoflow.cli.decorators import EntrypointError
from nemoflow.cli.options import EXPORTS, Options, unset_defaults
from nemoflow.configs.core import Buildable, Config, Partial
from nemoflow.errors import UserError, describe_value


class SectionNotFound(UserError, ValueError):
    """``--to-yaml out.yaml:SECTION`` names no parameter of the config."""


def entry_config(fn: Callable[..., Any], factory: Any = None, *, yaml: str | None = None) -> Any:
    """``Partial(fn)`` with a nested config for each dataclass-typed parameter, or the factory's product.

    Args:
        factory: ``--factory``'s text (``NAME``, ``NAME(k=v)``, ``@file.yaml``) or a function
            returning a config of ``fn`` (``main(default_factory=...)``).
        yaml: ``--yaml FILE``: a config of ``fn``, or values, applied after the factory.
    """
    from nemoflow.cli.overrides import apply_overrides
    from nemoflow.cli.tokens import LoadFile
    from nemoflow.configs.validation import signature_of

    cfg = _from_factory(fn, factory) if factory is not None else Partial(fn)
    for param in signature_of(fn).params.values():
        if param.name in cfg.__arguments__ or param.default is None or is_run_context(param.annotation):
            continue
        nested = factories.default_config(param.annotation, param.default)
        if nested is not None:
            setattr(cfg, param.name, nested)
    if yaml:
        cfg = apply_overrides(cfg, [LoadFile(f"--yaml {yaml}", yaml)])
    return cfg


def is_run_context(annotation: Any) -> bool:
    """Is this the ``ctx: run.cli.RunContext`` parameter of an experiment entrypoint?"""
    from nemoflow.cli.context import RunContext

    return inspect.isclass(annotation) and issubclass(annotation, RunContext)


def _from_factory(fn: Callable[..., Any], factory: Any) -> Any:
    from nemoflow.cli.overrides import apply_overrides
    from nemoflow.cli.tokens import FactoryCall, LoadFile, parse_value

    if isinstance(factory, str) and factory.startswith("@"):  # --factory @file.yaml
        return apply_overrides(Partial(fn), [LoadFile(f"--factory {factory}", factory[1:])])
    if callable(factory):
        where = f"default_factory={getattr(factory, '__name__', factory)!r}"
        made = factories.call(factory, (), {}, name=getattr(factory, "__name__", "default_factory"), where=where)
        call_name = getattr(factory, "__name__", "default_factory")
    else:
        where = f"--factory {factory}"
        value, _ = parse_value(str(factory), token=str(factory))
        call = value if isinstance(value, FactoryCall) else FactoryCall(str(value))
        target = factories.resolve(call.name, fn, where=where)
        made = factories.call(target, call.args, call.kwargs, name=call.name, where=where)
        call_name = call.name
    if not isinstance(made, Buildable) or not _same_target(made.__fn_or_cls__, fn):
        raise UserError(f"factory {call_name} returned {made!r}, not a config of {fn.__name__}", where=where)
    return made if isinstance(made, Partial) and made.__fn_or_cls__ is fn else Partial(fn, **made.__arguments__)


def _same_target(a: Any, b: Any) -> bool:
    """The same function, or its twin from the script run as ``__main__`` (same name, same file)."""
    if a is b:
        return True
    code_a, code_b = getattr(a, "__code__", None), getattr(b, "__code__", None)
    same_file = code_a is not None and code_b is not None and code_a.co_filename == code_b.co_filename
    return same_file and a.__qualname__ == b.__qualname__


def export(cfg: Any, fmt: str, path: str) -> None:
    """``--to-yaml F`` (``--to-toml``, ``--to-json``): write the config; ``F:SECTION`` writes one parameter's value.

    Raises:
        SectionNotFound: (also a ValueError) no parameter of that name is set or defaulted.
        UserError: the file cannot be written.
    """
    from nemoflow.cli import render
    from nemoflow.configs.serialize import dumps

    file, _, section = path.partition(":")
    value = cfg
    if section:
        try:
            value = getattr(cfg, section)
        except AttributeError:
            raise SectionNotFound(f"Section '{section}' not found in configuration", where=EXPORTS[fmt]) from None
    try:
        Path(file).write_text(dumps(value, fmt))
    except OSError as exc:
        raise UserError(f"cannot write {file}: {exc.strerror}", where=EXPORTS[fmt]) from None
    shown = f" (section: {section})" if section else ""
    render.note(f"Configuration exported to {fmt.upper()}{shown}: {file}")


def check_plugins(plugins: Any) -> None:
    """NeMo Run's rule for ``main(default_plugins=...)``: a plugin Config, or a list of them.

    Raises:
        EntrypointError: (also a ValueError) anything else.
    """
    if plugins is None:
        return
    items = plugins if isinstance(plugins, list) else [plugins]
    if not all(isinstance(p, Config) for p in items):
        what = "a list of Config objects" if isinstance(plugins, list) else "a Config object"
        raise EntrypointError(f"default_plugins must be {what}", hint="pass run.Config(MyPlugin, ...)")


def plugins_of(plugins: Any) -> list[Any]:
    """The default plugins as a list (configs are built later, after the command line's changes)."""
    if plugins is None:
        return []
    import copy

    return copy.deepcopy(list(plugins) if isinstance(plugins, (list, tuple)) else [plugins])


def prepare(opts: Options) -> tuple[Any, list[Any]]:
    """The executor and the plugins the command line asks for, built."""
    from nemoflow.configs.core import build

    plugins = [build(p) if isinstance(p, Buildable) else p for p in opts.plugins]
    for plugin in plugins:
        if not callable(getattr(plugin, "setup", None)):
            raise UserError(f"{describe_value(plugin)} is not a plugin (it has no setup(task, executor))")
    return _executor(opts), plugins


def _executor(opts: Options) -> Any:
    import pydantic

    from nemoflow.configs.core import build
    from nemoflow.executors import Executor, make_executor

    try:
        if opts.executor_named:
            found = factories.find(opts.executor, Executor)
            if found is None:
                return make_executor(opts.executor, **opts.executor_fields)
            base = factories.call(found.fn, (), {}, name=opts.executor, where=f"executor={opts.executor}")
        elif opts.default_executor is not None:
            base = opts.default_executor
        else:
            return make_executor(opts.executor, **opts.executor_fields)
        if isinstance(base, Buildable):
            base = build(base)
        if not isinstance(base, Executor):
            raise UserError(f"executor {opts.executor}: {describe_value(base)} is not an executor")
        if not opts.executor_fields:
            return base
        return type(base)(**{**base.model_dump(exclude_unset=True), **opts.executor_fields})
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UserError(f"executor {opts.executor}: {problems}") from None


def factory_rows(fn: Callable[..., Any], cfg: Any) -> list[tuple[str, str]]:
    """(where, factory names) for ``--help``: ``--factory`` configs of ``fn``, then each parameter's factories."""
    rows = []
    whole = sorted({f.name for f in factories.registered(fn) if f.for_type is not None and f.for_arg is None})
    if whole:
        rows.append(("--factory", ", ".join(whole)))
    for param in cfg.__signature__.params.values():
        if is_run_context(param.annotation):
            continue
        kinds = factories.built_types(param.annotation) | factories.built_types(
            factories.item_annotation(param.annotation)
        )
        kinds -= {Any, type(None)}
        names = sorted(
            {
                f.name
                for f in factories.registered(param.annotation, owner=fn, arg=param.name)
                if f.for_type is not None and (f.for_arg or f.for_type in kinds or _subclass_of(f.for_type, kinds))
            }
            | {f.name for k in kinds for f in factories.registered(k) if f.for_type is not None and f.for_arg is None}
        )
        if names:
            rows.append((param.name, ", ".join(names)))
    return rows


def _subclass_of(cls: Any, kinds: set[Any]) -> bool:
    return inspect.isclass(cls) and any(inspect.isclass(k) and issubclass(cls, k) for k in kinds)


def ask(name: str, cfg: Any) -> bool:
    """Show the config and ask; False when stdin is not a terminal."""
    from nemoflow.cli import render
    from nemoflow.configs.serialize import dumps

    render.resolved_config(dumps(cfg, "yaml"), unset_defaults(cfg))
    question = f"Run {name} with this config? [y/N] "
    if not sys.stdin.isatty():  # a piped answer counts (`yes | python train.py`), as NeMo Run's prompt reads it
        answer = sys.stdin.readline()
        render.note(f"{question}{answer.strip() or 'no (no answer on stdin)'}")
        return answer.strip().lower() in ("y", "yes")
    try:
        answer = input(question)
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")
