"""Resolving a target's annotations (strings under ``from __future__ import annotations``) and completing
pydantic models whose forward references could not be resolved when they were defined."""

from __future__ import annotations

import builtins
import collections.abc
import functools
import inspect
import sys
import types
import typing
from collections.abc import Iterator
from typing import Any

__all__ = ["complete_model", "complete_models_in", "resolved_hints"]

# ---- resolving annotations ----------------------------------------------------------------------
#
# A module written with ``from __future__ import annotations`` keeps every annotation as a string.
# They are evaluated here in the namespace their code sees: the module the function (or class) was
# defined in, under the namespaces of the classes a method is defined in. A name that cannot be
# found there (one imported only under ``if TYPE_CHECKING:``, say) stands for ``Any``; an annotation
# that still cannot be evaluated (``np.ndarray`` with ``np`` unknown) makes its parameter ``Any``.
# Only annotation strings, the target's own source, are evaluated, never config values.


def resolved_hints(target: Any) -> dict[str, Any]:
    """The parameter annotations of a function, method or class (its ``__init__``), resolved.

    For a class whose ``__init__`` is generated from its fields (a dataclass, attrs or pydantic
    model) the field annotations are used, resolved in the module of the class that declares them.
    ``Annotated`` metadata is kept. Unresolvable parts become ``Any``; nothing here raises.
    """
    if inspect.isclass(target):
        init = getattr(target, "__init__", None)
        if not inspect.isfunction(init):  # object.__init__: the signature may come from __new__
            new = getattr(target, "__new__", None)
            init = new if inspect.isfunction(new) and not _is_generated(new) else init
        own = _function_hints(init) if inspect.isfunction(init) else {}
        return {**own, **_class_hints(target)} if _is_generated(init) else own
    return _function_hints(target)


def _function_hints(fn: Any) -> dict[str, Any]:
    fn = _underlying_function(fn)
    raw = _raw_annotations(fn)
    if not raw:
        return {}
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    layers = [*_class_namespaces(module, getattr(fn, "__qualname__", "")), getattr(fn, "__globals__", {})]
    if module is not None:
        layers.append(vars(module))  # a generated function may see a copy of its module's names only
    return {name: _resolve(annotation, layers) for name, annotation in raw.items() if name != "return"}


def _class_hints(cls: type) -> dict[str, Any]:
    """Field annotations of ``cls`` and its bases (the nearest declaration of a name wins)."""
    hints: dict[str, Any] = {}
    for base in reversed(cls.__mro__):
        if base is object or base.__module__ == "builtins":
            continue
        try:
            own = inspect.get_annotations(base)
        except Exception:
            continue
        if not own:
            continue
        module = sys.modules.get(base.__module__)
        layers = [_annotation_names(base), *_class_namespaces(module, base.__qualname__)]
        if module is not None:
            layers.append(vars(module))
        for name, annotation in own.items():
            hints[name] = _resolve(annotation, layers)
    return hints


def _resolve(annotation: Any, layers: list[Any]) -> Any:
    """``annotation`` evaluated if it is a string (or holds strings); ``Any`` if that fails."""
    if isinstance(annotation, str):
        try:
            annotation = eval(compile(annotation, "<annotation>", "eval"), {}, _Names(layers))
        except Exception:
            return Any
    if not _holds_forward_refs(annotation):
        return annotation
    names = _Names(layers)
    shim = types.SimpleNamespace(__annotations__={"value": annotation})
    try:  # list["Model"] and friends: typing evaluates the strings nested inside
        return typing.get_type_hints(shim, globalns={}, localns=names, include_extras=True)["value"]  # type: ignore[arg-type]
    except Exception:
        return Any


class _Names(collections.abc.Mapping):  # type: ignore[type-arg]
    """The names an annotation sees, innermost first, then builtins; anything else is ``Any``."""

    def __init__(self, layers: list[Any]) -> None:
        self._layers = [*layers, vars(builtins)]

    def __getitem__(self, name: str) -> Any:
        for layer in self._layers:
            if name in layer:
                return layer[name]
        return Any  # imported only for type checkers, or not defined yet

    def __contains__(self, name: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter({k for layer in self._layers for k in layer})

    def __len__(self) -> int:
        return len(set(iter(self)))


def _holds_forward_refs(annotation: Any) -> bool:
    if isinstance(annotation, (str, typing.ForwardRef)):
        return True
    try:
        args = typing.get_args(annotation)
    except Exception:
        return False
    if typing.get_origin(annotation) is typing.Annotated:
        args = args[:1]  # metadata is not an annotation
    elif typing.get_origin(annotation) is typing.Literal:
        return False
    return any(_holds_forward_refs(a) for a in args)


def _underlying_function(fn: Any) -> Any:
    """The plain function behind a bound method, partial or decorated wrapper."""
    for _ in range(100):
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif inspect.ismethod(fn):
            fn = fn.__func__
        elif hasattr(fn, "__wrapped__"):
            fn = fn.__wrapped__
        else:
            break
    if not inspect.isfunction(fn) and not inspect.isclass(fn) and callable(fn):
        call = inspect.getattr_static(type(fn), "__call__", None)  # a callable instance
        if inspect.isfunction(call):
            return call
    return fn


def _raw_annotations(fn: Any) -> dict[str, Any]:
    try:
        return dict(inspect.get_annotations(fn)) if fn is not None else {}
    except Exception:
        return {}


def _class_namespaces(module: Any, qualname: str) -> list[Any]:
    """The namespaces of the classes ``qualname`` is nested in, innermost first.

    Classes defined inside a function (``<locals>``) cannot be reached.
    """
    parts = qualname.split(".")[:-1]
    if module is None or "<locals>" in parts:
        return []
    found: list[Any] = []
    obj: Any = module
    for part in parts:
        obj = getattr(obj, part, None)
        if not inspect.isclass(obj):
            break
        found.append(_annotation_names(obj))
    return found[::-1]


@functools.cache
def _annotation_names(cls: type) -> dict[str, Any]:
    """A class's own names that an annotation may mean: not its methods (``def list(self)``
    must not hide the builtin ``list`` from ``layers: list[int]``)."""
    members = (classmethod, staticmethod, property, functools.cached_property)
    return {k: v for k, v in vars(cls).items() if not (inspect.isroutine(v) or isinstance(v, members))}


def _is_generated(init: Any) -> bool:
    """Is ``init`` made from the class's fields (dataclass, attrs, pydantic) rather than written?"""
    if not inspect.isfunction(init):
        return True
    if getattr(init, "__module__", "").startswith("pydantic"):
        return True
    return init.__code__.co_filename.startswith("<")


def complete_model(target: Any) -> None:
    """Rebuild a pydantic model whose forward references could not be resolved when it was defined.

    Names from its own module resolve; a name defined nowhere (imported only under ``TYPE_CHECKING``)
    stands for ``Any``, or for a namespace of ``Any``s when it is used as ``np.ndarray``. Without this
    a model written with ``from __future__ import annotations`` has no signature and fails when built
    with a raw ``PydanticUserError``.
    """
    if not (inspect.isclass(target) and getattr(target, "__pydantic_complete__", True) is False):
        return
    from pydantic.errors import PydanticUndefinedAnnotation

    standins: dict[str, Any] = {}
    last = None
    for _ in range(50):
        try:
            _rebuild(target, dict(standins))
            return
        except PydanticUndefinedAnnotation as exc:
            if exc.name in standins:
                return
            standins[exc.name] = Any
            last = exc.name
        except AttributeError:  # ``np.ndarray`` with ``np`` standing for Any: a namespace of Anys then
            if last is None or standins.get(last) is not Any:
                return
            standins[last] = _AnyNamespace()
        except Exception:
            return


def _rebuild(__model: Any, __names: dict[str, Any]) -> None:
    # pydantic also reads its caller's locals as names: this frame has none an annotation could mean
    __model.model_rebuild(force=True, raise_errors=True, _types_namespace=__names)


class _AnyNamespace:
    """A stand-in for a module imported only for type checkers: ``np.ndarray`` is ``Any``."""

    def __getattr__(self, name: str) -> Any:
        return Any


def complete_models_in(annotation: Any, seen: set[int] | None = None) -> None:
    seen = set() if seen is None else seen
    if id(annotation) in seen:
        return
    seen.add(id(annotation))
    complete_model(annotation)
    try:
        args = typing.get_args(annotation)
    except Exception:
        return
    for arg in args:
        complete_models_in(arg, seen)
