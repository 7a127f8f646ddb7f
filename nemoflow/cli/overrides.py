"""Apply override tokens to configs: one config (an entrypoint's), or a pipeline's steps.

    model.hidden_size=1024   lr*=2   x=None   model=small_model(hidden_size=3)   @run.yaml   *.seed=1

The grammar is in :mod:`nemoflow.cli.tokens`. Values are converted by the target parameter's
type (assigning to a config validates); pipelines (``nemoflow build FILE OVERRIDES``) address a
step first: ``train-small.lr=1e-3``, or every step with ``*.seed=1``.
"""

from __future__ import annotations

import copy
import inspect
import operator
import os
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from nemoflow.cli import factories
from nemoflow.cli.tokens import (
    BROADCAST,
    DOTTED,
    FactoryCall,
    LoadFile,
    Override,
    OverrideError,
    parse_override,
    path_text,
    split_reserved,
)
from nemoflow.cli.values import rehome, resolve_value
from nemoflow.configs.core import Buildable, Config, Partial, Script
from nemoflow.configs.treeops import walk
from nemoflow.errors import ConfigError, UserError, describe_value, did_you_mean

if TYPE_CHECKING:
    from nemoflow.pipeline.experiment import Experiment

__all__ = [
    "FactoryCall",
    "LoadFile",
    "Override",
    "OverrideError",
    "apply_override",
    "apply_overrides",
    "apply_to_experiment",
    "broadcast",
    "config_paths",
    "parse_override",
    "split_reserved",
]
_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.add,
    "-=": operator.sub,
    "*=": operator.mul,
    "/=": operator.truediv,
    "|=": operator.or_,
}


# ---- applying -----------------------------------------------------------------------------------


def apply_overrides(cfg: Buildable[Any], tokens: Iterable[str | Override | LoadFile]) -> Buildable[Any]:
    """Apply override tokens in order to ``cfg`` (changed in place) and return the resulting config.

    An ``@file`` token that holds a whole config of the same target replaces the config (so the
    result may be a new object); a file holding a plain mapping sets those values.

    Raises:
        ConfigError: a malformed token, an unknown key (with the closest valid keys), a value
            of the wrong type (naming the expected type), or an unknown factory.
        UserError: a config file that cannot be read.
    """
    for token in tokens:
        item = parse_override(token) if isinstance(token, str) else token
        if isinstance(item, LoadFile):
            cfg = load_into(cfg, item)
        else:
            apply_override(cfg, item)
    return cfg


def apply_override(root: Buildable[Any], ov: Override, *, prefix: str = "") -> None:
    """Apply one parsed override to ``root``; ``prefix`` (a step name) is shown in suggestions."""
    if ov.path[0] == BROADCAST:
        broadcast([root], ov)
        return
    parent, owner = _descend(root, ov, prefix)
    name = ov.path[-1]
    if isinstance(name, str):
        assert isinstance(parent, Buildable)
        _assign(parent, name, _new_value(parent, name, ov), ov)
        return
    assert isinstance(parent, list) and owner is not None
    parent[name] = _new_item(parent, name, ov)
    node, param_name = owner
    _assign(node, param_name, node.__arguments__[param_name], ov)  # the changed list is checked again


def _descend(root: Buildable[Any], ov: Override, prefix: str) -> tuple[Any, tuple[Buildable[Any], str] | None]:
    """The config (or list, for ``xs[0]=v``) holding the last key of ``ov``, and the config parameter
    holding the nearest list above it. Nested configs are made from dataclass defaults; a default
    is copied before it changes."""
    node: Any = root
    owner: tuple[Buildable[Any], str] | None = None
    for depth, part in enumerate(ov.path):
        last = depth == len(ov.path) - 1
        if isinstance(part, int):
            node = _item(node, part, ov, depth, last=last)
            continue
        if not isinstance(node, Buildable):
            where = path_text(ov.path[:depth])
            raise ConfigError(f"{where} is {describe_value(node)}, not a config: it has no {part!r}", path=ov.token)
        param = _param(node, part, root, ov, prefix)
        if last:
            return node, owner
        child = node.__arguments__.get(part, param.default)
        if isinstance(ov.path[depth + 1], int):
            if not isinstance(child, (list, tuple)):
                shown = "not set" if child is inspect.Parameter.empty else describe_value(child)
                raise ConfigError(f"{path_text(ov.path[: depth + 1])} is {shown}, not a list", path=ov.token)
            setattr(node, part, copy.deepcopy(list(child)))
            owner, node = (node, part), node.__arguments__[part]
            continue
        if part not in node.__arguments__ or not isinstance(child, Buildable):
            made = copy.deepcopy(child) if isinstance(child, Buildable) else _nested(param.annotation, child)
            if made is None:
                where = path_text(ov.path[: depth + 1])
                shown = "not set" if child is inspect.Parameter.empty else describe_value(child)
                raise ConfigError(f"{where} is {shown}, not a config: it has no {ov.path[depth + 1]!r}", path=ov.token)
            setattr(node, part, made)
            child = made
        node = child
    return node, owner


def _item(node: Any, index: int, ov: Override, depth: int, *, last: bool) -> Any:
    """``xs[index]`` while descending: the list itself when it is the last part (it gets assigned)."""
    where = path_text(ov.path[:depth])
    if not isinstance(node, list):
        raise ConfigError(f"{where} is {describe_value(node)}, not a list", path=ov.token)
    if not -len(node) <= index < len(node):
        raise IndexOutOfRange(f"{where} has {len(node)} item(s): no index {index}", path=ov.token)
    if last:
        return node
    child = node[index]
    if factories.is_dataclass_instance(child):
        child = node[index] = factories.dataclass_config(child)
    return child


class IndexOutOfRange(ConfigError, IndexError):
    """``xs[5]=...`` for a list of fewer items."""


def _new_item(items: list[Any], index: int, ov: Override) -> Any:
    value = resolve_value(ov.value, Any, ov)
    if ov.op == "=":
        return value
    return _combine(ov, items[index], value)


def _nested(annotation: Any, value: Any) -> Buildable[Any] | None:
    """The config to descend into where a dataclass instance, None or nothing stands."""
    return factories.default_config(annotation, inspect.Parameter.empty if value is None else value)


def _param(node: Buildable[Any], name: str, root: Buildable[Any], ov: Override, prefix: str) -> Any:
    try:
        return node.__signature__.param(name)
    except ConfigError:
        paths = [_join(prefix, p) for p in config_paths(root)]
        known = ", ".join(sorted(node.__signature__.params)) or "none"
        raise ConfigError(
            f"unknown key {_join(prefix, ov.key)!r}",
            path=ov.token,
            hint=did_you_mean(_join(prefix, ov.key), paths) or f"{node.__signature__.target_name} takes: {known}",
        ) from None


def config_paths(root: Any) -> list[str]:
    """Every settable dotted path of a config tree: each config's parameters, set or not.

    An unset dataclass-typed parameter contributes its fields too (an override would make it).
    """
    paths = []
    for path, node in walk(root):
        if isinstance(node, Buildable):
            paths.extend(_unset_paths(node, path, depth=3))
    return paths


def _unset_paths(node: Buildable[Any], path: str, *, depth: int) -> list[str]:
    paths = []
    for name in {**node.__signature__.params, **node.__arguments__}:
        paths.append(_join(path, name))
        if name in node.__arguments__ or depth == 0 or name not in node.__signature__.params:
            continue
        param = node.__signature__.params[name]
        nested = _nested(param.annotation, param.default)
        if nested is not None:
            paths.extend(_unset_paths(nested, _join(path, name), depth=depth - 1))
    return paths


def _new_value(node: Buildable[Any], name: str, ov: Override) -> Any:
    value = _factory_value(node, name, ov)
    if ov.op == "=":
        return value
    try:
        current = getattr(node, name)
    except AttributeError:
        raise ConfigError(f"{ov.key} has no value to update", path=ov.token, hint=f"set it: {ov.key}=...") from None
    if isinstance(current, (list, tuple)) and name not in node.__arguments__:
        current = copy.deepcopy(current)  # models+=[...] must not change the signature's default list
    return _combine(ov, current, value)


def _combine(ov: Override, current: Any, value: Any) -> Any:
    """``current OP value`` for ``+=`` ``-=`` ``*=`` ``/=`` ``|=``."""
    try:
        if isinstance(current, tuple) and isinstance(value, list):
            value = tuple(value)
        elif isinstance(current, list) and isinstance(value, tuple):
            value = list(value)
        return _ARITHMETIC[ov.op](current, value)
    except (TypeError, ZeroDivisionError, OverflowError, ValueError, MemoryError) as exc:
        raise ConfigError(
            f"cannot apply {ov.op} {describe_value(value)} to {describe_value(current)}: {exc}", path=ov.token
        ) from None


def _factory_value(node: Buildable[Any], name: str, ov: Override) -> Any:
    """A factory's product when the value names one, else the parsed value."""
    annotation = node.__signature__.param(name).annotation
    owner = node.__fn_or_cls__
    if isinstance(ov.value, LoadFile) and not os.path.exists(ov.value.path) and _accepts(node, name, ov.text):
        return ov.text  # handle=@someone for a text parameter, when no such file exists
    if not ov.bare:
        return resolve_value(ov.value, annotation, ov, owner=owner, arg=name)
    if ov.text.strip().lower() in ("null", "none") and _accepts(node, name, None):
        return None  # NeMo Run's (and YAML's) spelling, where None is allowed; else it is the text
    if not DOTTED.fullmatch(ov.text):
        return ov.value
    found = factories.find(ov.text, annotation, owner=owner, arg=name)
    if found is not None:
        return factories.call(found.fn, (), {}, name=ov.text, where=ov.token)
    if "." in ov.text and not _accepts(node, name, ov.text):
        try:
            target = factories.resolve(ov.text, annotation, where=ov.token)
        except ConfigError:
            return ov.value  # not importable: keep the text, and let the type check speak
        return factories.call(target, (), {}, name=ov.text, where=ov.token)
    return ov.value


def _accepts(node: Buildable[Any], name: str, value: Any) -> bool:
    try:
        setattr(copy.copy(node), name, value)
    except ConfigError:
        return False
    return True


def _assign(node: Buildable[Any], name: str, value: Any, ov: Override) -> None:
    """Set ``node.name``, validated; a number written for a text parameter is kept as written."""
    try:
        setattr(node, name, value)
    except ConfigError as exc:
        if ov.op == "=" and not ov.bare and isinstance(value, (int, float, complex)) and _accepts(node, name, ov.text):
            setattr(node, name, ov.text)  # version=1.10 for a str parameter means "1.10"
            return
        raise ConfigError(exc.message, path=ov.token, hint=exc.hint or _factory_hint(node, name, ov)) from None


def _factory_hint(node: Buildable[Any], name: str, ov: Override) -> str | None:
    """For ``model=big_model``: the factories that fit the parameter, closest first."""
    if not (ov.bare and DOTTED.fullmatch(ov.text)):
        return None
    names = sorted({f.name for f in factories.registered(node.__signature__.param(name).annotation)})
    if not names:
        return None
    return did_you_mean(ov.text, names) or f"factories for {ov.key}: {', '.join(names)}"


def broadcast(trees: Iterable[Any], ov: Override) -> int:
    """``*.a.b=v``: set ``a.b`` on every config in ``trees`` that has it (as ``nemoflow.broadcast``).

    A config shared by several places changes once; every value is checked before any is set.

    Returns:
        How many configs changed.

    Raises:
        ConfigError: no config takes the key (with the closest keys), or a value is refused.
    """
    trees = list(trees)
    path, name = ov.path[1:-1], ov.path[-1]
    parents: dict[int, Buildable[Any]] = {}
    for tree in trees:
        for _, node in walk(tree):
            parent = _reach(node, path) if isinstance(node, Buildable) else None
            if parent is not None and (name in parent.__signature__.params or name in parent.__arguments__):
                parents[id(parent)] = parent
    if not parents:
        wanted = path_text(ov.path[1:])
        known = {p for tree in trees for _, n in walk(tree) if isinstance(n, Buildable) for p in config_paths(n)}
        raise ConfigError(f"no config takes {wanted!r}", path=ov.token, hint=did_you_mean(wanted, known))
    staged = []
    for parent in parents.values():  # check everywhere first, so a refused value changes nothing
        probe = copy.copy(parent)
        _assign(probe, name, _new_value(parent, name, ov), ov)
        staged.append((parent, probe.__arguments__[name]))
    for parent, value in staged:
        setattr(parent, name, value)
    return len(staged)


def _reach(node: Buildable[Any], path: tuple[str, ...]) -> Buildable[Any] | None:
    for name in path:
        node = node.__arguments__.get(name)
        if not isinstance(node, Buildable):
            return None
    return node


def load_into(cfg: Buildable[Any], item: LoadFile) -> Buildable[Any]:
    """``@file``: a whole config of ``cfg``'s target replaces it; a plain mapping sets its values."""
    from nemoflow.configs.serialize import load

    loaded = load(item.path)
    if isinstance(loaded, Buildable):
        loaded = rehome(loaded, getattr(cfg.__fn_or_cls__, "__module__", None))
        if loaded.__fn_or_cls__ is not cfg.__fn_or_cls__:
            raise ConfigError(
                f"{item.path} holds a config of {loaded.__signature__.target_name}, "
                f"not of {cfg.__signature__.target_name}",
                path=item.token,
            )
        if isinstance(cfg, Partial) and isinstance(loaded, Config):
            return Partial(loaded.__fn_or_cls__, **loaded.__arguments__)
        return loaded
    if not isinstance(loaded, dict):
        raise UserError(f"expected a config or a mapping of values, got {describe_value(loaded)}", where=item.token)
    for key, value in _flatten(loaded, cfg):
        override = Override(item.token, key, "=", repr(value), value, bare=False)
        apply_override(cfg, override)
    return cfg


def _flatten(data: dict[str, Any], cfg: Any, prefix: tuple[str, ...] = ()) -> Iterable[tuple[tuple[str, ...], Any]]:
    """(path, value) pairs of a nested mapping; a mapping under a nested config goes into it."""
    for key, value in data.items():
        current = cfg.__arguments__.get(key) if isinstance(cfg, Buildable) else None
        if isinstance(value, dict) and "_factory_" not in value and isinstance(current, Buildable):
            yield from _flatten(value, current, (*prefix, str(key)))
        else:
            yield (*prefix, str(key)), value


# ---- pipelines ----------------------------------------------------------------------------------


def apply_to_experiment(exp: Experiment, tokens: Iterable[str]) -> None:
    """``nemoflow build FILE OVERRIDES``: ``STEP.key=value`` for one step, ``*.key=value`` for all.

    The step name is the longest name of a step that the token starts with (step names may hold
    ``-`` and ``.``). Broadcast sets the key in every config of every step that takes it.

    Raises:
        ConfigError: a malformed token, an unknown step (with the closest names), an unknown key
            or a refused value.
    """
    for token in tokens:
        step = _step_of(exp, token)
        if step is None:
            if not token.startswith(BROADCAST + "."):
                raise _unknown_step(exp, token)
            item = parse_override(token)
            if isinstance(item, Override):
                broadcast((s.task for s in exp.steps.values()), item)
            continue
        item = parse_override(token, start=len(step) + 1)
        task = exp.steps[step].task
        if isinstance(item, LoadFile) or isinstance(task, Script):
            what = "a file" if isinstance(item, LoadFile) else f"script step {step!r}"
            raise ConfigError(
                f"cannot apply {what} here", path=token, hint="override a step's parameters: STEP.key=value"
            )
        apply_override(task, item, prefix=step)


def _step_of(exp: Experiment, token: str) -> str | None:
    """The longest step name that ``token`` starts with, followed by a '.'."""
    found = None
    for i, char in enumerate(token):  # step names may hold '.', '=' and '+': try every '.'
        if char == "." and token[:i] in exp.steps:
            found = token[:i]
    return found


def _unknown_step(exp: Experiment, token: str) -> ConfigError:
    head = re.split(r"[.=]", token, maxsplit=1)[0]
    if "." not in token.split("=", 1)[0]:
        return ConfigError(
            "a pipeline override starts with the step it changes",
            path=token,
            hint=f"write STEP.{token} for one step, or *.{token} for every step that takes it",
        )
    hint = did_you_mean(head, exp.steps)
    return ConfigError(f"no step named {head!r}", path=token, hint=hint or f"steps: {', '.join(list(exp.steps)[:10])}")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
