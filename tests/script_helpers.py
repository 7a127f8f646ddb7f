"""Run a script entrypoint (``tests/scripts/entry_train.py`` copied as ``train.py``) as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parent / "scripts" / "entry_train.py"


def copy_script(dest: Path) -> Path:
    target = dest / "train.py"
    target.write_text(SCRIPT.read_text())
    return target


def run_script(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: Any = subprocess.DEVNULL, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python train.py ARGS`` in ``cwd``, stdin not a terminal unless given one."""
    full_env = {k: v for k, v in os.environ.items() if k != "NEMOFLOW_STORE"}
    full_env.update({"COLUMNS": "200", **(env or {})})
    return subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=cwd,
        env=full_env,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def result_of(proc: subprocess.CompletedProcess[str]) -> Any:
    """The step's return value: the last line on stdout, as JSON."""
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def resolved(folder: Path, *overrides: str) -> Any:
    """The config the overrides resolve to, as ``--to-json`` writes it."""
    out = folder / "resolved.json"
    proc = run_script(*overrides, "--to-json", str(out), cwd=folder)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    data = json.loads(out.read_text())
    out.unlink()
    return data
