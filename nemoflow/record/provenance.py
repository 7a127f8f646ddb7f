"""What the ledger records about where a build ran: environment and the pipeline's git state."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import socket
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from nemoflow.store.hashing import sha256_text


@dataclass(frozen=True)
class Environment:
    """Python, platform, host and installed packages; ``id`` is a hash of all of it."""

    id: str
    python: str
    platform: str
    host: str
    packages: dict[str, str]


def capture_environment(cache: Path | None = None) -> Environment:
    """The environment of this process, read from ``cache`` while no package folder changed.

    Listing the installed distributions costs tens of milliseconds, so it is redone only
    when a ``sys.path`` folder's modification time moves (an install or uninstall does that).
    """
    stamp = _path_stamp()
    if cache is not None:
        try:
            saved = json.loads(cache.read_text())
            if saved.get("stamp") == stamp:
                return Environment(**saved["environment"])
        except (FileNotFoundError, ValueError, TypeError, KeyError):
            pass
    env = _scan_environment()
    if cache is not None:
        with contextlib.suppress(OSError):  # a cache that cannot be written is only slower
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
            tmp.write_text(json.dumps({"stamp": stamp, "environment": dataclasses.asdict(env)}))
            os.replace(tmp, cache)
    return env


def environment_cache() -> Path:
    """Where this interpreter's environment listing is cached, for every store and project of this user."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "nemoflow" / f"environment-{sha256_text(sys.executable)[:16]}.json"


def _path_stamp() -> list[list[Any]]:
    """The modification times of the folders packages are installed in (an install changes one)."""
    stamp = []
    for entry in sys.path:
        if not entry or not ("site-packages" in entry or "dist-packages" in entry or entry.startswith(sys.prefix)):
            continue  # the project's own folders say nothing about installed packages
        try:
            stamp.append([entry, os.stat(entry).st_mtime_ns])
        except OSError:
            continue
    return [[sys.executable, 0], *stamp]


def _scan_environment() -> Environment:
    packages = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            packages[name.lower()] = dist.version
    python = sys.version.split()[0]
    plat = platform.platform()
    host = socket.gethostname()
    ident = sha256_text(json.dumps([python, plat, host, sorted(packages.items())]))
    return Environment(ident, python, plat, host, dict(sorted(packages.items())))


@dataclass(frozen=True)
class GitState:
    """The commit of the repository holding a file, and whether it has uncommitted changes."""

    commit: str | None
    dirty: bool | None


def git_state(path: Path) -> GitState:
    folder = path if path.is_dir() else path.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return GitState(None, None)
    return GitState(commit, bool(status.strip()))
