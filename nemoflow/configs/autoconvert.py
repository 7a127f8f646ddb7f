"""``@nemoflow.autoconvert``: a function that returns an object becomes one that returns its ``Config``.

As NeMo Run's (fiddle's ``auto_config``): the function's own source is read again with every call in
it made a config (``Model(hidden=4)`` becomes ``Config(Model, hidden=4)``), except calls of builtins,
of ``Config``/``Partial`` themselves and of other autoconverted functions (which already give configs),
and nemoflow's own config values (``File``, ``Script``); ``run.LocalExecutor()`` becomes ``Config(LocalExecutor)``.
With ``partial=True`` the outermost config is a ``Partial``. A function whose source cannot be read
(defined in a REPL) is called and its result converted: a dataclass becomes a ``Config`` of its fields.
"""

from __future__ import annotations

import ast
import builtins
import functools
import inspect
import textwrap
import types
from collections.abc import Callable
from typing import Any

from nemoflow.configs.arguments import from_dataclass
from nemoflow.configs.core import Buildable, Config, Partial
from nemoflow.errors import ConfigTypeError

_CALL = "__nemoflow_autoconvert_call__"


def autoconvert(fn: Callable[..., Any] | None = None, /, *, partial: bool = False) -> Any:
    """Decorate ``fn`` so that calling it returns the ``Config`` (``partial=True``: ``Partial``) of what it
    returns; bare (``@autoconvert``) or with options (``@autoconvert(partial=True)``).

    Raises (when the decorated function is called):
        ConfigTypeError: it returned something that is neither made by a call nor a dataclass.
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        rewritten = _rewrite(fn)

        @functools.wraps(fn)
        def autobuilder(*args: Any, **kwargs: Any) -> Any:
            out = rewritten(*args, **kwargs) if rewritten is not None else fn(*args, **kwargs)
            if isinstance(out, list):
                return [_as_kind(item, fn, partial) for item in out]
            return _as_kind(out, fn, partial)

        autobuilder.wrapped = fn  # type: ignore[attr-defined]
        autobuilder.__auto_config__ = True  # type: ignore[attr-defined]
        return autobuilder

    return decorate if fn is None else decorate(fn)


def _as_kind(value: Any, fn: Callable[..., Any], partial: bool) -> Any:
    value = _from_model(from_dataclass(value, Config))
    if not isinstance(value, Buildable):
        raise ConfigTypeError(
            f"@autoconvert {getattr(fn, '__qualname__', fn)!r} returned {type(value).__name__}, which has no config",
            hint="return an object made by calling its class (Model(...)), or a nemoflow.Config",
        )
    kind = Partial if partial else Config
    if type(value) is kind:
        return value
    cast = kind(value.__fn_or_cls__)
    object.__setattr__(cast, "__arguments__", dict(value.__arguments__))
    return cast


def _from_model(value: Any) -> Any:
    """A pydantic model instance as a ``Config`` of the fields it was given (a source-less function's result)."""
    fields_set = getattr(value, "model_fields_set", None)
    if isinstance(fields_set, set) and not isinstance(value, type):
        return Config(type(value), **{name: getattr(value, name) for name in sorted(fields_set)})
    return value


def _call(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
    """A call in an autoconverted function: a config of it, unless ``fn`` is exempt."""
    if _exempt(fn):
        return fn(*args, **kwargs)
    return Config(fn, *args, **kwargs)


def _exempt(fn: Any) -> bool:
    if isinstance(fn, type) and issubclass(fn, Buildable):
        return True
    if getattr(fn, "__auto_config__", False) or isinstance(fn, Buildable):
        return True
    if not callable(fn) or isinstance(fn, (types.BuiltinFunctionType, types.MethodType, functools.partial)):
        return True
    module = getattr(fn, "__module__", None) or ""
    if module.startswith("nemoflow.configs"):
        return True  # File(...), Script(...), sweeps: values of a config already
    return module == "builtins" or fn in vars(builtins).values() or module.split(".")[0] == "typing"


class _Calls(ast.NodeTransformer):
    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        call = ast.Call(func=ast.Name(_CALL, ast.Load()), args=[node.func, *node.args], keywords=node.keywords)
        return ast.copy_location(call, node)

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        return node  # a lambda's calls happen later, when something calls it

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.body = [self.visit(stmt) for stmt in node.body]  # decorators and defaults are not rewritten
        return node


def _rewrite(fn: Callable[..., Any]) -> Callable[..., Any] | None:
    """``fn`` recompiled with its calls made configs; None when its source cannot be read or it has a closure."""
    code = getattr(fn, "__code__", None)
    if code is None or code.co_freevars or not inspect.isfunction(fn):
        return None
    try:
        source = textwrap.dedent(inspect.getsource(fn))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        return None
    definition = tree.body[0] if tree.body else None
    if not isinstance(definition, ast.FunctionDef):
        return None
    definition.decorator_list = []
    definition.returns = None  # annotations and defaults are the original function's, not evaluated again
    arguments = definition.args
    for arg in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs, arguments.vararg, arguments.kwarg]:
        if arg is not None:
            arg.annotation = None
    arguments.defaults = []
    arguments.kw_defaults = [None] * len(arguments.kwonlyargs)
    definition.body = [_Calls().visit(stmt) for stmt in definition.body]
    ast.increment_lineno(tree, code.co_firstlineno - 1)
    namespace: dict[str, Any] = {}
    globals_ = fn.__globals__
    globals_[_CALL] = _call  # in the module's namespace: names defined after the function resolve when it runs
    exec(compile(ast.fix_missing_locations(tree), code.co_filename, "exec"), globals_, namespace)
    rewritten = namespace.get(definition.name)
    if not inspect.isfunction(rewritten):
        return None
    rewritten.__defaults__ = fn.__defaults__
    rewritten.__kwdefaults__ = fn.__kwdefaults__
    return rewritten
