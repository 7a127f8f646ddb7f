"""A Script's code, read statically (a script runs in its own process and may run when imported): its
normalised source and every user module it imports, found on its folder, the build's and ``sys.path``."""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import os
import sys
from pathlib import Path

from nemoflow.pipeline.code_index import ModuleIndexCache
from nemoflow.pipeline.user_code import distribution_version, is_user_module


def script_parts(path: Path, root: Path, indexes: ModuleIndexCache, *, packages: bool = True) -> dict[str, str]:
    """A script file's parts: its normalised source (Python) or content, and the user modules it imports.

    The script is not imported (it may run when imported); the modules it imports are found on
    the script's folder, the build's directory and ``sys.path``, and count as whole modules.
    """
    label = os.path.relpath(path, root) if str(path).startswith(str(root)) else path.name
    data = path.read_bytes()
    if path.suffix != ".py":
        return {f"script:{label}": hashlib.sha256(data).hexdigest()}
    index = indexes.index(str(path), "")
    if index is None:
        return {f"script:{label}": hashlib.sha256(data).hexdigest()}
    parts = {f"script:{label}": index.digest}
    search = [str(path.parent), str(root), *sys.path]
    pending = [module for module, _ in index.imports.values()]
    pending += [f"{module}.{attr}" for module, attr in index.imports.values() if attr]
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if not name or name in seen:
            continue
        seen.add(name)
        file = _find_module_file(name, search)
        top = name.split(".")[0]
        if file is None or not is_user_module(name, file):
            if packages and file is not None:
                found = distribution_version(top)
                if found:
                    parts[f"package:{found[0]}"] = found[1]
            continue
        module_index = indexes.index(file, name if file.endswith("__init__.py") else name.rpartition(".")[0])
        if module_index is None:
            continue
        rel = name.replace(".", "/") + ("/__init__.py" if file.endswith("__init__.py") else ".py")
        parts[f"module:{rel}"] = module_index.digest
        pending.extend(module for module, _ in module_index.imports.values())
        pending.extend(f"{module}.{attr}" for module, attr in module_index.imports.values() if attr)
        if "." in name:
            pending.append(name.rpartition(".")[0])
    return dict(sorted(parts.items()))


def _find_module_file(name: str, search: list[str]) -> str | None:
    """The file of module ``name`` on ``search`` (a package's ``__init__.py``), without importing it."""
    parts = name.split(".")
    top = parts[0]
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        return None
    spec = importlib.machinery.PathFinder.find_spec(top, search)
    if spec is None:
        return None
    for part in parts[1:]:
        locations = spec.submodule_search_locations
        if not locations:
            return None
        spec = importlib.machinery.PathFinder.find_spec(f"{spec.name}.{part}", list(locations))
        if spec is None:
            return None
    origin = spec.origin
    return origin if origin and origin not in ("built-in", "frozen") and os.path.isfile(origin) else None
