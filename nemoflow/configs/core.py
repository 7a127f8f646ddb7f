"""Typed configs: ``Config`` (build by calling), ``Partial`` (build to a partial) and ``Script``.

A config keeps its target and arguments in dunder fields, so a target may have a parameter
with any ordinary name; values are validated against the target's signature at construction
and on every assignment.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Annotated, Any, Generic, TypeVar

from nemoflow.configs import arguments as nemo_args
from nemoflow.configs.compare import config_diff
from nemoflow.configs.refs import File, StepOutput, StepResult
from nemoflow.configs.script import Script
from nemoflow.configs.validation import Deferred, check_value, signature_of, target_name
from nemoflow.errors import (
    ConfigAttributeError,
    ConfigError,
    ConfigTypeError,
    config_error_like,
    describe_value,
)

__all__ = [
    "Buildable",
    "Config",
    "OptionalDefaultConfig",
    "OptionalDefaultPartial",
    "Partial",
    "Script",
    "build",
    "config",
    "partial",
]

T = TypeVar("T")
_TRUSTED: contextvars.ContextVar[bool] = contextvars.ContextVar("nemoflow_trusted_values", default=False)


@contextlib.contextmanager
def trusted_values() -> Iterator[None]:
    """Skip value checks while rebuilding configs that were checked when they were written.

    A step's subprocess uses it for the config its build already validated: it then needs
    no pydantic at all, which keeps a step's start-up short.
    """
    token = _TRUSTED.set(True)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


class _unless_parameter:
    """A config method (NeMo Run's ``clone``, ``walk``, ``broadcast``) that gives way to a target's parameter
    of the same name: ``cfg.walk`` is the argument when the target takes ``walk``."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.name = fn.__name__
        self.__doc__ = fn.__doc__

    def __get__(self, obj: Any, cls: type | None = None) -> Any:
        if obj is None:
            return self.fn
        if self.name in obj.__signature__.params or self.name in obj.__arguments__:
            return obj.__getattr__(self.name)
        return types.MethodType(self.fn, obj)


class Buildable(Deferred, Generic[T]):
    """A target (function or class) with some of its arguments set.

    As in NeMo Run: positional arguments fill parameters in order, a dataclass instance given as an
    argument becomes a ``Config`` of its fields, a parameter annotated ``OptionalDefaultConfig[X]`` left
    unset (or ``None``) gets ``Config(X)``, and ``Config({}, a=1)`` builds a dict.

    Raises:
        UnknownArgumentError: an argument the target does not take (a ``TypeError``).
        ConfigTypeError: a target that is not a function or class, or too many positional arguments.
        ConfigValueError: a value its parameter's annotation refuses (a ``ValueError``).
    """

    def __init__(self, fn_or_cls: Callable[..., T], /, *args: Any, **kwargs: Any) -> None:
        fn_or_cls = getattr(fn_or_cls, "__nemoflow_target__", fn_or_cls)  # a function bound to an executor
        if nemo_args.is_dict_target(fn_or_cls):
            fn_or_cls = dict  # type: ignore[assignment]
        if isinstance(fn_or_cls, Buildable) or not callable(fn_or_cls):
            raise ConfigTypeError(f"a config target must be a function or class, got {describe_value(fn_or_cls)}")
        signature = signature_of(fn_or_cls)
        shadowing = signature.params.keys() & _own_names(type(self))  # build, and anything else a config has
        if shadowing:
            raise ConfigTypeError(
                f"{signature.target_name} has a parameter named {sorted(shadowing)[0]!r}, which is a config method",
                hint="rename the parameter, or use nemoflow.build(cfg) and a plain function",
            )
        object.__setattr__(self, "__fn_or_cls__", fn_or_cls)
        object.__setattr__(self, "__signature__", signature)
        object.__setattr__(self, "__arguments__", {})
        object.__setattr__(self, "__nf_path__", "")
        if args:
            kwargs = {**nemo_args.by_name(signature, args), **kwargs}
        for name, value in kwargs.items():
            if nemo_args.is_dataclass_instance(value):
                value = nemo_args.from_dataclass(value, Config)
            setattr(self, name, value)
        for name, kind, made in nemo_args.default_configs(fn_or_cls, Buildable):
            if kwargs.get(name) is None:  # NeMo Run's OptionalDefaultConfig: unset or None builds the default
                setattr(self, name, kind(made))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        arguments = self.__arguments__
        if name in arguments:
            return arguments[name]
        param = self._param(name)  # an UnknownArgumentError is an AttributeError, as hasattr() expects
        if param.required:
            raise ConfigAttributeError(f"{_join(self.__nf_path__, name)} has not been set")
        return param.default

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("__") and name.endswith("__"):
            object.__setattr__(self, name, value)
            return
        param = self._param(name)
        path = _join(self.__nf_path__ or self.__signature__.target_name, name)
        if not _TRUSTED.get():
            value = check_value(param.annotation, value, path=path)
        _adopt(value, path)
        self.__arguments__[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self.__arguments__[name]
        except KeyError:
            raise ConfigAttributeError(f"{_join(self.__nf_path__, name)} has not been set") from None

    def _param(self, name: str) -> Any:
        try:
            return self.__signature__.param(name)
        except ConfigError as exc:
            raise exc.at(self.__nf_path__ or self.__signature__.target_name) from None

    def __dir__(self) -> list[str]:
        return sorted(set(self.__signature__.params) | set(self.__arguments__))

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and other.__fn_or_cls__ is self.__fn_or_cls__
            and other.__arguments__ == self.__arguments__
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.__arguments__.items())
        return f"{type(self).__name__}[{target_name(self.__fn_or_cls__)}]({args})"

    def __copy__(self) -> Buildable[T]:
        clone = object.__new__(type(self))
        object.__setattr__(clone, "__fn_or_cls__", self.__fn_or_cls__)
        object.__setattr__(clone, "__signature__", self.__signature__)
        object.__setattr__(clone, "__arguments__", dict(self.__arguments__))
        object.__setattr__(clone, "__nf_path__", self.__nf_path__)
        return clone

    def __deepcopy__(self, memo: dict[int, Any]) -> Buildable[T]:
        clone = self.__copy__()
        object.__setattr__(clone, "__arguments__", copy.deepcopy(self.__arguments__, memo))
        return clone

    def build(self) -> T:
        """Build this config (NeMo Run parity); same as ``nemoflow.build(cfg)``."""
        return build(self)

    @_unless_parameter
    def clone(self) -> Buildable[T]:
        """A deep copy of this config (NeMo Run's ``clone``); equal to it, not it."""
        return copy.deepcopy(self)

    @_unless_parameter
    def walk(self, **transforms: Callable[[Any], Any]) -> Buildable[T]:
        """For each ``name=fn``: on this config and every config nested in it that has ``name``, set
        ``name`` to ``fn(that_config)`` (NeMo Run's ``walk``). Returns this config, changed."""
        return _set_all(self, transforms, call=True)

    @_unless_parameter
    def diff(self, old: Buildable[Any], trim: bool = True, **kwargs: Any) -> Any:
        """What changed from ``old`` to this config, one line per value by its path (NeMo Run's ``diff``,
        as text rather than a graph; ``trim`` and the graph options are accepted and do nothing)."""
        return config_diff(old, self)

    @_unless_parameter
    def broadcast(self, **values: Any) -> Buildable[T]:
        """For each ``name=value``: set ``name`` on this config and every config nested in it that has
        ``name`` (NeMo Run's ``broadcast``). Returns this config, changed."""
        return _set_all(self, values, call=False)


class Config(Buildable[T]):
    """Builds to ``target(**arguments)``."""


class Partial(Buildable[T]):
    """Builds to ``functools.partial(target, **arguments)``."""

    builds_instance = False


OptionalDefaultConfig = Annotated[T | None, Config[T]]
"""A parameter that may be ``None`` and, left unset, gets ``Config(X)`` (NeMo Run's ``OptionalDefaultConfig``)."""
OptionalDefaultPartial = Annotated[T | None, Partial[T]]
"""Like :data:`OptionalDefaultConfig`, with ``Partial(X)``."""

_GIVE_WAY = frozenset({"clone", "walk", "broadcast", "diff"})  # methods a parameter of that name hides


@functools.cache
def _own_names(cls: type) -> frozenset[str]:
    return frozenset(dir(cls)) - _GIVE_WAY


def _set_all(cfg: Buildable[Any], changes: Mapping[str, Any], *, call: bool) -> Buildable[Any]:
    """``walk`` / ``broadcast``: this config and every config reachable through arguments, each once."""
    seen: set[int] = set()
    stack: list[Any] = [cfg]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, Buildable):
            for name, change in changes.items():
                if hasattr(node, name):  # a parameter with a value or a default, as NeMo Run checks
                    setattr(node, name, change(node) if call else change)
            stack.extend(reversed(node.__arguments__.values()))
        elif isinstance(node, (list, tuple)):
            stack.extend(reversed(node))
        elif isinstance(node, dict):
            stack.extend(reversed(node.values()))
    return cfg


def place(cfg: Any, path: str) -> None:
    """Name a config tree's place (a step name, say), so its errors read ``step.model.size``."""
    _adopt(cfg, path)


def _adopt(value: Any, path: str, old: str | None = None) -> None:
    """Give nested configs their place in the tree, for error messages.

    A config placed under a parent that had no place yet (at ``old``) moves with that parent,
    so ``outer.trainer.model`` reads that way however the tree was put together.
    """
    if isinstance(value, Buildable):
        current = value.__nf_path__
        if current and current != old:
            return  # already placed elsewhere: a shared config keeps its first place
        object.__setattr__(value, "__nf_path__", path)
        root = current or value.__signature__.target_name
        for name, item in value.__arguments__.items():
            _adopt(item, _join(path, name), _join(root, name))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _adopt(item, f"{path}[{i}]", None if old is None else f"{old}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            _adopt(item, f"{path}.{key}", None if old is None else f"{old}.{key}")


Resolver = Callable[[Any], Any]


def build(buildable: Any, *, resolve: Resolver | None = None) -> Any:
    """Build a config tree: nested Configs are called, Partials become partials.

    Args:
        resolve: turns step references and Files into their run-time values (the
            step runtime passes one; without it a File is its path as written).

    Raises:
        ConfigError: a required argument is missing, or the target's own checks
            (such as a dataclass ``__post_init__``) refuse the values.
    """
    return _build(buildable, "", resolve)


def _build(value: Any, path: str, resolve: Resolver | None) -> Any:
    if isinstance(value, Buildable):
        return _build_one(value, path or value.__nf_path__, resolve)
    if isinstance(value, list):
        return [_build(v, f"{path}[{i}]", resolve) for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return tuple(_build(v, f"{path}[{i}]", resolve) for i, v in enumerate(value))
    if isinstance(value, dict):
        return {k: _build(v, _join(path, str(k)), resolve) for k, v in value.items()}
    if resolve is not None and isinstance(value, (StepOutput, StepResult, File)):
        return resolve(value)
    if isinstance(value, (StepOutput, StepResult)):
        raise ConfigError(f"{value!r} only has a value inside a running step", path=path)
    if isinstance(value, File):
        return value.path
    return value


def _build_one(cfg: Buildable[Any], path: str, resolve: Resolver | None) -> Any:
    arguments = {k: _build(v, _join(path, k), resolve) for k, v in cfg.__arguments__.items()}
    target = cfg.__fn_or_cls__
    if isinstance(cfg, Partial):
        return functools.partial(target, **arguments)
    missing = [p.name for p in cfg.__signature__.params.values() if p.required and p.name not in arguments]
    if missing:
        raise ConfigTypeError(f"{target_name(target)} is missing required argument(s): {', '.join(missing)}", path=path)
    try:
        return target(**arguments)
    except (TypeError, ValueError, AssertionError) as exc:  # the same builtin kind as the target's own error
        raise config_error_like(exc, f"building {target_name(target)} failed: {exc}", path=path) from exc
    except RuntimeError as exc:
        if type(exc).__name__ != "PydanticUserError":
            raise
        raise ConfigTypeError(
            f"building {target_name(target)} failed: {str(exc).splitlines()[0]}",
            path=path,
            hint="its annotations name something that cannot be resolved at run time",
        ) from exc


def missing_arguments(cfg: Buildable[Any]) -> list[str]:
    """Required arguments of ``cfg``'s target that are not set."""
    return [p.name for p in cfg.__signature__.params.values() if p.required and p.name not in cfg.__arguments__]


def partial(fn: Callable[..., T] | None = None, /, *, executor: Any = None) -> Any:
    """Decorate a step function: ``fn.partial(**kw)`` and ``fn.config(**kw)`` make its configs, and
    ``fn.with_executor(executor)`` is the function run through the engine on that executor.

    Bare (``@nemoflow.partial``), the function itself is returned (still callable and importable
    by name). With an executor (``@nemoflow.partial(executor=ex)``), calling the decorated name
    runs the function as a one-step experiment (keyed, cached, ledgered) and returns its value.
    """

    def decorate(fn: Callable[..., T]) -> Any:
        fn.partial = lambda **kwargs: Partial(fn, **kwargs)  # type: ignore[attr-defined]
        fn.config = lambda **kwargs: Config(fn, **kwargs)  # type: ignore[attr-defined]
        fn.with_executor = lambda executor: _engine_function(fn, executor)  # type: ignore[attr-defined]
        return fn if executor is None else _engine_function(fn, executor)

    return decorate if fn is None else decorate(fn)


def _engine_function(fn: Callable[..., Any], executor: Any) -> Any:
    from nemoflow.runs.launch import EngineFunction  # the engine sits far below configs: imported when asked for

    return EngineFunction(fn, executor)


config = partial
