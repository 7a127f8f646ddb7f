"""Run each step as a subprocess on this machine."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pydantic

from nemoflow.errors import UserError
from nemoflow.executors.base import Executor, Handle, Job, JobResult, JobState
from nemoflow.executors.launchers import Torchrun, launch_command
from nemoflow.executors.local_limits import MemoryLimit, cpu_set, parse_memory, preexec, visible_devices

_PR_SET_PDEATHSIG = 1
PARENT_PID_ENV = "NEMOFLOW_PARENT_PID"  # run_step's (nemoflow.engine is a later layer)


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

    Attributes:
        ntasks_per_node: processes of the step; more than one needs ``launcher="torchrun"``.
        nodes: always 1 here (NeMo Run's field, for ``nnodes()``).
        cpus: pin the step to CPUs: a number (the first N this process may use) or a list of CPU ids.
        memory: a hard limit (bytes, or ``"4g"``, ``"512m"``); a step over it is killed and fails as
            out of memory. The step gets a memory cgroup of its own when one can be made, else RLIMIT_AS.
        gpus: the GPUs the step sees (``CUDA_VISIBLE_DEVICES``): a number (the first N) or device ids.
        python: the interpreter of a Python step (default: the build's own).
        launcher_args: more arguments for the launcher (torchrun's ``--max_restarts=3``, ...).
    """

    working_dir: str | None = None
    ntasks_per_node: int = pydantic.Field(default=1, ge=1)
    nodes: int = pydantic.Field(default=1, ge=1, le=1)
    cpus: pydantic.PositiveInt | list[pydantic.NonNegativeInt] | None = None
    memory: pydantic.PositiveInt | str | None = None
    gpus: pydantic.NonNegativeInt | list[pydantic.NonNegativeInt] | None = None
    python: str | None = None
    launcher_args: list[str] = []

    @pydantic.field_validator("memory")
    @classmethod
    def _memory(cls, value: int | str | None) -> int | str | None:
        if value is not None:
            parse_memory(value)
        return value

    @pydantic.field_validator("cpus")
    @classmethod
    def _cpus(cls, value: int | list[int] | None) -> int | list[int] | None:
        if isinstance(value, list) and (not value or len(set(value)) != len(value)):
            raise ValueError(f"cpus must list distinct CPU ids, got {value}")
        return value

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> LocalExecutor:
        if self.gpus is not None and "CUDA_VISIBLE_DEVICES" in self.env_vars:
            raise ValueError("give gpus= or env_vars['CUDA_VISIBLE_DEVICES'], not both")
        return self

    def assign(self, exp_id: str, exp_dir: str, task_id: str, task_dir: str) -> None:
        self._assign_dirs(exp_id, exp_dir, task_dir)

    def nnodes(self) -> int:
        return self.nodes

    def nproc_per_node(self) -> int:
        return self.ntasks_per_node

    def submit(self, job: Job) -> Handle:
        env = {**os.environ, **self.env_vars, **job.env}
        if self.gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = visible_devices(self.gpus)
        command = self._command(job)
        if self.python and command[0] != sys.executable:  # another interpreter: it imports this nemoflow too
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [_runtime_path(job), env.get("PYTHONPATH")]))
        follows = job.follows_parent
        if isinstance(self.get_launcher(), Torchrun):  # torchrun is the steps' parent: it follows the build
            env.pop(PARENT_PID_ENV, None)
            follows = False
        steps: list[Callable[[], None]] = [] if follows else [die_with_parent]
        if self.cpus is not None:
            try:
                pinned = cpu_set(self.cpus)
            except ValueError as exc:
                raise _LocalValueError(str(exc), hint="choose CPUs from os.sched_getaffinity(0)") from exc
            steps.append(functools.partial(os.sched_setaffinity, 0, pinned))
        limit = MemoryLimit.make(parse_memory(self.memory), job.name) if self.memory is not None else None
        if limit is not None:
            steps.append(limit.enter)
        log = open(job.log_path, "ab")  # noqa: SIM115 - closed by the copier thread
        try:
            proc = subprocess.Popen(
                command,
                cwd=self.working_dir or job.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                # A Python step follows its build by itself (run_step); only other commands, and limits,
                # need preexec_fn, which costs a slow fork of the whole build process.
                preexec_fn=preexec(steps),
            )
        except (OSError, subprocess.SubprocessError) as exc:
            log.close()
            if limit is not None:
                limit.remove()
            raise FileNotFoundError(f"cannot start {command[0]!r}: {exc}") from exc
        copier = threading.Thread(target=_copy_output, args=(proc.stdout, log, job), daemon=True)
        copier.start()
        # no details: a local run's ledger record says nothing a later process could act on
        return Handle(job, str(proc.pid), native=(proc, copier, limit))

    def _command(self, job: Job) -> list[str]:
        """The job's command with this executor's interpreter and launcher."""
        command = list(job.command)
        python_step = command[1:2] == ["-m"]
        if self.python and python_step:
            command[0] = self.python
        launcher = self.get_launcher()
        if not isinstance(launcher, Torchrun):
            if self.ntasks_per_node > 1:
                raise _LocalValueError(
                    f"ntasks_per_node={self.ntasks_per_node} needs a launcher to start the processes",
                    hint='set launcher="torchrun"',
                )
            return command
        port = launcher.rdzv_port if "rdzv_port" in launcher.model_fields_set else _free_port()
        return launch_command(
            command,
            Torchrun(rdzv_backend=launcher.rdzv_backend, rdzv_port=port, rdzv_id=launcher.rdzv_id),
            nnodes=1,
            nproc_per_node=self.ntasks_per_node,
            extra=self.launcher_args,
            rdzv_host="127.0.0.1",
            rdzv_id=job.name,
        )

    def status(self, handle: Handle) -> JobState:
        proc = handle.native[0]
        code = proc.poll()
        if code is None:
            return JobState.RUNNING
        return JobState.SUCCEEDED if code == 0 else JobState.FAILED

    def cancel(self, handle: Handle) -> None:
        proc = handle.native[0]
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    def wait(self, handle: Handle) -> JobResult:
        proc, copier, limit = handle.native
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            self.cancel(handle)
            if limit is not None:
                limit.remove()
            raise
        copier.join()
        if limit is not None:
            oom = code != 0 and limit.out_of_memory(_tail(handle.job))
            limit.remove()
            if oom:
                return JobResult(
                    JobState.FAILED,
                    code,
                    f"out of memory: the step went over memory={self.memory!r} ({limit.limit} bytes, {limit.how})",
                )
        if code == 0:
            return JobResult(JobState.SUCCEEDED, 0)
        if code < 0:
            return JobResult(
                JobState.CANCELLED if code == -signal.SIGTERM else JobState.FAILED, code, f"killed by signal {-code}"
            )
        return JobResult(JobState.FAILED, code, f"exit code {code}")


class _LocalValueError(UserError, ValueError):
    """A LocalExecutor setting that cannot work on this machine (a ValueError, as NeMo Run raises)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(job: Job, size: int = 4096) -> str:
    with contextlib.suppress(OSError), job.log_path.open("rb") as log:
        log.seek(max(0, log.seek(0, os.SEEK_END) - size))
        return log.read().decode(errors="replace")
    return ""


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


def _runtime_path(job: Job) -> str:
    """A folder that holds only a link to this nemoflow package, for a step run by another interpreter
    (``python=``): putting the package's own parent on its path would bring this interpreter's other
    packages along."""
    import nemoflow

    folder = (job.stage_dir or job.output_dir.parent) / ".nemoflow-runtime"
    link = folder / "nemoflow"
    if not link.exists():
        folder.mkdir(parents=True, exist_ok=True)
        temp = folder / f".nemoflow.{os.getpid()}"
        temp.unlink(missing_ok=True)
        temp.symlink_to(Path(nemoflow.__file__).parent, target_is_directory=True)
        os.replace(temp, link)
    return str(folder)
