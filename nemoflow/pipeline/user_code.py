"""Whose code is it: the user's own modules (fingerprinted by source) versus the standard library,
installed distributions (counted by version) and nemoflow itself."""

from __future__ import annotations

import functools
import os
import site
import sys
import sysconfig

_OWN_PACKAGE = "nemoflow"


@functools.cache
def _installed_prefixes(path: tuple[str, ...]) -> tuple[str, ...]:
    """The folders of the standard library and of installed distributions (site-packages on ``path`` too)."""
    paths = sysconfig.get_paths()
    found = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    found.update(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    found.add(site.getusersitepackages())
    found.update(p for p in path if os.path.basename(p.rstrip(os.sep)) in ("site-packages", "dist-packages"))
    return tuple(sorted({os.path.realpath(p) + os.sep for p in found if p}))


@functools.cache
def is_user_module(name: str, file: str | None) -> bool:
    """Is the module the user's own code (not the standard library, an installed package, or nemoflow)?"""
    top = name.split(".")[0]
    if top == _OWN_PACKAGE or top in sys.stdlib_module_names or top == "builtins":
        return False
    if not file:  # __main__ of ``python -c``, a notebook, a module made at run time
        return True
    return not os.path.realpath(file).startswith(_installed_prefixes(tuple(sys.path)))


@functools.cache
def distribution_version(top: str) -> tuple[str, str] | None:
    """(distribution name, version) of an installed top-level package; None for the standard library."""
    if top in sys.stdlib_module_names or top in ("builtins", _OWN_PACKAGE):
        return None
    from importlib import metadata  # only when a step reaches a package: ~10 ms to import

    try:
        return top, metadata.version(top)
    except metadata.PackageNotFoundError:
        pass
    for dist in metadata.packages_distributions().get(top, []):
        try:
            return dist, metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    version = getattr(sys.modules.get(top), "__version__", None)
    return (top, version) if isinstance(version, str) else None


def module_label(name: str, file: str | None) -> str:
    """A module's file as seen from its import root (``mylib/model.py``): the same on every machine."""
    if name == "__main__" or not file:
        return os.path.basename(file) if file else name
    base = os.path.basename(file)
    if base.startswith("__init__."):
        return name.replace(".", "/") + "/" + base
    return "/".join([*name.split(".")[:-1], base])


