"""Why a step runs: the parts of its key that differ from the last build of a step of that name.

Pure: it compares a planned step's parts (config, code parts, inputs, upstream keys, salt) with
the manifest of the step's latest target. ``--dry-run --why``, ``--json``, the reason column and
the ledger all read the same :class:`Change` records.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The order a step's reason is picked in: the first kind of change found names it.
CODE_KINDS = ("code", "constant", "module", "script", "file", "version", "archive")
_MISSING = object()


@dataclass(frozen=True)
class Change:
    """One part of a key that changed (``kind``: config, code, constant, package, input, ...)."""

    kind: str
    what: str = ""
    before: Any = None
    after: Any = None

    def __str__(self) -> str:
        if self.kind in ("new step", "forced", "output missing"):
            return self.kind
        if self.kind == "damaged":  # what is the whole story: "output changed on disk: model.npz"
            return self.what
        text = f"{self.kind} {self.what}".rstrip()
        if self.kind in ("code", "module", "script", "file", "input", "upstream"):
            if self.before is None and self.after is not None:
                return f"{text} (new)"
            if self.after is None and self.before is not None:
                return f"{text} (gone)"
            return text
        if self.kind == "constant" and (_is_source(self.before) or _is_source(self.after)):
            return f"{text} (its definition changed)"
        if self.kind == "package":
            return f"{text} {_show(self.before)} → {_show(self.after)}"
        return f"{text}: {_show(self.before)} → {_show(self.after)}"

    def to_data(self) -> dict[str, Any]:
        return {"kind": self.kind, "what": self.what, "before": self.before, "after": self.after, "text": str(self)}


def part_label(part: str, value: str) -> str:
    """A code part as a person reads it: ``code mylib/model.py:forward``, ``package numpy 2.1.0``."""
    kind, _, what = part.partition(":")
    if kind == "constant" and not _is_source(value):
        return f"constant {what} = {_show(_value(value))}"
    if kind in ("package", "version"):
        return f"{kind} {what} {_show(_value(value))}".replace("  ", " ")
    return f"{kind} {what}"


def changes(
    *,
    name: str,
    config: Any,
    code_parts: Mapping[str, str],
    code: str,
    kind: str,
    inputs: Mapping[str, str],
    upstream: Mapping[str, str],
    salt: str,
    key_version: int,
    previous: Mapping[str, Any] | None,
    forced: bool,
) -> list[Change]:
    """What differs between a step as planned and ``previous``, its latest target's manifest."""
    if forced:
        return [Change("forced")]
    if previous is None:
        return [Change("new step")]
    found: list[Change] = []
    if previous.get("key_version", 1) != key_version:
        found.append(Change("key recipe", "version", previous.get("key_version", 1), key_version))
    found += _code_changes(previous, code_parts, code)
    if previous.get("kind") != kind:
        found.append(Change("kind", "", previous.get("kind"), kind))
    found += [
        Change("config", f"{name}{path}", old, new) for path, old, new in _config_diff(previous.get("config"), config)
    ]
    found += _keyed("input", previous.get("inputs") or {}, inputs)
    if previous.get("salt", "") != salt:
        found.append(Change("salt", "", previous.get("salt", ""), salt))
    old_up = previous.get("upstream") or {}
    found += [
        Change("upstream", up) for up in sorted(set(old_up) | set(upstream)) if old_up.get(up) != upstream.get(up)
    ]
    return found or [Change("output missing")]


def _code_changes(previous: Mapping[str, Any], parts: Mapping[str, str], code: str) -> list[Change]:
    old = previous.get("code_parts")
    if old is None:
        return [Change("code", "(built before nemoflow recorded code parts)")] if previous.get("code") != code else []
    found = []
    for part in sorted(set(old) | set(parts)):
        before, after = old.get(part), parts.get(part)
        if before == after:
            continue
        kind, _, what = part.partition(":")
        if kind in ("constant", "package", "version"):
            found.append(Change(kind, what, _value(before), _value(after)))
        else:
            found.append(Change(kind, what, before, after))
    return found


def _keyed(kind: str, old: Mapping[str, str], new: Mapping[str, str]) -> list[Change]:
    return [Change(kind, k, old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def _config_diff(old: Any, new: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """(dot path, before, after) of every leaf that differs between two config data trees."""
    if isinstance(old, dict) and isinstance(new, dict) and not _is_leaf(old) and not _is_leaf(new):
        found = []
        for k in list(old) + [k for k in new if k not in old]:
            if k == "_partial_":
                continue
            if k == "_target_" and old.get(k) != new.get(k):
                found.append((path, old.get(k), new.get(k)))
                continue
            found += _config_diff(old.get(k, _MISSING), new.get(k, _MISSING), f"{path}.{k}")
        return found
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new)) for d in _config_diff(a, b, f"{path}[{i}]")]
    if _tagged(old, "_tuple_") and _tagged(new, "_tuple_"):
        return _config_diff(old["_tuple_"], new["_tuple_"], path)
    if old == new:
        return []
    return [(path, None if old is _MISSING else old, None if new is _MISSING else new)]


def _tagged(data: Any, tag: str) -> bool:
    return isinstance(data, dict) and data.keys() == {tag}


def _is_leaf(data: dict[str, Any]) -> bool:
    """Step references and file inputs compare as one value."""
    return any(k in data for k in ("_output_", "_result_", "_file_", "_tuple_", "_items_", "_dill_"))


def _value(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _is_source(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("source:", "object:"))


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return value if value else '""'
    return json.dumps(value, sort_keys=True)
