"""Check config values against a target's signature, with pydantic doing the type work."""

from __future__ import annotations

# pydantic is imported only when a value has to be checked (`import nemoflow` stays light).
import collections.abc
import contextlib
import functools
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from nemoflow.configs.hints import complete_model, complete_models_in, resolved_hints
from nemoflow.configs.refs import File, StepOutput, StepResult
from nemoflow.errors import (
    ConfigError,
    ConfigTypeError,
    ConfigValueError,
    UnknownArgumentError,
    describe_value,
    did_you_mean,
)

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
        raise UnknownArgumentError(
            f"{self.target_name} has no argument {name!r}",
            path=name,
            hint=did_you_mean(name, self.params) or f"its arguments are: {', '.join(self.params) or 'none'}",
        )


def target_name(target: Any) -> str:
    return getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or repr(target)


@functools.cache
def signature_of(target: Any) -> Signature:
    """The signature of a function or class, annotations resolved.

    String annotations (``from __future__ import annotations``) are evaluated in the target's
    own module, with its class's namespace for a method; see ``resolved_hints``.
    """
    if target is dict:  # NeMo Run's Config(dict, a=1) / Config({}, a=1): any keyword, builds a dict
        return Signature("dict", {}, var_keyword=True)
    complete_model(target)  # a pydantic model's signature comes from its fields
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError) as exc:
        raise ConfigTypeError(f"cannot read the signature of {target!r}: {exc}") from exc
    hints = resolved_hints(target)
    params: dict[str, Param] = {}
    var_keyword = False
    for p in sig.parameters.values():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            var_keyword = True
            continue
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        annotation = hints.get(p.name, p.annotation)
        if annotation is _EMPTY or isinstance(annotation, (str, typing.ForwardRef)):
            annotation = Any  # not resolvable: no type checks for this parameter
        params[p.name] = Param(p.name, annotation, p.default, p.kind)
    return Signature(target_name(target), params, var_keyword)


T = TypeVar("T")


def _cached_when_hashable(fn: Callable[[Any], T]) -> Callable[[Any], T]:
    """``functools.cache`` for a function of one annotation; an unhashable one (Annotated with a dict) is not cached."""
    cached = functools.cache(fn)

    @functools.wraps(fn)
    def call(annotation: Any) -> T:
        try:
            hash(annotation)
        except TypeError:
            return fn(annotation)
        return cached(annotation)

    return call


@_cached_when_hashable
def _adapter(annotation: Any) -> Any:
    import pydantic

    complete_models_in(annotation)  # models with forward references to names defined after them
    adapter = None
    try:
        adapter = pydantic.TypeAdapter(annotation, config=pydantic.ConfigDict(arbitrary_types_allowed=True))
    except Exception:
        with contextlib.suppress(Exception):
            adapter = pydantic.TypeAdapter(annotation)
    if adapter is not None and getattr(adapter, "pydantic_complete", True) is False:
        with contextlib.suppress(Exception):
            adapter.rebuild(raise_errors=False)
        if adapter.pydantic_complete is False:
            return None  # it refers to names that do not resolve: accept any value
    return adapter  # None: a type pydantic cannot check; accept any value


def type_name(annotation: Any) -> str:
    annotation = _unannotated(annotation)
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _unannotated(annotation: Any) -> Any:
    """``X`` for ``Annotated[X, ...]``: the metadata is pydantic's to check."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


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
        raise ConfigValueError(
            f"expected {type_name(annotation)}, got {describe_value(value)}: {detail}", path=path
        ) from None
    except pydantic.PydanticUserError:  # a type pydantic cannot complete (an unresolvable name inside)
        return value


def _check_placeholder(annotation: Any, value: Any, *, path: str) -> None:
    annotation = _unannotated(annotation)
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
            raise ConfigValueError(
                f"expected {type_name(annotation)}, got {describe_value(value)}, which becomes a path string", path=path
            )
        return
    if isinstance(value, Deferred):
        produced = value.__fn_or_cls__
        if not value.builds_instance or not inspect.isclass(produced):
            return
        if isinstance(annotation, type) and not _is_subclass(produced, annotation):
            raise ConfigValueError(
                f"expected {type_name(annotation)}, got a config that builds {produced.__name__}", path=path
            )
        return
    if isinstance(value, (list, tuple)):
        if not (origin in _SEQUENCES or annotation in _SEQUENCES):
            raise ConfigValueError(f"expected {type_name(annotation)}, got a {type(value).__name__}", path=path)
        args = typing.get_args(annotation)
        item = args[0] if args and origin is not tuple else Any
        for i, v in enumerate(value):
            check_value(item, v, path=f"{path}[{i}]")
    elif isinstance(value, dict):
        if not (origin in _MAPPINGS or annotation in _MAPPINGS):
            raise ConfigValueError(f"expected {type_name(annotation)}, got a dict", path=path)
        args = typing.get_args(annotation)
        item = args[1] if len(args) == 2 else Any
        for k, v in value.items():
            check_value(item, v, path=f"{path}.{k}")


@_cached_when_hashable
def _accepts_path(annotation: Any) -> bool:
    """Does ``annotation`` admit the path string a File or step output becomes at run time?"""
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
