"""Run each step as a subprocess on this machine."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
from typing import IO

from nemoflow.executors.base import Executor, Handle, Job, JobResult, JobState

_PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int = signal.SIGKILL) -> None:  # pragma: no cover - runs in the child
    """For ``preexec_fn``: the child gets ``signum`` when its parent dies (even by kill -9). Linux only.

    A step outlives no build; luigid outlives no ``nemoflow scheduler`` (it gets SIGTERM, to save its state).
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signum)


class LocalExecutor(Executor):
    """A subprocess per step, with its own environment and working directory.

    Output and errors go to the step's log file, and to the terminal with ``--tail-logs``.
    """

    working_dir: str | None = None

    def submit(self, job: Job) -> Handle:
        env = {**os.environ, **self.env_vars, **job.env}
        log = open(job.log_path, "ab")  # noqa: SIM115 - closed by the copier thread
        try:
            proc = subprocess.Popen(
                job.command,
                cwd=self.working_dir or job.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                # A Python step follows its build by itself (run_step); only other commands need
                # preexec_fn, which costs a slow fork of the whole build process.
                preexec_fn=None if job.follows_parent else die_with_parent,
            )
        except OSError as exc:
            log.close()
            raise FileNotFoundError(f"cannot start {job.command[0]!r}: {exc}") from exc
        copier = threading.Thread(target=_copy_output, args=(proc.stdout, log, job), daemon=True)
        copier.start()
        return Handle(job, str(proc.pid), native=(proc, copier))

    def status(self, handle: Handle) -> JobState:
        proc, _ = handle.native
        code = proc.poll()
        if code is None:
            return JobState.RUNNING
        return JobState.SUCCEEDED if code == 0 else JobState.FAILED

    def cancel(self, handle: Handle) -> None:
        proc, _ = handle.native
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    def wait(self, handle: Handle) -> JobResult:
        proc, copier = handle.native
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            self.cancel(handle)
            raise
        copier.join()
        if code == 0:
            return JobResult(JobState.SUCCEEDED, 0)
        if code < 0:
            return JobResult(
                JobState.CANCELLED if code == -signal.SIGTERM else JobState.FAILED, code, f"killed by signal {-code}"
            )
        return JobResult(JobState.FAILED, code, f"exit code {code}")


def _copy_output(stream: IO[bytes], log: IO[bytes], job: Job) -> None:
    prefix = f"[{job.step}] ".encode()
    with log:
        for line in iter(stream.readline, b""):
            log.write(line)
            log.flush()
            if job.tail_logs:
                sys.stdout.buffer.write(prefix + line)
                sys.stdout.flush()
    stream.close()
