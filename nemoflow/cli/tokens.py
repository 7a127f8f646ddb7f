"""Override tokens, NeMo Run style: parse ``key OP value`` and ``@file`` (no configs touched here).

    model.hidden_size=1024     a Python literal (list, dict, tuple, number, string, True/False/None),
                               else the bare text (``data=/d``, ``activation=relu``)
    lr*=2  steps+=16  x-=1  x/=2   update the current value
    model=small_model(hidden_size=3)   a factory call; its arguments are literals (parsed, never eval'd)
    @run.yaml                  load a config file
    *.seed=1                   broadcast

Malformed tokens raise :class:`OverrideError`, which shows the token and where it breaks.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nemoflow.errors import ConfigError

OPERATORS = ("+=", "-=", "*=", "/=", "|=", "=")  # "=" last: the others start with a different character
INDEX = re.compile(r"\[(-?[0-9]+)\]")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_LITERAL_START = "[{(\"'"  # a value starting so must be a Python literal; anything else may be bare text
BROADCAST = "*"


class OverrideError(ConfigError):
    """A malformed override: the token, and the column (0-based) where it breaks."""

    def __init__(self, token: str, column: int, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{message} (column {column + 1})", path=token, hint=hint)
        self.token = token
        self.column = column

    def __str__(self) -> str:
        text = super().__str__()
        if not self.token.isprintable():
            return text
        return f"{text}\n    {self.token}\n    {' ' * self.column}^"


@dataclass(frozen=True)
class FactoryCall:
    """A value written as a call: ``small_model(hidden_size=3)`` (arguments are literals)."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Override:
    """One parsed ``key OP value`` token."""

    token: str
    path: tuple[str | int, ...]  # ("model", "hidden_size"); ("models", 0, "hidden_size"); ("*", "seed") broadcasts
    op: str
    text: str  # the value as written
    value: Any  # a literal, a FactoryCall, or the text itself when it is not a literal
    bare: bool  # the value is bare text (a word, a dotted name, a path...), not a literal

    @property
    def key(self) -> str:
        return path_text(self.path)


def path_text(path: Iterable[str | int]) -> str:
    """``("models", 0, "hidden")`` as written: ``models[0].hidden``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


@dataclass(frozen=True)
class LoadFile:
    """An ``@file.yaml`` token (as a value, ``model=@model.yaml``: the file's config or data)."""

    token: str
    path: str


# ---- parsing ----------------------------------------------------------------------------------


def parse_override(token: str, *, start: int = 0) -> Override | LoadFile:
    """Parse one token (from column ``start``; columns in errors count from the token's start).

    Raises:
        OverrideError: the token is malformed; it says where.
    """
    if token.startswith("@", start):
        if len(token) == start + 1:
            raise OverrideError(token, start + 1, "expected a file name after '@'")
        return LoadFile(token, token[start + 1 :])
    path, pos = _parse_key(token, start)
    op = next((o for o in OPERATORS if token.startswith(o, pos)), None)
    if op is None:
        found = f"unexpected {token[pos]!r}" if pos < len(token) else "missing '='"
        raise OverrideError(
            token, pos, f"{found} after {token[start:pos]!r}", hint="write name=value (or +=, -=, *=, /=)"
        )
    begin = pos + len(op)
    value, bare = parse_value(token[begin:], token=token, column=begin)
    return Override(token, tuple(path), op, token[begin:], value, bare)


def _parse_key(token: str, pos: int) -> tuple[list[str | int], int]:
    parts: list[str | int] = []
    while True:
        if not parts and token.startswith(BROADCAST + ".", pos):
            parts.append(BROADCAST)
            pos += 1
        else:
            match = NAME.match(token, pos)
            if match is None:
                found = f"unexpected {token[pos]!r}" if pos < len(token) else "unexpected end"
                raise OverrideError(token, pos, f"{found}: expected a parameter name", hint="write name=value")
            parts.append(match.group())
            pos = match.end()
        while (index := INDEX.match(token, pos)) is not None:  # models[0]
            parts.append(int(index.group(1)))
            pos = index.end()
        if token.startswith("[", pos):
            raise OverrideError(token, pos, "malformed index", hint="write name[0]=value")
        if not token.startswith(".", pos):
            return parts, pos
        pos += 1


def parse_value(text: str, *, token: str = "", column: int = 0) -> tuple[Any, bool]:
    """A value: ``(literal, False)``, ``(FactoryCall, False)`` or ``(text, True)`` for bare text.

    Raises:
        OverrideError: an empty value, a stray ``=``, or a broken literal (``[1, 2``).
    """
    token = token or text
    if not text:
        raise OverrideError(token, column, "missing value", hint="write name=None, or name='' for an empty string")
    if text[0] == "=":
        raise OverrideError(token, column, "unexpected '='", hint="use one '=' (or +=, -=, *=, /=)")
    stripped = text.strip()
    lead = len(text) - len(text.lstrip())
    if stripped.startswith("@") and len(stripped) > 1:
        return LoadFile(token, stripped[1:]), False
    try:
        tree = ast.parse(stripped, mode="eval").body
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        if stripped[:1] and stripped[0] in _LITERAL_START:
            offset = max((getattr(exc, "offset", None) or 1) - 1, 0)
            message = getattr(exc, "msg", None) or str(exc)
            raise OverrideError(token, column + lead + offset, f"malformed value: {message}") from None
        return text, True
    if isinstance(tree, ast.Call) and _dotted_name(tree.func) is not None:
        return _factory_call(tree, stripped, token=token, column=column + lead), False
    if isinstance(tree, (ast.List, ast.Tuple)) and any(_is_call(e) for e in tree.elts):  # [f(1), f(2)]
        items = [
            _factory_call(e, stripped, token=token, column=column + lead) if _is_call(e) else _literal(e, stripped)
            for e in tree.elts
        ]
        return (items if isinstance(tree, ast.List) else tuple(items)), False
    try:
        return ast.literal_eval(tree), False
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        if stripped[0] in _LITERAL_START:
            bad = _first_non_literal(tree)
            shown = ast.get_source_segment(stripped, bad) or "?"
            raise OverrideError(
                token,
                column + lead + _char_offset(stripped, bad.col_offset),
                f"not a Python literal: {shown}",
                hint="quote strings inside lists and dicts: ['a', 'b']",
            ) from None
        return text, True


def _is_call(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and _dotted_name(node.func) is not None


def _literal(node: ast.expr, text: str) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return ast.get_source_segment(text, node)  # a bare name among calls: [f(1), small] names a factory


def _dotted_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted_name(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _factory_call(tree: ast.Call, text: str, *, token: str, column: int) -> FactoryCall:
    name = _dotted_name(tree.func) or ""
    args, kwargs = [], {}
    for node in [*tree.args, *tree.keywords]:
        value_node = node.value if isinstance(node, ast.keyword) else node
        try:
            if (isinstance(node, ast.keyword) and node.arg is None) or isinstance(node, ast.Starred):
                raise ValueError("unpacking")
            value = ast.literal_eval(value_node)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            shown = ast.get_source_segment(text, value_node) or "?"
            raise OverrideError(
                token,
                column + _char_offset(text, value_node.col_offset),
                f"argument {shown} of {name}(...) is not a Python literal",
                hint="factory arguments are literals: small_model(hidden_size=3, name='x')",
            ) from None
        if isinstance(node, ast.keyword):
            kwargs[node.arg] = value
        else:
            args.append(value)
    return FactoryCall(name, tuple(args), kwargs)


def _first_non_literal(tree: ast.expr) -> ast.expr:
    """The first sub-expression of ``tree`` that ``literal_eval`` refuses (where to point)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.expr) and not isinstance(
            node, (ast.Constant, ast.List, ast.Tuple, ast.Dict, ast.Set, ast.UnaryOp, ast.BinOp)
        ):
            return node
    return tree


def _char_offset(text: str, byte_offset: int) -> int:
    """ast columns count UTF-8 bytes; carets count characters."""
    return len(text.encode()[:byte_offset].decode(errors="ignore"))


RESERVED = ("executor", "run", "plugins", "ctx")


def split_reserved(tokens: Iterable[str], *, taken: Iterable[str] = ()) -> tuple[list[Override], list[str]]:
    """Separate the CLI's own tokens (``executor=...``, ``executor.x=...``, ``run.x=...``, ``plugins=...``).

    A reserved word matches only as a whole first key (``executor_name=x`` and ``run_id=3`` are
    ordinary parameters), and not at all when the function has a parameter of that name
    (``taken``): the function's own parameter wins, and the ``--executor`` flag still works.

    Returns:
        The parsed reserved overrides, and the remaining tokens as given.
    """
    free = set(RESERVED) - set(taken)
    reserved, rest = [], []
    for token in tokens:
        match = NAME.match(token)
        word = match.group() if match else None
        if word in free and token[len(word) : len(word) + 1] in (".", "=", "+", "-", "*", "/", "|", "["):
            item = parse_override(token)
            if isinstance(item, Override):
                reserved.append(item)
                continue
        rest.append(token)
    return reserved, rest
