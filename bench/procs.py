"""Run one command as a measured child process: wall time, peak RSS of its tree, a time budget."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Measured:
    """What one child process did."""

    seconds: float
    max_rss_mb: float  # ru_maxrss of the waited child: the largest process of its waited-for tree
    returncode: int
    timed_out: bool
    stdout: str
    stderr: str


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def run_measured(
    command: list[str],
    cwd: Path,
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    log_dir: Path | None = None,
    label: str = "run",
) -> Measured:
    """Run ``command`` in ``cwd`` in its own process group; kill the group after ``timeout`` s.

    Output goes to files (``<log_dir>/<label>.out|.err``, else beside ``cwd``) so that a chatty tool
    does not block on a pipe; the text is read back afterwards. The time covers the whole process,
    interpreter start-up included.
    """
    logs = log_dir or cwd
    logs.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logs / f"{label}.out", logs / f"{label}.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
        )
        fired = threading.Event()

        def expire() -> None:
            fired.set()
            _kill_group(proc.pid)

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # interrupted: the child is in its own session and would live on
            _kill_group(proc.pid)
            raise
        finally:
            timer.cancel()
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        _kill_group(proc.pid)  # anything the tool left behind in its group
    return Measured(
        seconds=seconds,
        max_rss_mb=usage.ru_maxrss / 1024.0,  # Linux reports KiB
        returncode=proc.returncode,
        timed_out=fired.is_set(),
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
    )
