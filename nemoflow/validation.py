"""Check config values against a target's signature, with pydantic doing the type work."""

from __future__ import annotations

import collections.abc
import functools
import inspect
import types
import typing
from dataclasses import dataclass
from typing import Any

from nemoflow.errors import ConfigError, describe_value, did_you_mean
from nemoflow.refs import File, StepOutput, StepResult

_EMPTY = inspect.Parameter.empty


@dataclass(frozen=True)
class Param:
    """One parameter of a config target."""

    name: str
    annotation: Any
    default: Any
    kind: inspect._ParameterKind

    @property
    def required(self) -> bool:
        return self.default is _EMPTY and self.kind not in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        )


@dataclass(frozen=True)
class Signature:
    """The parameters of a target, by name, and whether it takes ``**kwargs``."""

    target_name: str
    params: dict[str, Param]
    var_keyword: bool

    def param(self, name: str) -> Param:
        """The parameter called ``name``, or a ConfigError naming the closest ones."""
        found = self.params.get(name)
        if found is not None:
            return found
        if self.var_keyword:
            return Param(name, Any, _EMPTY, inspect.Parameter.KEYWORD_ONLY)
        raise ConfigError(
            f"{self.target_name} has no argument {name!r}",
            path=name,
            hint=did_you_mean(name, self.params) or f"its arguments are: {', '.join(self.params) or 'none'}",
        )


def target_name(target: Any) -> str:
    return getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or repr(target)


@functools.cache
def signature_of(target: Any) -> Signature:
    """The signature of a function or class, annotations resolved."""
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot read the signature of {target!r}: {exc}") from exc
    try:
        hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
    except Exception:  # unresolvable forward references: fall back to no type checks
        hints = {}
    params: dict[str, Param] = {}
    var_keyword = False
    for p in sig.parameters.values():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            var_keyword = True
            continue
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        annotation = hints.get(p.name, p.annotation)
        params[p.name] = Param(p.name, Any if annotation is _EMPTY else annotation, p.default, p.kind)
    return Signature(target_name(target), params, var_keyword)


@functools.cache
def _adapter(annotation: Any) -> Any:
    import pydantic

    try:
        return pydantic.TypeAdapter(annotation, config=pydantic.ConfigDict(arbitrary_types_allowed=True))
    except Exception:
        try:
            return pydantic.TypeAdapter(annotation)
        except Exception:
            return None  # a type pydantic cannot check; accept any value


def type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


class Deferred:
    """Base of config objects: values that become their target's product only at build time.

    ``builds_instance`` is True when building calls the target (so a config of class ``C``
    stands for a ``C``), False when it only binds arguments (a partial).
    """

    builds_instance: bool = True
    __fn_or_cls__: Any


def _is_placeholder(value: Any) -> bool:
    return isinstance(value, (Deferred, File, StepOutput, StepResult))


def _contains_placeholder(value: Any) -> bool:
    if _is_placeholder(value):
        return True
    if isinstance(value, (list, tuple)):
        return any(_contains_placeholder(v) for v in value)
    if isinstance(value, dict):
        return any(_contains_placeholder(v) for v in value.values())
    return False


def check_value(annotation: Any, value: Any, *, path: str) -> Any:
    """Validate ``value`` for ``annotation``; return it, coerced where pydantic coerces.

    Placeholders (nested configs, files, step outputs and results) are checked for what
    they will become at run time, and kept as they are.
    """
    if annotation is Any or annotation is _EMPTY:
        return value
    if _contains_placeholder(value):
        _check_placeholder(annotation, value, path=path)
        return value
    adapter = _adapter(annotation)
    if adapter is None:
        return value
    import pydantic

    try:
        return adapter.validate_python(value)
    except pydantic.ValidationError as exc:
        detail = exc.errors()[0].get("msg", "invalid value") if exc.errors() else "invalid value"
        raise ConfigError(
            f"expected {type_name(annotation)}, got {describe_value(value)}: {detail}", path=path
        ) from None


def _check_placeholder(annotation: Any, value: Any, *, path: str) -> None:
    if annotation is Any:  # reached through Optional[Any] and friends
        return
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        errors = []
        for option in typing.get_args(annotation):
            try:
                _check_placeholder(option, value, path=path)
                return
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if isinstance(value, StepResult):
        return
    if isinstance(value, (File, StepOutput)):
        if not _accepts_path(annotation):
            raise ConfigError(
                f"expected {type_name(annotation)}, got {describe_value(value)}, which becomes a path string", path=path
            )
        return
    if isinstance(value, Deferred):
        produced = value.__fn_or_cls__
        if not value.builds_instance or not inspect.isclass(produced):
            return
        if isinstance(annotation, type) and not _is_subclass(produced, annotation):
            raise ConfigError(
                f"expected {type_name(annotation)}, got a config that builds {produced.__name__}", path=path
            )
        return
    if isinstance(value, (list, tuple)):
        if not (origin in _SEQUENCES or annotation in _SEQUENCES):
            raise ConfigError(f"expected {type_name(annotation)}, got a {type(value).__name__}", path=path)
        args = typing.get_args(annotation)
        item = args[0] if args and origin is not tuple else Any
        for i, v in enumerate(value):
            check_value(item, v, path=f"{path}[{i}]")
    elif isinstance(value, dict):
        if not (origin in _MAPPINGS or annotation in _MAPPINGS):
            raise ConfigError(f"expected {type_name(annotation)}, got a dict", path=path)
        args = typing.get_args(annotation)
        item = args[1] if len(args) == 2 else Any
        for k, v in value.items():
            check_value(item, v, path=f"{path}.{k}")


def _accepts_path(annotation: Any) -> bool:
    """Does ``annotation`` admit the path string a File or step output becomes at run time?"""
    try:
        return _accepts_path_cached(annotation)
    except TypeError:  # an unhashable annotation (Annotated with a dict, say)
        return _accepts_path_cached.__wrapped__(annotation)


@functools.cache
def _accepts_path_cached(annotation: Any) -> bool:
    try:
        check_value(annotation, "placeholder/path", path="")
    except ConfigError:
        return False
    return True


def _is_subclass(cls: type, annotation: type) -> bool:
    try:
        return issubclass(cls, annotation)
    except TypeError:  # a Protocol that is not runtime-checkable: nothing to check against
        return True


_SEQUENCES = (list, tuple, collections.abc.Sequence)
_MAPPINGS = (dict, collections.abc.Mapping)
