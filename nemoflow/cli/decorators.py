"""``@nemoflow.cli.entrypoint`` and ``@nemoflow.cli.factory``, as NeMo Run spells them, and their catalogue.

    @run.cli.factory                         # fits parameters of the type its Config builds
    @run.cli.factory(target=train_model)     # a whole config of train_model, for --factory NAME
    @run.cli.entrypoint(namespace="my_llm", type="experiment")

Entrypoints with a namespace are listed by :func:`list_entrypoints` and run as
``my_llm train_model ARGS`` by the app of :func:`nemoflow.cli.create_cli`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from nemoflow.errors import UserError

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_FACTORY = "default"  # the name a target's default factory is registered under


class EntrypointError(UserError, ValueError):
    """An entrypoint NeMo Run refuses (a task with an ``executor`` parameter, an unknown type)."""


@dataclass
class Entrypoint:
    """What ``@entrypoint`` records about a function (NeMo Run's ``fn.cli_entrypoint``)."""

    fn: Callable[..., Any]
    name: str
    namespace: str | None = None
    help: str | None = None
    skip_confirmation: bool = False
    enable_executor: bool = True
    default_factory: Callable[..., Any] | None = None
    default_executor: Any = None
    default_plugins: Any = None
    type: str = "task"
    run_ctx_cls: Any = None

    @property
    def path(self) -> str:
        """``namespace.name``, the entrypoint's place in :func:`list_entrypoints`."""
        return f"{self.namespace}.{self.name}" if self.namespace else self.name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


_ENTRYPOINTS: dict[str, Entrypoint] = {}


def entrypoint(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    namespace: str | None = None,
    help: str | None = None,
    skip_confirmation: bool = False,
    enable_executor: bool = True,
    default_factory: Callable[..., Any] | None = None,
    default_executor: Any = None,
    default_plugins: Any = None,
    entrypoint_cls: Any = None,
    type: Literal["task", "experiment"] = "task",
    run_ctx_cls: Any = None,
) -> Any:
    """Mark ``fn`` as a command-line entrypoint; the function itself is returned, still callable.

    Args:
        name: the command's (and step's) name (default: the function's).
        namespace: the group it is listed under (``my_llm`` in ``my_llm train_model``); default:
            the calling module's name.
        help: its description (default: the docstring).
        skip_confirmation: run without asking, as ``--yes`` does.
        default_factory: a function returning a config of ``fn``: the starting config.
        default_executor: the executor (or its Config) used when the command line names none.
        default_plugins: a plugin Config (or a list of them) applied when none are named.
        type: ``"task"`` (the function is the step) or ``"experiment"`` (it gets a
            :class:`~nemoflow.cli.context.RunContext` as ``ctx`` and launches an experiment).
        entrypoint_cls, run_ctx_cls: accepted for NeMo Run parity; ``run_ctx_cls`` replaces
            the RunContext class given to an experiment.

    Raises:
        EntrypointError: (also a ValueError) a task with a parameter called ``executor``, or an
            unknown ``type``.
    """
    if namespace is None:
        frame = inspect.currentframe()
        caller = frame.f_back if frame is not None else None
        namespace = caller.f_globals.get("__name__") if caller is not None else None

    def mark(target: F) -> F:
        if type not in ("task", "experiment"):
            raise EntrypointError(f"unknown entrypoint type {type!r}", hint="use type='task' or type='experiment'")
        if type == "task" and "executor" in inspect.signature(target).parameters:
            raise EntrypointError(
                f"{target.__name__} cannot have a parameter named 'executor': it is a reserved keyword"
            )
        if default_factory is not None:
            factory(default_factory, target=target, is_target_default=True)
        info = Entrypoint(
            target,
            name or target.__name__,
            namespace,
            help,
            skip_confirmation,
            enable_executor,
            default_factory,
            default_executor,
            default_plugins,
            type,
            run_ctx_cls,
        )
        target.__nemoflow_entrypoint__ = info  # type: ignore[attr-defined]
        target.cli_entrypoint = info  # type: ignore[attr-defined]
        if namespace:
            _ENTRYPOINTS[info.path] = info
        return target

    return mark(fn) if fn is not None else mark


def entrypoint_of(fn: Callable[..., Any]) -> Entrypoint:
    """The entrypoint record of ``fn`` (a plain function gets the defaults)."""
    info = getattr(fn, "__nemoflow_entrypoint__", None)
    return info if isinstance(info, Entrypoint) else Entrypoint(fn, getattr(fn, "__name__", "main"))


def factory(
    fn: F | None = None,
    /,
    target: Any = None,
    *,
    target_arg: str | None = None,
    is_target_default: bool = False,
    name: str | None = None,
    namespace: str | None = None,
    for_type: Any = None,
) -> Any:
    """Register a function returning a ``Config``/``Partial`` as a factory, picked by ``model=NAME``.

    Args:
        target: the type (or function) its config builds (default: T from a ``-> Config[T]``
            annotation). A factory whose target is the entrypoint function is a whole config of
            it, for ``--factory NAME``. ``for_type`` is nemoflow's older name for it.
        target_arg: it fits only this parameter of ``target``.
        is_target_default: also register it as ``target``'s ``"default"`` factory.
        name: the name to pick it by (default: the function's name).
        namespace: a namespace of its own, for ``resolve_factory(namespace, name)``.

    Raises:
        EntrypointError: (also a ValueError) ``target_arg`` without ``target``.
    """
    kind = target if target is not None else for_type
    if target_arg and kind is None:
        raise EntrypointError("`target_arg` cannot be used without specifying a `target`")

    def register(fn_: F) -> F:
        from nemoflow.cli.factories import register as add

        if kind is None:
            _check_returns_config(fn_)
        add(fn_, name=name, for_type=kind, for_arg=target_arg, namespace=namespace)
        if is_target_default:
            add(fn_, name=DEFAULT_FACTORY, for_type=kind, for_arg=target_arg, namespace=namespace)
        fn_.__factory__ = True  # type: ignore[attr-defined]
        fn_.wrapped = fn_  # type: ignore[attr-defined]
        return fn_

    return register(fn) if fn is not None else register


class FactoryTypeError(UserError, TypeError):
    """A factory without a return annotation (NeMo Run needs one to know what it makes)."""


def _check_returns_config(fn: Callable[..., Any]) -> None:
    """NeMo Run's rule: a factory without ``target`` says ``-> Config[T]`` / ``-> Partial[T]``, or is
    ``@run.autoconvert``-ed (then ``-> T``).

    Raises:
        FactoryTypeError: (also a TypeError) no return annotation.
        EntrypointError: (also a ValueError) it returns something else.
    """
    import typing

    from nemoflow.configs.core import Buildable

    if getattr(fn, "__auto_config__", False):
        return
    if inspect.signature(fn).return_annotation is inspect.Signature.empty:
        raise FactoryTypeError(
            f"Missing return type annotation for function '{fn.__name__}'", hint="annotate it: -> run.Config[T]"
        )
    try:
        returned = typing.get_type_hints(fn).get("return")
    except Exception:  # an annotation this module cannot resolve (a local name): accepted as written
        return
    origin = typing.get_origin(returned) or returned
    if not (inspect.isclass(origin) and issubclass(origin, Buildable)):
        raise EntrypointError(
            f"factory {fn.__name__} has a return type which is not a subclass of Config or Partial",
            hint="return run.Config[T] / run.Partial[T], or decorate it with @run.autoconvert",
        )


def resolve_factory(target: Any, name: str) -> Callable[..., Any]:
    """The factory ``name`` registered for ``target`` (a type, a function, or a namespace string).

    Raises:
        FactoryNotFound: (also a ValueError) none is registered under that name.
    """
    from nemoflow.cli import factories

    if isinstance(target, str):
        found = [f for f in factories.in_namespace(target) if f.name == name]
    else:
        hit = factories.find(name, target)
        found = [hit] if hit is not None else []
    if not found:
        raise FactoryNotFound(f"No factory found for {target} under {name}")
    return found[-1].fn


class FactoryNotFound(UserError, ValueError):
    """``resolve_factory`` found nothing under that name."""


def list_factories(type_or_namespace: Any) -> list[Callable[..., Any]]:
    """The factories registered for a type (its import path names its namespace) or under a namespace."""
    from nemoflow.cli import factories

    if isinstance(type_or_namespace, str):
        return [f.fn for f in factories.in_namespace(type_or_namespace)]
    return [f.fn for f in factories.registered(type_or_namespace) if f.for_type is not None]


def list_entrypoints(namespace: str | None = None) -> dict[str, Any]:
    """The entrypoints with a namespace, nested by its dotted parts: ``{"my_llm": {"train_model": ep}}``.

    With ``namespace``, only those under it.
    """
    out: dict[str, Any] = {}
    for path, info in sorted(_ENTRYPOINTS.items()):
        if namespace and not (path.startswith(namespace + ".")):
            continue
        level = out
        *parents, leaf = path.split(".")
        for part in parents:
            level = level.setdefault(part, {})
        level[leaf] = info
    return out
