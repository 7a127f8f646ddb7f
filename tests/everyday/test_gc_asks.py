"""`nemoflow gc` lists what it would delete and asks first (a terminal), or needs --yes (off one)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import nemoflow

PIPELINE = (
    "import nemoflow\n\n"
    "def make(n: int) -> int:\n    return n\n\n"
    "exp = nemoflow.Experiment('g')\n"
    "exp.add(nemoflow.Partial(make, n=N), name='make')\n"
)


@pytest.fixture
def stale(tmp_path: Path) -> Path:
    """A store with one target the pipeline no longer reaches (built at n=1, the file now says n=2)."""
    (tmp_path / "g.py").write_text(PIPELINE.replace("N", "1"))
    nemoflow("build", "g.py", "--direct", cwd=tmp_path, check=True)
    (tmp_path / "g.py").write_text(PIPELINE.replace("N", "2"))
    return tmp_path


def _targets(folder: Path) -> list[Path]:
    return sorted((folder / "targets").glob("make/*/nemoflow.json"))


def _gc_on_a_terminal(folder: Path, answer: bytes) -> tuple[int, str]:
    """Run `nemoflow gc g.py` in a pty, answer the question, return its exit code and everything it showed."""
    main, child = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "NEMOFLOW_STORE"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nemoflow.cli", "gc", "g.py"],
        cwd=folder,
        env=env,
        stdin=child,
        stdout=child,
        stderr=child,
    )
    os.close(child)
    shown = b""
    deadline = time.time() + 60
    answered = False
    while time.time() < deadline:
        ready, _, _ = select.select([main], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # the command ended and closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        if not answered and b"[y/N]" in shown:
            os.write(main, answer)
            answered = True
        if proc.poll() is not None and not ready:
            break
    code = proc.wait(timeout=30)
    os.close(main)
    return code, shown.decode(errors="replace")


def test_gc_on_a_terminal_lists_and_keeps_everything_when_told_no(stale: Path) -> None:
    code, shown = _gc_on_a_terminal(stale, b"n\r")
    assert "would remove" in shown and "make/" in shown
    assert "remove them? [y/N]" in shown
    assert "nothing removed" in shown
    assert code == 1
    assert len(_targets(stale)) == 1


def test_gc_on_a_terminal_removes_after_yes(stale: Path) -> None:
    code, shown = _gc_on_a_terminal(stale, b"y\r")
    assert code == 0, shown
    assert "removed 1 target(s)" in shown
    assert _targets(stale) == []


def test_gc_off_a_terminal_refuses_without_yes(stale: Path) -> None:
    proc = nemoflow("gc", "g.py", cwd=stale)
    assert proc.returncode == 2
    assert "--yes" in proc.stderr and "--dry-run" in proc.stderr
    assert len(_targets(stale)) == 1
    assert nemoflow("gc", "g.py", "--yes", cwd=stale, check=True).returncode == 0
    assert _targets(stale) == []


def test_gc_dry_run_only_lists(stale: Path) -> None:
    proc = nemoflow("gc", "g.py", "--dry-run", cwd=stale, check=True)
    assert "would remove" in proc.stdout and "make/" in proc.stdout
    assert len(_targets(stale)) == 1
