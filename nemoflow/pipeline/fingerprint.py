"""Code fingerprints: every part of the user's own code a step can reach, each hashed on its own.

A step's code is the set of *parts* its target (and every config target it uses) reaches:

- ``code:<file>:<qualname>``: a function or class of the user's own code, by its normalised source
  (comments, docstrings and formatting do not count), followed recursively through the names it
  reads: module globals, ``from x import y``, attributes of imported user modules, decorators,
  default values, closures, nested functions and base classes;
- ``constant:<module>.<name>``: a module-level value it reads, by value when it is plain data
  (numbers, strings, lists, dicts, ...), else by the source of the statements that bind it;
- ``module:<file>``: a user module used as a whole (passed around, not read by attribute);
- ``package:<name>``: an installed distribution it reaches, by version (when ``packages`` is on);
- ``file:<path>`` and ``version:<where>``: what a step or function declares with
  :func:`depends_on` or ``exp.add(extra_code=..., extra_files=..., version=...)``.

The user's own code is every module outside the standard library, the installed distributions
(site-packages) and nemoflow itself. Module files are parsed once and the result is cached by
their stat signature (as input files are), so a no-op plan parses nothing.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import glob
import hashlib
import importlib
import importlib.machinery
import inspect
import json
import os
import sys
import textwrap
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemoflow.pipeline.code_index import ModuleIndex, ModuleIndexCache, Unit, index_source
from nemoflow.pipeline.user_code import distribution_version, is_user_module, module_label
from nemoflow.store.hashing import FileHashCache

DEPENDS_ATTR = "__nemoflow_depends__"
_PLAIN_LIMIT = 100_000  # elements: a bigger constant counts by the source that defines it


@dataclass(frozen=True)
class Declared:
    """Code, files and a version string declared by hand, for what analysis cannot see."""

    code: tuple[Any, ...] = ()
    files: tuple[str, ...] = ()
    version: str = ""


def depends_on(*code: Any, files: Iterable[str] = (), version: str = "") -> Callable[[Any], Any]:
    """Declare what a function's output also depends on, where the fingerprint cannot see it.

    Every step that reaches the decorated function (directly or through helpers) gets these
    parts in its key: the code of ``code`` (functions, classes or modules, e.g. ones a
    ``getattr`` by string or ``importlib`` picks), the content of ``files`` (paths or glob
    patterns, relative to the build's directory) and ``version`` (bump it to rebuild).

    Example::

        @nemoflow.depends_on(kernels, files=["configs/vocab.txt"], version="2")
        def tokenize(text: str) -> list[int]: ...
    """

    declared = Declared(tuple(code), tuple(files), str(version))

    def mark(fn: Any) -> Any:
        setattr(fn, DEPENDS_ATTR, declared)
        return fn

    return mark


def declared_to_data(declared: Declared | None) -> dict[str, Any] | None:
    """A step's declarations as JSON data (code by import path), for the ledger."""
    if declared is None:
        return None
    code = [
        {"module": obj.__name__} if isinstance(obj, types.ModuleType) else f"{obj.__module__}:{obj.__qualname__}"
        for obj in declared.code
    ]
    return {"code": code, "files": list(declared.files), "version": declared.version}


def declared_from_data(data: dict[str, Any] | None, load: Callable[[str], Any]) -> Declared | None:
    """The inverse of :func:`declared_to_data`; ``load`` imports ``module:qualname``."""
    if not data:
        return None
    code = tuple(importlib.import_module(c["module"]) if isinstance(c, dict) else load(c) for c in data.get("code", []))
    return Declared(code, tuple(data.get("files", [])), data.get("version", ""))


def _script_name(name: str, file: str | None) -> str:
    """``python file.py`` runs the file as ``__main__``; it counts as the module ``nemoflow build`` imports it as
    (its stem), so both give the same keys (see configs.serialize.import_path)."""
    if name == "__main__" and file and file.endswith(".py"):
        return os.path.splitext(os.path.basename(file))[0]
    return name


# ---- the walk ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class _Owner:
    """The module a definition lives in, as its globals say (a notebook's or exec's too)."""

    name: str
    file: str | None
    package: str
    namespace: dict[str, Any]

    @classmethod
    def of_module(cls, module: types.ModuleType) -> _Owner:
        file = getattr(module, "__file__", None)
        return cls(_script_name(module.__name__, file), file, module.__package__ or "", vars(module))

    @classmethod
    def of_globals(cls, namespace: dict[str, Any]) -> _Owner:
        name = namespace.get("__name__") or "__main__"
        file = namespace.get("__file__")
        return cls(_script_name(name, file), file, namespace.get("__package__") or "", namespace)

    @property
    def user(self) -> bool:
        return is_user_module(self.name, self.file)

    @property
    def label(self) -> str:
        return module_label(self.name, self.file)


@dataclass
class _Node:
    """What one object contributes directly, and what it leads to."""

    parts: dict[str, str] = field(default_factory=dict)
    next: list[Any] = field(default_factory=list)  # objects, _Reference and _ModuleRead records to follow


@dataclass(frozen=True, eq=False)
class _Reference:
    """A global name a definition reads, with the attribute chains read from it."""

    value: Any
    owner: _Owner
    name: str
    chains: list[list[str]]


@dataclass(frozen=True, eq=False)
class _ModuleRead:
    """Attributes read from a user module (``mylib.model.forward``)."""

    module: types.ModuleType
    chains: list[list[str]]


class Fingerprinter:
    """Finds the code parts a step reaches; one per plan (its memo assumes the code does not change meanwhile).

    Args:
        root: where declared files are read from.
        files: the plan's file hash cache (declared files are hashed like inputs).
        indexes: parsed module files by stat signature.
        packages: count installed distributions by version (``package:<name>`` parts).
    """

    def __init__(self, root: Path, files: FileHashCache, indexes: ModuleIndexCache, *, packages: bool = True) -> None:
        self.root = root
        self.files = files
        self.indexes = indexes
        self.packages = packages
        self._closures: dict[Any, dict[str, str]] = {}
        self._nodes: dict[Any, tuple[Any, _Node]] = {}
        self._owners: dict[int, tuple[dict[str, Any], _Owner]] = {}

    def parts(self, targets: Iterable[Any], declared: Declared | None = None) -> dict[str, str]:
        """Every part the targets reach (and the declared extras), part name -> digest or value."""
        found: dict[str, str] = {}
        for target in targets:
            found.update(self._closure(target))
        if declared is not None:
            found.update(self._declared(declared, "step"))
            for obj in declared.code:
                found.update(self._closure(obj))
        return dict(sorted(found.items()))

    def _closure(self, root: Any) -> dict[str, str]:
        try:
            cached = self._closures.get(root)
        except TypeError:  # unhashable
            cached = None
        if cached is not None:
            return cached
        parts: dict[str, str] = {}
        seen: set[Any] = set()
        stack = [root]
        while stack:
            obj = stack.pop()
            key = _identity(obj)
            if key in seen:
                continue
            seen.add(key)
            node = self._node(obj, key)
            parts.update(node.parts)
            stack.extend(node.next)
        with contextlib.suppress(TypeError):
            self._closures[root] = parts
        return parts

    def _node(self, obj: Any, key: Any) -> _Node:
        known = self._nodes.get(key)
        if known is not None:
            return known[1]
        node = self._explore(obj)
        self._nodes[key] = (obj, node)  # holding obj keeps the ids in its key from being reused
        return node

    def _owner(self, namespace: dict[str, Any], module: types.ModuleType | None = None) -> _Owner:
        known = self._owners.get(id(namespace))
        if known is not None and known[0] is namespace:
            return known[1]
        owner = _Owner.of_module(module) if module is not None else _Owner.of_globals(namespace)
        self._owners[id(namespace)] = (namespace, owner)
        return owner

    def _class_owner(self, cls: type) -> _Owner | None:
        """The module of a class: from ``sys.modules``, else from the globals of one of its methods."""
        module = sys.modules.get(cls.__module__)
        if module is not None and getattr(module, cls.__qualname__.split(".")[0], None) is not None:
            return self._module_owner(module)
        for member in vars(cls).values():
            namespace = getattr(_unwrap(member), "__globals__", None)
            if isinstance(namespace, dict):
                return self._owner(namespace)
        return self._module_owner(module) if module is not None else None

    def _module_owner(self, module: types.ModuleType) -> _Owner:
        return self._owner(vars(module), module)

    def _index(self, owner: _Owner) -> ModuleIndex | None:
        return self.indexes.index(owner.file, owner.package) if owner.file else None

    # -- what one object contributes --
    def _explore(self, obj: Any) -> _Node:
        if isinstance(obj, _Reference):
            return self._reference(obj)
        if isinstance(obj, _ModuleRead):
            return self._module_read(obj)
        target = _unwrap(obj)
        if isinstance(target, types.ModuleType):
            return self._whole_module(target)
        if isinstance(target, functools.partial):
            return _Node(next=[target.func, *target.args, *target.keywords.values()])
        if isinstance(target, (types.MethodType, staticmethod, classmethod)):
            return _Node(next=[target.__func__])
        if isinstance(target, types.FunctionType):
            return self._definition(target, self._owner(target.__globals__))
        if isinstance(target, type):
            owner = self._class_owner(target)
            return self._definition(target, owner) if owner is not None else _Node()
        if callable(target):  # a builtin or a compiled function (numpy's ufuncs): its package
            return self._package_of(getattr(target, "__module__", None) or type(target).__module__)
        return _Node()

    def _package_of(self, module_name: str) -> _Node:
        if not self.packages or not module_name:
            return _Node()
        found = distribution_version(module_name.split(".")[0])
        return _Node({f"package:{found[0]}": found[1]}) if found else _Node()

    def _definition(self, target: Any, owner: _Owner) -> _Node:
        if not owner.user:
            return self._package_of(owner.name)
        qualname = getattr(target, "__qualname__", target.__name__)
        unit = self._unit_of(owner, target, qualname)
        node = _Node({f"code:{owner.label}:{qualname}": unit.digest if unit else _code_digest(target)})
        names = unit.names if unit else _code_names(target)
        node.next.extend(_reads(owner, names, unit.chains if unit else []))
        if isinstance(target, type):
            node.next.extend(base for base in target.__mro__[1:] if base is not object)
        else:
            node.next.extend(self._closure_cells(owner, target, qualname, node))
        declared = getattr(target, DEPENDS_ATTR, None)
        if isinstance(declared, Declared):
            node.parts.update(self._declared(declared, f"{owner.name}.{qualname}"))
            node.next.extend(declared.code)
        return node

    def _unit_of(self, owner: _Owner, target: Any, qualname: str) -> Unit | None:
        index = self._index(owner)
        if index is not None and qualname in index.units and "<lambda>" not in qualname:
            return index.units[qualname]
        try:  # a notebook cell, ``python -c``, or a definition made by exec: what inspect can find
            snippet = index_source(textwrap.dedent(inspect.getsource(target)))
        except (OSError, TypeError, SyntaxError):
            return None
        return next(iter(snippet.units.values()), None)

    def _closure_cells(self, owner: _Owner, fn: Any, qualname: str, node: _Node) -> list[Any]:
        cells = getattr(fn, "__closure__", None) or ()
        follow = []
        for var, cell in zip(fn.__code__.co_freevars, cells):
            try:
                value = cell.cell_contents
            except ValueError:  # not yet assigned
                continue
            plain = _plain_json(value)
            if plain is not None:
                node.parts[f"constant:{owner.name}.{qualname}.{var}"] = plain
            else:
                follow.append(value)
        return follow

    def _reference(self, ref: _Reference) -> _Node:
        """A global name read by user code: follow a definition, or count a constant."""
        value = ref.value
        target = _unwrap(value)
        if isinstance(target, types.ModuleType):
            if is_user_module(target.__name__, getattr(target, "__file__", None)):
                return _Node(next=[_ModuleRead(target, ref.chains)])
            return self._package_of(target.__name__)
        if isinstance(target, (types.FunctionType, type, functools.partial, types.MethodType)):
            return _Node(next=[value])
        if callable(target) and not _is_data(target) and not _is_user_object(target):
            return _Node(next=[value])
        return self._constant(ref.owner, ref.name, value)

    def _constant(self, owner: _Owner, name: str, value: Any) -> _Node:
        part = f"constant:{owner.name}.{name}"
        plain = _plain_json(value)
        if plain is not None:
            return _Node({part: plain})
        node = _Node()
        where, unit = self._binding(owner, name, set())
        if unit is not None and where is not None:
            node.parts[part] = "source:" + unit.digest
            node.next.extend(_reads(where, unit.names, unit.chains))
        else:
            node.parts[part] = "object:" + type(value).__module__ + "." + type(value).__qualname__
        if not isinstance(value, type):
            node.next.append(type(value))  # a user class's instance: its class's code decides its behaviour
        node.next.extend(_held_code(value))
        return node

    def _binding(self, owner: _Owner, name: str, seen: set[str]) -> tuple[_Owner | None, Unit | None]:
        """The module and statements that bind ``name``, following ``from x import name``."""
        if owner.name in seen:
            return None, None
        seen.add(owner.name)
        index = self._index(owner)
        if index is None:
            return None, None
        if name in index.binds:
            return owner, index.binds[name]
        source = index.imports.get(name)
        other = sys.modules.get(source[0]) if source and source[1] else None
        if other is not None and is_user_module(other.__name__, getattr(other, "__file__", None)):
            return self._binding(self._module_owner(other), source[1], seen)
        return None, None

    def _module_read(self, read: _ModuleRead) -> _Node:
        """Attributes read from a user module (``model.forward``): follow each; no attribute: the whole module."""
        if not read.chains:
            return _Node(next=[read.module])
        owner = self._module_owner(read.module)
        heads: dict[str, list[list[str]]] = {}
        for chain in read.chains:
            heads.setdefault(chain[0], []).append(chain[1:])
        return _Node(
            next=[
                _Reference(owner.namespace[attr], owner, attr, [r for r in rests if r])
                for attr, rests in heads.items()
                if attr in owner.namespace
            ]
        )

    def _whole_module(self, module: types.ModuleType) -> _Node:
        owner = self._module_owner(module)
        if not owner.user:
            return self._package_of(owner.name)
        index = self._index(owner)
        return _Node({f"module:{owner.label}": index.digest if index else "nosource"})

    def _declared(self, declared: Declared, where: str) -> dict[str, str]:
        found = {}
        for pattern in declared.files:
            for path in _expand(self.root, pattern):
                found[f"file:{path}"] = self.files.sha256(str(self.root / path))
        if declared.version:
            found[f"version:{where}"] = declared.version
        return found


def _identity(obj: Any) -> Any:
    """What makes two things to follow the same: a global name of one module is one thing, however reached."""
    if isinstance(obj, _Reference):
        return ("ref", id(obj.owner.namespace), obj.name, repr(obj.chains))
    if isinstance(obj, _ModuleRead):
        return ("read", id(obj.module), repr(obj.chains))
    return id(obj)


def _reads(owner: _Owner, names: list[str], chains: list[list[str]]) -> list[Any]:
    """The global names a definition reads, as references to follow."""
    by_head: dict[str, list[list[str]]] = {}
    for chain in chains:
        by_head.setdefault(chain[0], []).append(chain[1:])
    namespace = owner.namespace
    return [_Reference(namespace[n], owner, n, by_head.get(n, [])) for n in names if n in namespace]


def _unwrap(obj: Any) -> Any:
    try:
        return inspect.unwrap(obj) if callable(obj) else obj
    except ValueError:  # a __wrapped__ cycle
        return obj


def _held_code(value: Any, limit: int = 1000) -> list[Any]:
    """Functions and classes kept in a container constant (a registry ``{"adam": make_adam}``): followed too."""
    if isinstance(value, dict):
        items: Iterable[Any] = [*value.keys(), *value.values()]
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = value
    else:
        return []
    found = []
    for i, item in enumerate(items):
        if i >= limit:
            break
        target = _unwrap(item)
        if isinstance(target, (types.FunctionType, type, functools.partial, types.MethodType, types.ModuleType)):
            found.append(item)
        elif isinstance(item, (dict, list, tuple, set, frozenset)):
            found.extend(_held_code(item, limit // 10))
    return found


def _is_user_object(value: Any) -> bool:
    """An instance of a class of the user's own code (a callable model object, say)."""
    module = sys.modules.get(type(value).__module__)
    if module is None:
        return not isinstance(value, (types.BuiltinFunctionType, types.MethodWrapperType))
    return is_user_module(module.__name__, getattr(module, "__file__", None))


def _is_data(value: Any) -> bool:
    """Values that are called but are data to a step (an Enum member, a compiled pattern, ...)."""
    return isinstance(value, enum.Enum)


def _plain_json(value: Any) -> str | None:
    """Canonical JSON of plain data (numbers, strings, lists, dicts with string keys); None otherwise."""
    budget = [_PLAIN_LIMIT]

    def plain(v: Any) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise ValueError("too big")
        if v is None or isinstance(v, (bool, int, str)):
            return v
        if isinstance(v, float):
            return repr(v) if v != v or v in (float("inf"), float("-inf")) else v
        if isinstance(v, enum.Enum):
            return {"enum": f"{type(v).__module__}.{type(v).__qualname__}.{v.name}"}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, (set, frozenset)):
            return sorted((plain(x) for x in v), key=lambda x: json.dumps(x, sort_keys=True))
        if isinstance(v, dict) and all(isinstance(k, str) for k in v):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, os.PathLike):
            return os.fspath(v)
        raise ValueError("not plain data")

    try:
        return json.dumps(plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (ValueError, TypeError):
        return None


def _code_digest(target: Any) -> str:
    """A definition without source (made by exec, or a lambda among several): its bytecode and constants."""
    code = getattr(target, "__code__", None)
    if code is None:
        return "nosource:" + getattr(target, "__qualname__", type(target).__qualname__)
    return hashlib.sha256(_code_bytes(code)).hexdigest()


def _code_bytes(code: types.CodeType) -> bytes:
    parts = [code.co_code, repr(code.co_names).encode()]
    for const in code.co_consts:
        parts.append(_code_bytes(const) if isinstance(const, types.CodeType) else repr(const).encode())
    return b"\0".join(parts)


def _code_names(target: Any) -> list[str]:
    code = getattr(target, "__code__", None)
    names: set[str] = set()
    stack = [code] if code is not None else []
    while stack:
        current = stack.pop()
        names.update(current.co_names)
        stack.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    return sorted(names)


def _expand(root: Path, pattern: str) -> list[str]:
    """The files a declared path or glob names, relative to ``root`` (raises FileNotFoundError)."""
    full = pattern if os.path.isabs(pattern) else str(root / pattern)
    matches = sorted(glob.glob(full, recursive=True)) if glob.has_magic(pattern) else [full]
    files = [m for m in matches if os.path.isfile(m)]
    if not files:
        raise FileNotFoundError(pattern)
    return [os.path.relpath(m, root) if not os.path.isabs(pattern) else m for m in files]


