"""Run each step as a Ray job on a running cluster, through its dashboard's job API (``JobSubmissionClient``).

The cluster must see this machine's store at the same paths (a cluster on this machine, or a shared file
system): the job writes its outputs straight into the step's folder, as a Slurm job on a shared file system
does. The step's code travels in the job's ``runtime_env``: with a ``packager``, its archive becomes the
``working_dir`` (a zip named by the archive's digest, which Ray uploads only when the cluster lacks it);
without one the job runs in the pipeline's folder, which the cluster shares.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shlex
import sys
import tarfile
import threading
import time
import urllib.parse
import zipfile
from pathlib import Path
from typing import Any

import pydantic

from nemoflow.errors import ExecutorError
from nemoflow.executors.base import Executor, Handle, Job, JobResult, JobState
from nemoflow.executors.packagers import AnyPackager, Package
from nemoflow.executors.staging import RemotePaths, code_package, remote_spec

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
JOB_FILE = "nemoflow-ray-job.json"
CODE_ROOT = "${NEMOFLOW_CODE_ROOT}"  # the job's working_dir on the cluster; known only when the job starts
_NOT_FORWARDED = {"NEMOFLOW_PARENT_PID"}  # the job runs under Ray, not under the build's process
# Ray's words (JobStatus) -> ours
_STATES = {
    "PENDING": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "SUCCEEDED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "STOPPED": JobState.CANCELLED,
}


class RayExecutor(Executor):
    """A Ray job per step on the cluster whose dashboard is at ``address``.

    ``num_cpus``, ``num_gpus``, ``memory`` (bytes) and ``entrypoint_resources`` reserve resources for the job's
    entrypoint (the step itself); ``runtime_env`` is Ray's (pip, env_vars, ...), merged with the code's
    ``working_dir`` and ``env_vars``.
    """

    address: str = DEFAULT_ADDRESS
    runtime_env: dict[str, Any] = {}
    num_cpus: float | None = pydantic.Field(default=None, ge=0)
    num_gpus: float | None = pydantic.Field(default=None, ge=0)
    memory: int | None = pydantic.Field(default=None, ge=0)
    entrypoint_resources: dict[str, float] = {}
    packager: AnyPackager | None = None
    python: str | None = None  # the interpreter on the cluster (default: this one for a cluster on this machine)
    cluster_num_cpus: int | None = pydantic.Field(default=None, ge=0)
    """CPUs of a head that ``nemoflow.ray.RayCluster`` starts on this machine (default: what Ray detects)."""
    cluster_num_gpus: int | None = pydantic.Field(default=None, ge=0)
    poll_interval: float = pydantic.Field(default=0.5, gt=0)

    @pydantic.field_validator("address")
    @classmethod
    def _dashboard_url(cls, value: str) -> str:
        parsed = urllib.parse.urlparse(value if "://" in value else f"http://{value}")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"address must be the dashboard's URL, like {DEFAULT_ADDRESS} (got {value!r})")
        return parsed.geturl().rstrip("/")

    @property
    def on_this_machine(self) -> bool:
        host = urllib.parse.urlparse(self.address).hostname or ""
        return host in ("127.0.0.1", "localhost", "::1")

    # ---- the five verbs -------------------------------------------------------------------------
    def submit(self, job: Job) -> Handle:
        if job.spec is None:
            raise ExecutorError(f"step {job.step!r}: RayExecutor runs nemoflow steps only (no job spec)")
        code = code_package(self.packager, job.cwd, _stage(job), job.experiment_id)
        entrypoint, runtime_env = self._entrypoint(job, code)
        submission_id = ray_job_id(job)
        try:
            submit_job(
                self.address,
                entrypoint=entrypoint,
                submission_id=submission_id,
                runtime_env=runtime_env,
                metadata={"nemoflow_step": job.step, "nemoflow_key": job.key, "nemoflow_run": job.run_id},
                entrypoint_num_cpus=self.num_cpus,
                entrypoint_num_gpus=self.num_gpus,
                entrypoint_memory=self.memory,
                entrypoint_resources=self.entrypoint_resources or None,
            )
        except ExecutorError as exc:
            raise ExecutorError(f"could not submit step {job.step!r} to the Ray cluster at {self.address}: {exc}") from exc
        details = {"address": self.address, "ray_job_id": submission_id, "code_digest": code.digest if code else None}
        return Handle(job, submission_id, native={"written": 0}, details=details)

    def status(self, handle: Handle) -> JobState:
        info = job_info(self.address, handle.job_id)
        return _STATES.get(info["status"], JobState.PENDING)

    def logs(self, handle: Handle, follow: bool = False) -> str:
        try:
            return job_logs(self.address, handle.job_id)
        except ExecutorError:
            return super().logs(handle, follow)

    def cancel(self, handle: Handle) -> None:
        with contextlib.suppress(ExecutorError):
            stop_job(self.address, handle.job_id)

    def wait(self, handle: Handle) -> JobResult:
        try:
            info = self._follow(handle)
        except KeyboardInterrupt:
            self.cancel(handle)
            print(f"nemoflow: stopped Ray job {handle.job_id} (step {handle.job.step!r})", file=sys.stderr)
            raise
        state = _STATES.get(info["status"], JobState.FAILED)
        code = info.get("driver_exit_code")
        if state is JobState.SUCCEEDED:
            return JobResult(JobState.SUCCEEDED, 0, backend_state=info["status"])
        error = f"Ray job {handle.job_id} {info['status']}"
        error += f" with exit code {code}" if code is not None else ""
        if info.get("message") and state is not JobState.CANCELLED:
            error += f": {info['message'].strip().splitlines()[-1]}"
        return JobResult(state, code, error, backend_state=info["status"])

    def attach(self, job: Job, job_id: str, details: dict[str, Any]) -> Handle:
        """A handle on a job submitted earlier, from what the ledger kept of it."""
        return Handle(job, job_id, native={"written": 0}, details=details)

    def preview(self, job: Job) -> str:
        """The job as it would be submitted (``--dry-run``): entrypoint and runtime_env, nothing sent."""
        entrypoint, runtime_env = self._entrypoint(job, None, write=False)
        if self.packager is not None:
            runtime_env["working_dir"] = "<the packager's archive, as a zip named by its digest>"
        return json.dumps({"address": self.address, "entrypoint": entrypoint, "runtime_env": runtime_env}, indent=1)

    # ---- parts ----------------------------------------------------------------------------------
    def _entrypoint(self, job: Job, code: Package | None, *, write: bool = True) -> tuple[str, dict[str, Any]]:
        """The job's shell command and runtime_env; writes the job file the command reads (paths as the cluster sees them)."""
        spec = dict(job.spec or {})
        runtime_env = dict(self.runtime_env)
        env = {k: v for k, v in {**job.env, **self.env_vars}.items() if k not in _NOT_FORWARDED}
        env.setdefault("PYTHONUNBUFFERED", "1")
        if code is not None:
            runtime_env["working_dir"] = str(zipped(code))
            spec = remote_spec(spec, RemotePaths("", str(job.output_dir), mounts={str(code.local_root): CODE_ROOT}))
            cd = ""
        else:
            cd = f"cd {shlex.quote(job.cwd)} && "
        runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), **env}
        job_file = job.output_dir / JOB_FILE
        if write:
            job_file.write_text(json.dumps(spec, indent=1))
        python = self.python or (sys.executable if self.on_this_machine else "python")
        command = f"{shlex.quote(python)} -m nemoflow.run_step {shlex.quote(str(job_file))}"
        return f'{cd}NEMOFLOW_CODE_ROOT="$PWD" {command}', runtime_env

    def _follow(self, handle: Handle) -> dict[str, Any]:
        """Poll the job until it ends, copying its new log text into the step's log (and to the terminal)."""
        while True:
            info = job_info(self.address, handle.job_id)
            self._copy_log(handle)
            if info["status"] in ("SUCCEEDED", "FAILED", "STOPPED"):
                return info
            time.sleep(self.poll_interval)

    def _copy_log(self, handle: Handle) -> None:
        try:
            text = job_logs(self.address, handle.job_id)
        except ExecutorError:
            return
        written = handle.native["written"]
        new = text[written:]
        if not new:
            return
        handle.native["written"] = len(text)
        job = handle.job
        with open(job.log_path, "a", encoding="utf-8") as log:
            log.write(new)
        if job.tail_logs:
            sys.stdout.write("".join(f"[{job.step}] {line}\n" for line in new.rstrip("\n").split("\n")))
            sys.stdout.flush()


def ray_job_id(job: Job) -> str:
    """The job's submission id on the cluster: readable, and unique per run."""
    return f"nemoflow-{job.name}"


def zipped(package: Package) -> Path:
    """``package`` (a tar.gz) as a zip next to it, named by its digest, so Ray uploads identical code once."""
    target = package.path.parent / f"ray-code-{package.digest[:32]}.zip"
    if target.exists():
        return target
    temp = target.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    with tarfile.open(package.path) as tar, zipfile.ZipFile(temp, "w", zipfile.ZIP_DEFLATED) as out:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if member.isfile():
                info = zipfile.ZipInfo(member.name, date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = (member.mode & 0o777) << 16
                out.writestr(info, tar.extractfile(member).read())  # type: ignore[union-attr]
    os.replace(temp, target)
    return target


def _stage(job: Job) -> Path:
    return job.stage_dir or job.output_dir.parent


# ---- Ray's job SDK (imported here only, inside functions) -----------------------------------------------


@functools.cache
def _client(address: str, pid: int) -> Any:
    """One JobSubmissionClient per dashboard and process (forked luigi workers make their own)."""
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise ExecutorError("RayExecutor needs Ray: pip install 'nemoflow[ray]'") from exc
    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # ConnectionError, RuntimeError: Ray's own words say what is wrong
        raise ExecutorError(f"no Ray dashboard answers at {address}: {exc}") from exc


def client(address: str) -> Any:
    return _client(address, os.getpid())


def _call(address: str, what: str, call: Any) -> Any:
    try:
        return call(client(address))
    except ExecutorError:
        raise
    except Exception as exc:
        raise ExecutorError(f"Ray {what} at {address} failed: {exc}") from exc


def submit_job(address: str, **fields: Any) -> str:
    fields = {k: v for k, v in fields.items() if v is not None}
    return _call(address, "job submission", lambda c: c.submit_job(**fields))


def job_info(address: str, job_id: str) -> dict[str, Any]:
    """Ray's JobDetails of ``job_id`` as a dict (status as Ray's word, message, driver_exit_code)."""

    def get(c: Any) -> dict[str, Any]:
        info = c.get_job_info(job_id)
        status = getattr(info.status, "value", str(info.status))
        return {
            "status": status,
            "message": info.message or "",
            "driver_exit_code": getattr(info, "driver_exit_code", None),
            "start_time": info.start_time,
            "end_time": info.end_time,
        }

    return _call(address, f"status of job {job_id}", get)


def job_logs(address: str, job_id: str) -> str:
    return _call(address, f"logs of job {job_id}", lambda c: c.get_job_logs(job_id))


def stop_job(address: str, job_id: str) -> bool:
    return bool(_call(address, f"stop of job {job_id}", lambda c: c.stop_job(job_id)))


def follow_logs(address: str, job_id: str, write: Any) -> None:
    """Call ``write(text)`` with the job's log as it grows, until the job ends."""
    import asyncio

    async def tail() -> None:
        async for chunk in client(address).tail_job_logs(job_id):
            write(chunk)

    try:
        asyncio.run(tail())
    except Exception as exc:
        raise ExecutorError(f"Ray log stream of job {job_id} at {address} failed: {exc}") from exc
