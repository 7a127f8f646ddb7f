"""The per-key lock: one holder at a time across processes, and a killed holder's lock is free at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from nemoflow.store.locks import key_lock

HOLD = """
import sys, time
from pathlib import Path
from nemoflow.store.locks import key_lock
with key_lock(sys.argv[1], "k" * 64):
    Path(sys.argv[2]).write_text("held")
    time.sleep(float(sys.argv[3]))
"""


def _holder(tmp_path: Path, seconds: float) -> subprocess.Popen[bytes]:
    marker = tmp_path / "held"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), str(marker), str(seconds)])
    deadline = time.time() + 20
    while not marker.exists():
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.01)
    return proc


def test_a_second_holder_waits_for_the_first(tmp_path: Path) -> None:
    holder = _holder(tmp_path, 1.0)
    waits: list[bool] = []
    started = time.monotonic()
    with key_lock(tmp_path, "k" * 64, on_wait=lambda: waits.append(True)) as waited:
        assert waited and waits == [True]
        assert time.monotonic() - started > 0.5
    holder.wait(timeout=10)
    assert not list((tmp_path / ".locks").iterdir()), "the lock file goes with its last holder"


def test_a_lock_held_by_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    holder = _holder(tmp_path, 60)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)
    started = time.monotonic()
    with key_lock(tmp_path, "k" * 64):
        assert time.monotonic() - started < 2


def test_locks_of_different_keys_do_not_wait_for_each_other(tmp_path: Path) -> None:
    holder = _holder(tmp_path, 5)
    try:
        with key_lock(tmp_path, "j" * 64) as waited:
            assert not waited
    finally:
        holder.kill()
        holder.wait()
