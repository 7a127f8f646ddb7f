"""Dotted paths into config trees: ``set_value(cfg, "model.layers[0].size", 4)`` and ``get_value``.

Names are attributes and brackets are items, as in NeMo Run's ``nemo_run.config.set_value``; they work
on configs and on built objects alike.
"""

from __future__ import annotations

import re
from typing import Any

from nemoflow.errors import ConfigError, SetValueError, did_you_mean

Step = str | tuple[Any]  # an attribute name, or (an index or key,)

_PART = re.compile(r"""\.([A-Za-z_][A-Za-z0-9_]*)|\[(-?\d+)\]|\[('[^']*'|"[^"]*")\]""")


def parse_path(path: str) -> list[Step]:
    """``a.b[0]["k"]`` as ``["a", "b", (0,), ("k",)]``.

    Raises:
        SetValueError: (a ``ValueError``) the path is malformed, such as ``"attribute."``.
    """
    text = path if path.startswith(("[", ".")) else f".{path}"
    parts: list[Step] = []
    pos = 0
    while pos < len(text):
        match = _PART.match(text, pos)
        if match is None:
            raise SetValueError(f"malformed path {path!r} at {text[pos:]!r}", path=path)
        name, index, key = match.groups()
        parts.append(name if name is not None else (int(index),) if index is not None else (key[1:-1],))
        pos = match.end()
    if not parts:
        raise SetValueError(f"malformed path {path!r}", path=path)
    return parts


def _follow(node: Any, step: Step) -> Any:
    return getattr(node, step) if isinstance(step, str) else node[step[0]]


def set_value(cfg: Any, path: str, value: Any) -> None:
    """Set the value at ``path`` in ``cfg`` (NeMo Run's ``set_value``).

    Raises:
        SetValueError: (a ``ValueError``) ``Invalid path "..."`` when a parent on the path does not exist,
            ``Could not set "..." to "..."`` when the last step refuses (an unknown argument, a value its
            type refuses, a dict's key written as an attribute), or a malformed path.
    """
    *parents, last = parse_path(path)
    node = cfg
    try:
        for step in parents:
            node = _follow(node, step)
    except Exception as exc:
        raise SetValueError(f'Invalid path "{path}".', path=path) from exc
    try:
        if isinstance(last, str):
            setattr(node, last, value)
        else:
            node[last[0]] = value
    except Exception as exc:
        hint = str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
        raise SetValueError(f'Could not set "{path}" to "{value}".', path=path, hint=hint) from exc


def get_value(cfg: Any, path: str) -> Any:
    """The value at ``path`` in ``cfg``: an argument, a default, an item.

    Raises:
        SetValueError: (a ``ValueError``) the path is malformed or leads nowhere; names what exists there.
    """
    node = cfg
    done = ""
    for step in parse_path(path):
        try:
            node = _follow(node, step)
        except Exception as exc:
            shown = step if isinstance(step, str) else f"[{step[0]!r}]"
            names = list(node.__signature__.params) if hasattr(node, "__fn_or_cls__") else []
            raise SetValueError(
                f"{done or 'the config'} has no {shown}",
                path=path,
                hint=did_you_mean(shown, names) if isinstance(step, str) else None,
            ) from exc
        done = (f"{done}.{step}" if done else step) if isinstance(step, str) else f"{done}[{step[0]!r}]"
    return node
