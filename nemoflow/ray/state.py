"""Ray clusters and jobs remembered by name, so another process (or a later session) finds them again.

One JSON file per name under ``$NEMOFLOW_RAY_STATE`` (default ``~/.local/state/nemoflow/ray``), written
atomically; nothing in it is secret (pids, ports, Slurm job ids, the dashboard's address).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any


def state_dir() -> Path:
    found = os.environ.get("NEMOFLOW_RAY_STATE")
    return Path(found) if found else Path.home() / ".local" / "state" / "nemoflow" / "ray"


def _path(kind: str, name: str) -> Path:
    return state_dir() / kind / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.json"


def load(kind: str, name: str) -> dict[str, Any] | None:
    try:
        return json.loads(_path(kind, name).read_text())
    except (FileNotFoundError, ValueError):
        return None


def save(kind: str, name: str, data: dict[str, Any]) -> None:
    path = _path(kind, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(f".{os.getpid()}.tmp")
    temp.write_text(json.dumps(data, indent=1))
    os.replace(temp, path)


def remove(kind: str, name: str) -> None:
    _path(kind, name).unlink(missing_ok=True)
