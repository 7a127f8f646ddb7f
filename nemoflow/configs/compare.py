"""What changed between two configs: NeMo Run's ``cfg.diff(old)``, as text instead of a graphviz graph.

``new.diff(old)`` lists each changed value by its config path, rooted at the target's name::

    ~ add_object.obj_1.value_1: 5 -> 1000
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nemoflow.configs.validation import Deferred, target_name


@dataclass(frozen=True)
class ConfigChange:
    """One difference: ``kind`` is "added", "removed" or "changed"."""

    path: str
    kind: str
    old: Any = None
    new: Any = None

    def __str__(self) -> str:
        if self.kind == "added":
            return f"+ {self.path} = {self.new!r}"
        if self.kind == "removed":
            return f"- {self.path} = {self.old!r}"
        return f"~ {self.path}: {self.old!r} -> {self.new!r}"


class ConfigDiff(list):  # type: ignore[type-arg]
    """The changes between two configs, one per line when printed (a notebook shows the same text)."""

    def __str__(self) -> str:
        return "\n".join(str(change) for change in self) if self else "no differences"

    __repr__ = __str__

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


def config_diff(old: Any, new: Any, root: str | None = None) -> ConfigDiff:
    """The changes from ``old`` to ``new``; paths start at ``root`` (default: ``new``'s target name)."""
    if root is None:
        root = target_name(new.__fn_or_cls__) if isinstance(new, Deferred) else ""
    out = ConfigDiff()
    _diff(old, new, root, out)
    return out


def _join(path: str, name: Any) -> str:
    return f"{path}.{name}" if path else str(name)


def _diff(old: Any, new: Any, path: str, out: ConfigDiff) -> None:
    if isinstance(old, Deferred) and isinstance(new, Deferred):
        if type(old) is not type(new) or old.__fn_or_cls__ is not new.__fn_or_cls__:
            out.append(ConfigChange(path, "changed", old, new))
            return
        _mapping(old.__arguments__, new.__arguments__, path, out)  # type: ignore[attr-defined]
    elif isinstance(old, dict) and isinstance(new, dict):
        _mapping(old, new, path, out)
    elif isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            _diff(a, b, f"{path}[{i}]", out)
    elif not _same(old, new):
        out.append(ConfigChange(path, "changed", old, new))


def _mapping(old: dict[Any, Any], new: dict[Any, Any], path: str, out: ConfigDiff) -> None:
    for key in [*new, *(k for k in old if k not in new)]:
        sub = _join(path, key)
        if key not in old:
            out.append(ConfigChange(sub, "added", new=new[key]))
        elif key not in new:
            out.append(ConfigChange(sub, "removed", old=old[key]))
        else:
            _diff(old[key], new[key], sub, out)


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    try:
        return bool(a == b)
    except Exception:  # an array's elementwise ==
        return repr(a) == repr(b)
