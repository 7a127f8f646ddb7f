"""How a config's constructor reads its arguments, as NeMo Run's does.

Positional arguments fill parameters by position; a dataclass *instance* becomes a ``Config`` of its
init fields; a parameter annotated ``OptionalDefaultConfig[X]`` (``Annotated[Optional[X], Config[X]]``)
left unset gets ``Config(X)`` (``Partial`` likewise); ``Config({}, a=1)`` / ``Config(dict[str, int], ...)``
builds a dict.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from typing import Any, TypeVar

from nemoflow.configs.validation import Signature, signature_of
from nemoflow.errors import ConfigTypeError


def is_dict_target(target: Any) -> bool:
    """``{}`` or ``dict[...]``: NeMo Run's spelling of a config that builds a dict."""
    return (isinstance(target, dict) and not target) or typing.get_origin(target) is dict


def by_name(signature: Signature, args: tuple[Any, ...]) -> dict[str, Any]:
    """Positional arguments by the names of the parameters they fill.

    Raises:
        ConfigTypeError: more positional arguments than the target takes.
    """
    positional = [
        p.name
        for p in signature.params.values()
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if len(args) > len(positional):
        raise ConfigTypeError(
            f"{signature.target_name} takes {len(positional)} positional argument(s), got {len(args)}"
        )
    return dict(zip(positional, args))


def is_dataclass_instance(value: Any) -> bool:
    """An instance of a user's dataclass, which a config argument turns into a ``Config`` (as NeMo Run)."""
    return dataclasses.is_dataclass(value) and not isinstance(value, type) and _nameable(type(value))


def from_dataclass(value: Any, config: type) -> Any:
    """A dataclass instance as a ``config`` (``Config``) of its init fields, the dataclasses nested in it
    (through fields, lists, tuples and dicts) too. Anything else is returned as it is."""
    if is_dataclass_instance(value):
        fields = {f.name: from_dataclass(getattr(value, f.name), config) for f in dataclasses.fields(value) if f.init}
        return config(type(value), **fields)
    if type(value) in (list, tuple):
        return type(value)(from_dataclass(v, config) for v in value)
    if type(value) is dict:
        return {k: from_dataclass(v, config) for k, v in value.items()}
    return value


def _nameable(cls: type) -> bool:
    """A user's dataclass (not nemoflow's own: a File stays a File) that an import path can name."""
    return "<locals>" not in cls.__qualname__ and not cls.__module__.startswith("nemoflow.")


def default_configs(target: Any, buildable: type) -> list[tuple[str, type, Any]]:
    """The parameters of ``target`` annotated ``Annotated[Optional[X], Config[X]]`` (or ``Partial[X]``), as
    (name, the config class, X); ``buildable`` is the base class of config classes."""
    try:
        return _cached(target, buildable)
    except TypeError:  # an unhashable callable
        return _find(target, buildable)


def _find(target: Any, buildable: type) -> list[tuple[str, type, Any]]:
    found = []
    for param in signature_of(target).params.values():
        annotation = param.annotation
        if typing.get_origin(annotation) is not typing.Annotated:
            continue
        inner, *metadata = typing.get_args(annotation)
        if typing.get_origin(inner) not in (typing.Union, types.UnionType):
            continue
        options = [a for a in typing.get_args(inner) if a is not type(None)]
        if len(options) != len(typing.get_args(inner)) - 1:
            continue  # not Optional[...]
        for meta in metadata:
            kind = typing.get_origin(meta) or meta
            if isinstance(kind, type) and issubclass(kind, buildable):
                made = typing.get_args(meta)
                what = made[0] if made and not isinstance(made[0], TypeVar) else options[0]
                found.append((param.name, kind, what))
                break
    return found


_cached = functools.cache(_find)
