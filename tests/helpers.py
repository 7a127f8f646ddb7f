"""Shared helpers for tests: run the real CLI, copy pipelines, snapshot a store."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PIPELINES = REPO / "pipelines"


def nemoflow(
    *args: str, cwd: Path, check: bool = False, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m nemoflow.cli`` (the real command line) in ``cwd``."""
    full_env = {k: v for k, v in os.environ.items() if k != "NEMOFLOW_STORE"}  # tests name their store
    full_env.update({"COLUMNS": "200", **(env or {})})
    proc = subprocess.run(
        [sys.executable, "-m", "nemoflow.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"nemoflow {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@contextlib.contextmanager
def background_build(pipeline: Path, cwd: Path, *options: str) -> Iterator[subprocess.Popen[str]]:
    """``nemoflow build PIPELINE [OPTIONS]`` running in the background (to interrupt it), in a process group of its
    own (as a shell job is); killed if still running at the end."""
    env = {k: v for k, v in os.environ.items() if k != "NEMOFLOW_STORE"}
    build = subprocess.Popen(
        [sys.executable, "-m", "nemoflow.cli", "build", str(pipeline), *options],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        yield build
    finally:
        if build.poll() is None:
            build.kill()
            build.communicate()


def kill_build_once_started(args: list[str], cwd: Path, marker: Path, *, timeout: float = 60) -> None:
    """Run ``nemoflow build ARGS`` and SIGKILL it as soon as ``marker`` exists (a step wrote it)."""
    build = subprocess.Popen(
        [sys.executable, "-m", "nemoflow.cli", "build", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + timeout
        while not marker.exists():
            assert time.time() < deadline, f"the step writing {marker.name} never started"
            assert build.poll() is None, f"the build ended before the step writing {marker.name} started"
            time.sleep(0.02)
        os.kill(build.pid, signal.SIGKILL)
        build.wait(timeout=10)
    finally:
        if build.poll() is None:
            build.kill()


def runs_by_step(folder: Path) -> dict[str, dict[str, Any]]:
    """The ledger's runs of the store ``folder/targets``, the latest of each step."""
    conn = sqlite3.connect(folder / "targets" / "ledger.db")
    conn.row_factory = sqlite3.Row
    try:
        return {row["step"]: dict(row) for row in conn.execute("select * from runs order by started")}
    finally:
        conn.close()


def published_target(folder: Path, step: str) -> Path:
    """The one published target folder of ``step`` in ``folder/targets``."""
    found = [p for p in (folder / "targets" / step).iterdir() if (p / "nemoflow.json").exists()]
    assert len(found) == 1, found
    return found[0]


def last_json(stdout: str) -> Any:
    """The JSON object printed last on stdout."""
    return json.loads(stdout.strip().splitlines()[-1])


def names(entries: list[dict[str, Any]]) -> set[str]:
    return {e["name"] for e in entries}


def copy_pipeline(name: str, dest: Path) -> Path:
    target = dest / name
    target.write_text((PIPELINES / name).read_text())
    return target


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the sha256 of its content."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def built_quickstart(factory: Any, name: str = "quickstart") -> Path:
    """A fresh folder holding a copy of pipelines/quickstart.py, built once (for module fixtures)."""
    folder = factory.mktemp(name)
    copy_pipeline("quickstart.py", folder)
    nemoflow("build", "quickstart.py", cwd=folder, check=True)
    return folder


def running(pid: int) -> bool:
    """Is process ``pid`` still running? A zombie (ended, not yet reaped) counts as gone."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # PermissionError: the pid was reused by another user's process
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
