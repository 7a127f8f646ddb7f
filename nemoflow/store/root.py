"""Where a project's store is: found as git and DVC find their root, not wherever the command runs."""

from __future__ import annotations

import os
from pathlib import Path

STORE_DIR = "targets"


def project_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The nearest folder from ``start`` (default: the current directory) up that marks a project.

    A folder marks one when it holds a ``targets/`` folder, a ``pyproject.toml`` with a
    ``[tool.nemoflow]`` section, or ``.git``. With none up to ``/``, ``start`` itself.
    """
    here = Path(start or os.getcwd()).absolute()
    for folder in (here, *here.parents):
        if (
            (folder / STORE_DIR).is_dir()
            or (folder / ".git").exists()
            or _has_nemoflow_section(folder / "pyproject.toml")
        ):
            return folder
    return here


def _has_nemoflow_section(pyproject: Path) -> bool:
    try:
        text = pyproject.read_text(errors="replace")
    except OSError:
        return False
    if "tool.nemoflow" not in text:  # most pyproject files: no TOML parse needed
        return False
    import tomllib

    try:
        return "nemoflow" in tomllib.loads(text).get("tool", {})
    except tomllib.TOMLDecodeError:
        return False
