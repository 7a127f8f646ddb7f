"""One walk over config trees, and what is built on it: walk, broadcast, diff."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from nemoflow.configs.core import Buildable
from nemoflow.configs.paths import get_value, set_value
from nemoflow.configs.script import Script
from nemoflow.configs.serialize import to_data
from nemoflow.errors import ConfigError, ConfigTypeError

__all__ = ["broadcast", "children", "diff", "get_value", "nodes", "path_of", "set_value", "walk"]


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def children(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """The direct children of a node, with their paths."""
    if isinstance(value, Buildable):
        for name, child in value.__arguments__.items():
            yield _join(path, name), child
    elif isinstance(value, Script):
        for i, child in enumerate(value.args):
            yield f"{_join(path, 'args')}[{i}]", child
    elif isinstance(value, (list, tuple)):
        for i, child in enumerate(value):
            yield f"{path}[{i}]", child
    elif isinstance(value, dict):
        for key, child in value.items():
            yield _join(path, str(key)), child


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every node of a config tree, parents before children, with its dotted path."""
    stack = [(path, value)]
    while stack:
        node_path, node = stack.pop()
        yield node_path, node
        stack.extend(reversed(list(children(node, node_path))))


def nodes(value: Any) -> Iterator[Any]:
    """Every node of a config tree, like :func:`walk` but without building paths (a hot path)."""
    stack = [value]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, Buildable):
            stack.extend(node.__arguments__.values())
        elif isinstance(node, Script):
            stack.extend(node.args)
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
        elif isinstance(node, dict):
            stack.extend(node.values())


def path_of(tree: Any, target: Any, root: str = "") -> str:
    """The dotted path of ``target`` (by identity) in ``tree``, for error messages."""
    return next((path for path, node in walk(tree, root) if node is target), root)


_NO_VALUE: Any = object()


def broadcast(tree: Any, name: str | None = None, value: Any = _NO_VALUE, /, **values: Any) -> int:
    """Set argument ``name`` on every config in ``tree`` whose target takes it; in keyword form
    (``broadcast(tree, hidden=2, seq_length=4)``, NeMo Run's) each of several names.

    Returns:
        How many configs were changed (by the last name, in keyword form).

    Raises:
        ConfigError: no config in the tree takes a name; nothing is changed then.
    """
    if name is not None:
        if value is _NO_VALUE:
            raise ConfigTypeError("broadcast(tree, name, value) needs a value", path=name)
        values = {name: value, **values}
    if not values:
        raise ConfigTypeError("broadcast needs a name and a value, or name=value keywords")
    for key in values:  # every name is taken somewhere, before anything changes
        _takers(tree, key)
    changed = 0
    for key, item in values.items():
        changed = _broadcast_one(tree, key, item)
    return changed


def _takers(tree: Any, name: str) -> dict[int, Buildable[Any]]:
    targets = {
        id(node): node  # a config shared by two places is one config
        for _path, node in walk(tree)
        if isinstance(node, Buildable) and (name in node.__signature__.params or name in node.__arguments__)
    }
    if not targets:
        raise ConfigError(f"no config in the tree takes an argument {name!r}", path=name)
    return targets


def _broadcast_one(tree: Any, name: str, value: Any) -> int:
    targets = _takers(tree, name)
    for node in targets.values():  # check everywhere first, so a refused value changes nothing
        setattr(copy.copy(node), name, value)
    for node in targets.values():
        setattr(node, name, value)
    return len(targets)


@dataclass(frozen=True)
class Change:
    """One difference between two config trees."""

    path: str
    kind: str  # "added", "removed" or "changed"
    old: Any = None
    new: Any = None

    def __str__(self) -> str:
        if self.kind == "added":
            return f"+ {self.path} = {self.new!r}"
        if self.kind == "removed":
            return f"- {self.path} = {self.old!r}"
        return f"~ {self.path}: {self.old!r} -> {self.new!r}"


def diff(a: Any, b: Any) -> list[Change]:
    """The differences between two configs, as data (render with ``nemoflow diff`` or str)."""

    changes: list[Change] = []
    _diff(to_data(a), to_data(b), "", changes)
    return changes


def _diff(a: Any, b: Any, path: str, out: list[Change]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys()):
            sub = _join(path, key)
            if key not in b:
                out.append(Change(sub, "removed", old=a[key]))
            elif key not in a:
                out.append(Change(sub, "added", new=b[key]))
            else:
                _diff(a[key], b[key], sub, out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(x, y, f"{path}[{i}]", out)
    elif a != b or type(a) is not type(b):
        out.append(Change(path, "changed", old=a, new=b))
