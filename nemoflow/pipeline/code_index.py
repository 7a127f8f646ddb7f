"""Module files parsed into their definitions: the hash of each function's and class's normalised source
(comments, docstrings and formatting left out) and the global names it reads; cached by stat signature."""

from __future__ import annotations

import ast
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nemoflow.store.hashing import sha256_text

_INDEX_FORMAT = 1


@dataclass
class Unit:
    """One definition: the hash of its normalised source and the global names it reads."""

    digest: str
    names: list[str]
    chains: list[list[str]]  # attribute chains read from a global name: ["np", "linalg", "norm"]


@dataclass
class ModuleIndex:
    """What one parse of a module file yields."""

    digest: str  # the whole module, normalised
    units: dict[str, Unit]  # qualname -> function or class
    binds: dict[str, Unit]  # module-level name -> the statements that assign it
    imports: dict[str, list[str]]  # name -> [module, attribute or ""] of ``import``/``from ... import``

    def to_data(self) -> dict[str, Any]:
        def units(table: dict[str, Unit]) -> dict[str, Any]:
            return {k: [u.digest, u.names, u.chains] for k, u in table.items()}

        return {"digest": self.digest, "units": units(self.units), "binds": units(self.binds), "imports": self.imports}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> ModuleIndex:
        def units(table: dict[str, Any]) -> dict[str, Unit]:
            return {k: Unit(d, n, c) for k, (d, n, c) in table.items()}

        return cls(data["digest"], units(data["units"]), units(data["binds"]), data["imports"])


def index_source(source: str, package: str = "") -> ModuleIndex:
    """Parse a module's source into its definitions (raises SyntaxError)."""
    tree = ast.parse(source)
    _strip_docstrings(tree)
    units: dict[str, Unit] = {}
    binds: dict[str, list[ast.stmt]] = {}
    imports: dict[str, list[str]] = {}
    _collect_definitions(tree.body, "", units)
    for stmt in _module_level(tree.body):
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            imports.update(_imported_names(stmt, package))
        elif not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for name in _bound_names(stmt):
                binds.setdefault(name, []).append(stmt)
    return ModuleIndex(
        digest=_digest(tree),
        units=units,
        binds={name: _unit(stmts) for name, stmts in binds.items()},
        imports=imports,
    )


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            first = body[0] if body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]


def _blocks(stmt: ast.stmt) -> list[list[ast.stmt]]:
    """The statement lists nested in a compound statement (not in a def or class)."""
    found = [getattr(stmt, a) for a in ("body", "orelse", "finalbody") if isinstance(getattr(stmt, a, None), list)]
    found += [h.body for h in getattr(stmt, "handlers", [])]
    found += [c.body for c in getattr(stmt, "cases", [])]
    return found


def _module_level(body: list[ast.stmt]) -> Iterable[ast.stmt]:
    """Module-level statements, including those inside ``if``/``try``/``with``/``for`` blocks."""
    for stmt in body:
        yield stmt
        if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for block in _blocks(stmt):
                yield from _module_level(block)


def _collect_definitions(body: list[ast.stmt], prefix: str, units: dict[str, Unit]) -> None:
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            qualname = prefix + stmt.name
            unit = _unit([stmt])
            if qualname in units:  # defined twice (under an if/else): either may be the one in use
                old = units[qualname]
                unit = Unit(sha256_text(old.digest + unit.digest), old.names + unit.names, old.chains + unit.chains)
            units[qualname] = unit
            inner = qualname + ("." if isinstance(stmt, ast.ClassDef) else ".<locals>.")
            _collect_definitions(stmt.body, inner, units)
        else:
            for block in _blocks(stmt):
                _collect_definitions(block, prefix, units)


def _unit(stmts: list[ast.stmt]) -> Unit:
    names: set[str] = set()
    chains: set[tuple[str, ...]] = set()
    for stmt in stmts:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.Attribute):
                chain = _chain(node)
                if chain:
                    chains.add(chain)
    digest = sha256_text("\n".join(_digest(s) for s in stmts))
    return Unit(digest, sorted(names), sorted(list(c) for c in chains))


def _chain(node: ast.Attribute) -> tuple[str, ...] | None:
    parts = [node.attr]
    value = node.value
    while isinstance(value, ast.Attribute):
        parts.append(value.attr)
        value = value.value
    if not isinstance(value, ast.Name):
        return None
    parts.append(value.id)
    return tuple(reversed(parts))


def _digest(node: ast.AST) -> str:
    return sha256_text(ast.dump(node, annotate_fields=False, include_attributes=False))


def _bound_names(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, ast.Assign):
        targets: list[ast.expr] = list(stmt.targets)
    elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor)):
        targets = [stmt.target]
    elif isinstance(stmt, (ast.With, ast.AsyncWith)):
        targets = [item.optional_vars for item in stmt.items if item.optional_vars is not None]
    else:
        return []
    return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]


def _imported_names(stmt: ast.Import | ast.ImportFrom, package: str) -> dict[str, list[str]]:
    if isinstance(stmt, ast.Import):
        return {
            (alias.asname or alias.name.split(".")[0]): [alias.name if alias.asname else alias.name.split(".")[0], ""]
            for alias in stmt.names
        }
    base = stmt.module or ""
    if stmt.level:
        parent = package.rsplit(".", stmt.level - 1)[0] if stmt.level > 1 else package
        base = f"{parent}.{base}" if base else parent
    return {(alias.asname or alias.name): [base, alias.name] for alias in stmt.names if alias.name != "*"}



class ModuleIndexCache:
    """Module indexes by file path and stat signature; a plain dict the store persists."""

    def __init__(self, entries: dict[str, Any] | None = None) -> None:
        self.entries = entries if entries is not None else {}
        self.changed = False
        self._live: dict[str, ModuleIndex] = {}

    def index(self, path: str, package: str) -> ModuleIndex | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        signature = [_INDEX_FORMAT, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
        known = self.entries.get(path)
        if known is not None and known[0] == signature:
            if path not in self._live:
                self._live[path] = ModuleIndex.from_data(known[1])
            return self._live[path]
        try:
            with open(path, "rb") as handle:
                source = handle.read().decode("utf-8", errors="replace")
            found = index_source(source, package)
        except (OSError, SyntaxError, ValueError):
            return None
        self.entries[path] = [signature, found.to_data()]
        self._live[path] = found
        self.changed = True
        return found


