"""Factories: functions returning configs, picked by name on the command line (``model=small_model``).

``@nemoflow.cli.factory`` registers one; a factory fits a parameter when the type its config
builds (``for_type``, else read from a ``Config[T]`` return annotation) is what the parameter
takes. A value may also name a class, a module-level config, or a factory (registered, or annotated
``-> Config[T]``) by dotted import path (``pkg.mod.fn``); any other function is refused, never called.
"""

from __future__ import annotations

import collections.abc
import copy
import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nemoflow.configs.core import Buildable, Config
from nemoflow.errors import ConfigError, describe_value, did_you_mean


@dataclass(frozen=True)
class Factory:
    """A registered factory: its name, the function, the type its config builds (None: any).

    ``for_arg`` narrows it to one parameter of ``for_type`` (NeMo Run's ``target_arg``);
    ``namespace`` is the name NeMo Run's ``resolve_factory(namespace, name)`` finds it under.
    """

    name: str
    fn: Callable[..., Any]
    for_type: Any = None
    for_arg: str | None = None
    namespace: str | None = None


_REGISTRY: dict[str, list[Factory]] = {}


def register(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    for_type: Any = None,
    for_arg: str | None = None,
    namespace: str | None = None,
) -> Factory:
    """Register ``fn`` as a factory called ``name`` (default: its own name).

    Registering the same function again (a script imported a second time under its file
    name, say) replaces the earlier entry.
    """
    if not callable(fn):
        raise ConfigError(f"a factory must be a function, got {describe_value(fn)}")
    kind = for_type if for_type is not None else _returned_type(fn)
    factory = Factory(name or fn.__name__, fn, kind, for_arg, namespace)
    same = _qualname(fn), _qualname(kind), for_arg
    entries = [
        f for f in _REGISTRY.get(factory.name, []) if (_qualname(f.fn), _qualname(f.for_type), f.for_arg) != same
    ]
    _REGISTRY[factory.name] = [*entries, factory]
    return factory


def in_namespace(namespace: str) -> list[Factory]:
    """The factories registered under ``namespace`` (given as ``namespace=``, or the import path of their type)."""
    return [
        f for entries in _REGISTRY.values() for f in entries if namespace in (f.namespace, _import_path(f.for_type))
    ]


def registered(annotation: Any = Any, *, owner: Any = None, arg: str | None = None) -> list[Factory]:
    """The registered factories that fit a parameter annotated ``annotation`` (parameter ``arg`` of ``owner``)."""
    return [f for entries in _REGISTRY.values() for f in entries if fits(f, annotation, owner=owner, arg=arg)]


def find(name: str, annotation: Any, *, owner: Any = None, arg: str | None = None) -> Factory | None:
    """The registered factory ``name`` that fits ``annotation`` (parameter ``arg`` of ``owner``), or None.

    A factory registered for that very parameter (``target_arg``) wins over one for its type.

    Raises:
        ConfigError: two factories of that name fit.
    """
    candidates = [f for f in _REGISTRY.get(name, []) if fits(f, annotation, owner=owner, arg=arg)]
    found = [f for f in candidates if f.for_arg] or candidates
    if len(found) > 1:
        kinds = ", ".join(_qualname(f.for_type) or "any type" for f in found)
        raise ConfigError(f"factory name {name!r} is ambiguous here (for {kinds})", hint="register with distinct names")
    return found[0] if found else None


def fits(factory: Factory, annotation: Any, *, owner: Any = None, arg: str | None = None) -> bool:
    """Does ``factory``'s product suit a parameter annotated ``annotation`` (parameter ``arg`` of ``owner``)?"""
    if factory.for_arg is not None:
        return arg == factory.for_arg and owner is not None and owner is factory.for_type
    if factory.for_type is None:
        return True
    wanted = built_types(annotation)
    if Any in wanted or factory.for_type in wanted:
        return True
    return any(_subclass(factory.for_type, t) for t in wanted)


def built_types(annotation: Any) -> set[Any]:
    """The types a value for ``annotation`` may build: ``Config[T]`` and ``T`` give T; unions their members."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return set().union(*(built_types(a) for a in typing.get_args(annotation)))
    if isinstance(origin, type) and issubclass(origin, Buildable):
        args = typing.get_args(annotation)
        return {args[0]} if args else {Any}
    if origin is typing.Annotated:
        return built_types(typing.get_args(annotation)[0])
    return {annotation}


def call(target: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], *, name: str, where: str) -> Any:
    """Call a factory (or make ``Config(cls, **kwargs)`` of a class) with literal arguments.

    Raises:
        ConfigError: the call fails; the message names the factory and ``where`` it was asked for.
    """
    if isinstance(target, Buildable):  # a module-level config named by import path
        if args or kwargs:
            raise ConfigError(f"{name} is a config, not a factory: it takes no arguments", path=where)
        return copy.deepcopy(target)
    if inspect.isclass(target):
        if args:
            raise ConfigError(f"{name}: pass a class's arguments by keyword", path=where)
        return Config(target, **kwargs)
    if not callable(target):
        raise ConfigError(f"{name} is {describe_value(target)}, not a factory", path=where)
    try:
        return target(*args, **kwargs)
    except ConfigError as exc:
        raise ConfigError(f"factory {name}: {exc}", path=where, hint=exc.hint) from None
    except (TypeError, ValueError, AssertionError) as exc:
        raise ConfigError(f"factory {name} failed: {type(exc).__name__}: {exc}", path=where) from None


def resolve(name: str, annotation: Any, *, where: str, owner: Any = None, arg: str | None = None) -> Any:
    """The factory called ``name`` (registered and fitting), or the object at dotted path ``name``.

    Raises:
        ConfigError: nothing by that name; the message suggests the closest factory names.
    """
    factory = find(name, annotation, owner=owner, arg=arg)
    if factory is not None:
        return factory.fn
    if "." in name:
        from nemoflow.configs.serialize import import_object

        try:
            target = import_object(name)
        except ConfigError as exc:
            raise ConfigError(exc.message, path=where) from None
        plain_function = callable(target) and not inspect.isclass(target) and not isinstance(target, Buildable)
        if plain_function and not _makes_configs(target):  # os.system(...) on a command line must not run
            raise ConfigError(
                f"{name} is a function that does not make configs: a value may call only a factory",
                path=where,
                hint="register it with @nemoflow.cli.factory, or annotate it to return nemoflow.Config[...]",
            )
        return target
    names = [f.name for f in registered(annotation, owner=owner, arg=arg)] or list(_REGISTRY)
    raise ConfigError(
        f"no factory named {name!r}",
        path=where,
        hint=did_you_mean(name, names) or (f"factories: {', '.join(sorted(set(names)))}" if names else None),
    )


def dataclass_config(value: Any) -> Buildable[Any]:
    """A dataclass instance as the ``Config`` that builds it (nested instances too)."""
    fields = {
        f.name: dataclass_config(v) if _is_dataclass_instance(v := getattr(value, f.name)) else v
        for f in dataclasses.fields(value)
        if f.init
    }
    return Config(type(value), **fields)


def default_config(annotation: Any, default: Any) -> Buildable[Any] | None:
    """The nested config a parameter starts with: its dataclass default, or its dataclass type's defaults."""
    if _is_dataclass_instance(default):
        return dataclass_config(default)
    if default is not inspect.Parameter.empty:
        return None
    types_ = built_types(annotation) - {type(None)}
    if len(types_) == 1:
        (only,) = types_
        if inspect.isclass(only) and dataclasses.is_dataclass(only):
            return Config(only)
    return None


def is_dataclass_instance(value: Any) -> bool:
    """A dataclass object (not a dataclass type)."""
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


_is_dataclass_instance = is_dataclass_instance


def item_annotation(annotation: Any) -> Any:
    """The item type of ``list[T]``, ``Sequence[T]``, ``tuple[T, ...]`` (Optional around them too); else Any."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return item_annotation(inner[0]) if len(inner) == 1 else Any
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return item_annotation(args[0])
    if isinstance(origin, type) and issubclass(origin, (list, tuple, set, frozenset, collections.abc.Sequence)):
        return args[0] if args else Any
    return Any


def _makes_configs(fn: Callable[..., Any]) -> bool:
    """A registered factory, or a function whose return annotation is a config (``-> Config[T]``)."""
    if any(f.fn is fn for entries in _REGISTRY.values() for f in entries):
        return True
    try:
        returned = typing.get_type_hints(fn).get("return")
    except Exception:  # unresolvable annotations say nothing about what it makes
        return False
    origin = typing.get_origin(returned) or returned
    return isinstance(origin, type) and issubclass(origin, Buildable)


def _returned_type(fn: Callable[..., Any]) -> Any:
    """T from a ``-> Config[T]`` (or ``Partial[T]``) return annotation, else None."""
    try:
        returned = typing.get_type_hints(fn).get("return")
    except Exception:  # an unresolvable annotation: the factory then fits any parameter
        return None
    kinds = built_types(returned) if returned is not None else set()
    origin = typing.get_origin(returned)
    if isinstance(origin, type) and issubclass(origin, Buildable) and len(kinds) == 1:
        return next(iter(kinds))
    if inspect.isclass(returned) and not issubclass(returned, Buildable) and returned.__module__ != "builtins":
        return returned  # `-> Model` of an autoconvert factory: it makes Config[Model]
    return None


def _import_path(obj: Any) -> str | None:
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return f"{module}.{qualname}" if module and qualname else None


def _qualname(obj: Any) -> str | None:
    return None if obj is None else getattr(obj, "__qualname__", repr(obj))


def _subclass(cls: Any, of: Any) -> bool:
    try:
        return inspect.isclass(cls) and inspect.isclass(of) and issubclass(cls, of)
    except TypeError:
        return False
