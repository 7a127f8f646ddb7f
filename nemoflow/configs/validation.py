"""Check config values against a target's signature, with pydantic doing the type work."""

from __future__ import annotations

# pydantic is imported only when a value has to be checked (`import nemoflow` stays light).
import builtins
import collections.abc
import contextlib
import functools
import inspect
import sys
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from nemoflow.configs.refs import File, StepOutput, StepResult
from nemoflow.errors import ConfigError, describe_value, did_you_mean

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
    """The signature of a function or class, annotations resolved.

    String annotations (``from __future__ import annotations``) are evaluated in the target's
    own module, with its class's namespace for a method; see ``resolved_hints``.
    """
    _complete_model(target)  # a pydantic model's signature comes from its fields
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot read the signature of {target!r}: {exc}") from exc
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


def _complete_model(target: Any) -> None:
    """Rebuild a pydantic model whose forward references could not be resolved when it was defined."""
    if inspect.isclass(target) and getattr(target, "__pydantic_complete__", True) is False:
        with contextlib.suppress(Exception):
            target.model_rebuild(raise_errors=False, _types_namespace={})  # names from its own module


def _complete_models_in(annotation: Any, seen: set[int] | None = None) -> None:
    seen = set() if seen is None else seen
    if id(annotation) in seen:
        return
    seen.add(id(annotation))
    _complete_model(annotation)
    try:
        args = typing.get_args(annotation)
    except Exception:
        return
    for arg in args:
        _complete_models_in(arg, seen)


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

    _complete_models_in(annotation)  # models with forward references to names defined after them
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
        raise ConfigError(
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
