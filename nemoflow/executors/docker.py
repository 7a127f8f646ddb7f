"""Run each step in a Docker container: nemoflow's runtime and the code staged in, outputs bind-mounted out.

The docker SDK is an optional extra (``pip install 'nemoflow[docker]'``); it is imported only here,
inside functions.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from nemoflow.errors import ExecutorError, UserError
from nemoflow.executors.base import Executor, Handle, Job, JobResult, JobState
from nemoflow.executors.docker_options import container_name, port_bindings, ulimit_specs
from nemoflow.executors.launchers import Torchrun, launch_command
from nemoflow.executors.packagers import OptionalPackager, Package
from nemoflow.executors.staging import (
    RemotePaths,
    code_package,
    map_path,
    remote_spec,
    run_command,
    run_env,
    runtime_package,
)

ROOT = "/nemoflow"
JOB_DIR = f"{ROOT}/job"
OUTPUT_DIR = f"{ROOT}/output"
RUNTIME_DIR = f"{ROOT}/runtime"
CODE_DIR = f"{ROOT}/code"
PIPELINE_DIR = f"{ROOT}/pipeline"
INPUTS_DIR = f"{ROOT}/inputs"
_LOCAL_ONLY_ENV = ("NEMOFLOW_PARENT_PID", "NEMOFLOW_OUTPUT_DIR")  # meaningless inside the container
_LOG_JOIN_SECONDS = 10.0  # how long wait() lets the log copier drain after the container ended
_clients: dict[int, Any] = {}  # one docker client per process (a forked worker makes its own)


class DockerExecutor(Executor):
    """A container per step, from an image already on this machine.

    The container runs ``python -m nemoflow.run_step`` with nemoflow's own source mounted at
    ``/nemoflow/runtime`` (the image needs only Python and the step's packages), the code at
    ``/nemoflow/code`` (the packager's archive, or the build's folder mounted read-only), each
    upstream step's outputs read-only at ``/nemoflow/inputs/<step>`` and the step's workspace at
    ``/nemoflow/output``. It runs as the build's user, so the outputs belong to it.

    Attributes:
        container_image: the image (``name:tag``); it must be on this machine unless ``pull``.
        num_gpus: GPUs to request (-1: all of them).
        volumes: extra bind mounts, ``"host:container[:ro|rw]"``.
        ports: published ports, ``"host:container"`` or one number for both sides.
        cpus: CPU limit (fractions allowed).
        memory: memory limit (``"4g"``).
        shm_size: size of ``/dev/shm`` (``"1g"``).
        network: the docker network; None: docker's default.
        runtime: the container runtime (``"nvidia"``); None: docker's default.
        ipc_mode: the IPC namespace (``"host"``, ``"shareable"``, ...); None: docker's default.
        ulimits: ``"name:soft[:hard]"`` limits (``"nofile:1024:2048"``, ``"memlock:-1"``).
        privileged: run the container privileged.
        healthcheck: docker's healthcheck dict (``{"test": [...], "interval": ...}``), as the SDK takes it.
        ntasks_per_node: processes of the step (NeMo Run's field, for ``nproc_per_node()``).
        packager: ships the code as an archive instead of mounting the build's folder.
        additional_kwargs: passed to ``containers.run`` as they are (they win over the fields above).
        python: the interpreter in the image.
        pull: pull the image when it is missing (never done implicitly otherwise).
    """

    container_image: str
    num_gpus: int = 0
    volumes: list[str] = []
    ports: list[int | str] = []
    cpus: float | None = None
    memory: str | None = None
    shm_size: str | None = None
    network: str | None = None
    runtime: str | None = None
    ipc_mode: str | None = None
    ulimits: list[str] = []
    privileged: bool = False
    healthcheck: dict[str, Any] = {}
    ntasks_per_node: int = pydantic.Field(default=1, ge=1)
    packager: OptionalPackager = None
    additional_kwargs: dict[str, Any] = {}
    python: str = "python3"
    pull: bool = False

    @pydantic.field_validator("ports")
    @classmethod
    def _ports(cls, value: list[int | str]) -> list[int | str]:
        port_bindings(value)
        return value

    @pydantic.field_validator("ulimits")
    @classmethod
    def _ulimits(cls, value: list[str]) -> list[str]:
        ulimit_specs(value)
        return value

    @pydantic.field_validator("volumes")
    @classmethod
    def _volumes(cls, value: list[str]) -> list[str]:
        for volume in value:
            parts = volume.split(":")
            if len(parts) not in (2, 3) or not all(parts[:2]) or parts[2:] not in ([], ["ro"], ["rw"]):
                raise ValueError(f"bad volume {volume!r}: use 'host:container', 'host:container:ro' or ':rw'")
        return value

    def assign(self, exp_id: str, exp_dir: str, task_id: str, task_dir: str) -> None:
        self._assign_dirs(exp_id, exp_dir, task_dir)

    def nnodes(self) -> int:
        return 1

    def nproc_per_node(self) -> int:
        return self.ntasks_per_node

    def submit(self, job: Job) -> Handle:
        if job.spec is None or job.stage_dir is None:
            raise ValueError(f"DockerExecutor runs nemoflow steps only: job {job.name!r} has no spec or stage_dir")
        torchrun = isinstance(self.get_launcher(), Torchrun)
        if self.ntasks_per_node > 1 and not torchrun:
            raise UserError(
                f"step {job.step!r}: ntasks_per_node={self.ntasks_per_node} needs a launcher to start the processes",
                hint='set launcher="torchrun" (the image needs torch)',
            )
        client = _client()
        self._ensure_image(client)
        paths, binds, paths_digest = self._stage(job)
        job_file = job.stage_dir / "jobs" / f"{job.name}.json"
        job_file.parent.mkdir(parents=True, exist_ok=True)
        job_file.write_text(json.dumps(remote_spec(job.spec, paths), indent=1))
        binds.append(f"{job_file}:{paths.job_file}:ro")
        kwargs = self._run_kwargs(job, paths, binds)
        with _docker_errors(f"cannot start a container of {self.container_image!r}"):
            container = client.containers.run(self.container_image, self._command(job, paths), **kwargs)
        running = _Running(container, job_file, code_digest=paths_digest)
        running.copier = threading.Thread(target=_copy_logs, args=(container, job), daemon=True)
        running.copier.start()
        details = {"container": container.name, "code_digest": running.code_digest}
        return Handle(job, container.short_id, native=running, details=details)

    def _command(self, job: Job, paths: RemotePaths) -> list[str]:
        """``python -m nemoflow.run_step`` in the container, started by torchrun (one node) with a launcher."""
        return launch_command(
            run_command(self.python, paths),
            self.get_launcher(),
            nnodes=1,
            nproc_per_node=self.ntasks_per_node,
            rdzv_host="127.0.0.1",
            rdzv_id=job.name,
        )

    def status(self, handle: Handle) -> JobState:
        running: _Running = handle.native
        if running.result is not None:
            return running.result.state
        import docker.errors

        try:
            running.container.reload()
        except docker.errors.NotFound:
            return JobState.CANCELLED if running.cancelled else JobState.FAILED
        except docker.errors.DockerException as exc:
            raise ExecutorError(f"docker: cannot inspect container {handle.job_id}: {_message(exc)}") from exc
        state = running.container.attrs.get("State", {})
        return _job_state(state.get("Status", ""), state.get("ExitCode"))

    def cancel(self, handle: Handle) -> None:
        running: _Running = handle.native
        running.cancelled = True
        _remove(running.container)

    def wait(self, handle: Handle) -> JobResult:
        running: _Running = handle.native
        try:
            code = _wait_exit_code(running)
        except KeyboardInterrupt:
            self.cancel(handle)
            raise
        finally:
            if running.copier is not None:
                running.copier.join(_LOG_JOIN_SECONDS)
            _remove(running.container)
            running.job_file.unlink(missing_ok=True)
        if running.cancelled:
            result = JobResult(JobState.CANCELLED, code, "cancelled")
        elif code == 0:
            result = JobResult(JobState.SUCCEEDED, 0)
        else:
            result = JobResult(JobState.FAILED, code, f"exit code {code}")
        running.result = result
        return result

    def _ensure_image(self, client: Any) -> None:
        """The image is on this machine (pulled first with ``pull``), else a UserError naming it."""
        import docker.errors

        try:
            client.images.get(self.container_image)
            return
        except docker.errors.ImageNotFound:
            if not self.pull:
                raise UserError(
                    f"docker image {self.container_image!r} is not on this machine",
                    hint=f"`docker pull {self.container_image}` or `docker build -t {self.container_image} .`, "
                    "or set pull=True",
                ) from None
        except docker.errors.DockerException as exc:
            raise ExecutorError(f"docker: cannot look up image {self.container_image!r}: {_message(exc)}") from exc
        with _docker_errors(f"cannot pull image {self.container_image!r}"):
            client.images.pull(self.container_image)

    def _stage(self, job: Job) -> tuple[RemotePaths, list[str], str | None]:
        """Where the job's files are in the container, and the bind mounts that put them there."""
        assert job.spec is not None and job.stage_dir is not None
        runtime = extract_once(runtime_package(job.stage_dir), job.stage_dir, "runtime")
        package = code_package(self.packager, job.cwd, job.stage_dir, job.experiment_id)
        if package is None:
            local_root, code_dir = job.cwd, job.cwd
        else:
            local_root, code_dir = str(package.local_root), str(extract_once(package, job.stage_dir, "code"))
        mounts = {local_root: CODE_DIR}
        binds = [f"{code_dir}:{CODE_DIR}:ro"]
        pipeline = job.spec.get("pipeline")
        if pipeline and not _is_under(pipeline["file"], local_root):
            folder = os.path.dirname(pipeline["file"])
            mounts[folder] = PIPELINE_DIR
            binds.append(f"{folder}:{PIPELINE_DIR}:ro")
        inputs = {name: f"{INPUTS_DIR}/{name}" for name in job.spec["upstream_dirs"]}
        binds += [f"{folder}:{inputs[name]}:ro" for name, folder in job.spec["upstream_dirs"].items()]
        binds += [f"{job.output_dir}:{OUTPUT_DIR}:rw", f"{runtime}:{RUNTIME_DIR}:ro"]
        paths = RemotePaths(JOB_DIR, OUTPUT_DIR, RUNTIME_DIR, mounts=mounts, inputs=inputs)
        return paths, binds, package.digest if package else None

    def _run_kwargs(self, job: Job, paths: RemotePaths, binds: list[str]) -> dict[str, Any]:
        """The keyword arguments of ``client.containers.run`` for ``job`` (everything but image and command)."""
        kwargs: dict[str, Any] = {
            "detach": True,
            "name": container_name(job.name),
            "working_dir": map_path(job.cwd, paths),
            "environment": self._environment(job, paths),
            "user": f"{os.getuid()}:{os.getgid()}",
            "labels": {"nemoflow.step": job.step, "nemoflow.key": job.key, "nemoflow.run": job.run_id},
            "volumes": [*binds, *self.volumes],
            "stdin_open": False,
            "tty": False,
        }
        if self.num_gpus:
            kwargs["device_requests"] = [{"count": self.num_gpus, "capabilities": [["gpu"]]}]
        if self.ports:
            kwargs["ports"] = port_bindings(self.ports)
        if self.ulimits:
            kwargs["ulimits"] = ulimit_specs(self.ulimits)
        if self.privileged:
            kwargs["privileged"] = True
        if self.healthcheck:
            kwargs["healthcheck"] = self.healthcheck
        optional = {
            "nano_cpus": None if self.cpus is None else int(self.cpus * 1e9),
            "mem_limit": self.memory,
            "shm_size": self.shm_size,
            "network": self.network,
            "runtime": self.runtime,
            "ipc_mode": self.ipc_mode,
        }
        kwargs.update({name: value for name, value in optional.items() if value is not None})
        return {**kwargs, **self.additional_kwargs}

    def _environment(self, job: Job, paths: RemotePaths) -> dict[str, str]:
        """run_env + env_vars + the job's own variables (not those that only make sense on this machine)."""
        ours = run_env(paths)
        user = {**self.env_vars, **{k: v for k, v in job.env.items() if k not in _LOCAL_ONLY_ENV}}
        if "PYTHONPATH" in user and "PYTHONPATH" in ours:  # nemoflow's runtime stays first
            user["PYTHONPATH"] = f"{ours['PYTHONPATH']}:{user['PYTHONPATH']}"
        return {**ours, **user, "NEMOFLOW_OUTPUT_DIR": paths.output_dir}


@dataclass
class _Running:
    """The backend side of a Handle: the container, its log copier and how it ended."""

    container: Any
    job_file: Path
    copier: threading.Thread | None = None
    code_digest: str | None = None
    cancelled: bool = False
    result: JobResult | None = None


def _client() -> Any:
    """This process's docker client (from DOCKER_HOST or the default socket)."""
    if os.getpid() not in _clients:
        try:
            import docker
        except ImportError:
            raise UserError("DockerExecutor needs the docker SDK", hint="pip install 'nemoflow[docker]'") from None
        try:
            _clients[os.getpid()] = docker.from_env()
        except docker.errors.DockerException as exc:
            raise ExecutorError(f"docker: cannot reach the Docker engine: {_message(exc)}") from exc
    return _clients[os.getpid()]


@contextlib.contextmanager
def _docker_errors(what: str) -> Iterator[None]:
    """Turn the docker SDK's errors into ExecutorError with docker's own message."""
    import docker.errors

    try:
        yield
    except docker.errors.DockerException as exc:
        raise ExecutorError(f"docker: {what}: {_message(exc)}") from exc


def _message(exc: Exception) -> str:
    return str(getattr(exc, "explanation", None) or exc)


def _wait_exit_code(running: _Running) -> int | None:
    """The container's exit code (None when it was removed before it could be read)."""
    import docker.errors

    try:
        return int(running.container.wait()["StatusCode"])
    except docker.errors.NotFound:
        if running.cancelled:
            return None
        raise ExecutorError(f"docker: container {running.container.short_id} disappeared") from None
    except docker.errors.DockerException as exc:
        if running.cancelled:
            return None
        raise ExecutorError(f"docker: waiting for container {running.container.short_id}: {_message(exc)}") from exc


def _remove(container: Any) -> None:
    """Kill and remove ``container``; one that is already gone is fine."""
    import docker.errors

    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: its removal is already under way
            raise ExecutorError(f"docker: cannot remove container {container.short_id}: {_message(exc)}") from exc


def _copy_logs(container: Any, job: Job) -> None:
    """Append the container's output to the job's log (and the terminal with ``tail_logs``) until it ends."""
    prefix = f"[{job.step}] ".encode()
    pending = b""
    with open(job.log_path, "ab") as log, contextlib.suppress(Exception):  # a removed container ends the stream
        for chunk in container.logs(stream=True, follow=True):
            log.write(chunk)
            log.flush()
            if job.tail_logs:
                *lines, pending = (pending + chunk).split(b"\n")
                sys.stdout.buffer.write(b"".join(prefix + line + b"\n" for line in lines))
                sys.stdout.flush()
    if job.tail_logs and pending:
        sys.stdout.buffer.write(prefix + pending + b"\n")
        sys.stdout.flush()


def _job_state(status: str, exit_code: int | None) -> JobState:
    """A docker container state as a JobState."""
    if status == "created":
        return JobState.PENDING
    if status in ("running", "paused", "restarting"):
        return JobState.RUNNING
    if status == "exited" and exit_code == 0:
        return JobState.SUCCEEDED
    return JobState.FAILED


def extract_once(package: Package, stage_dir: Path, prefix: str) -> Path:
    """``package`` unpacked at ``stage_dir/<prefix>-<digest16>/``: reused when there, else made atomically."""
    final = stage_dir / f"{prefix}-{package.digest[:16]}"
    if final.is_dir():
        return final
    tmp = Path(tempfile.mkdtemp(prefix=f".{prefix}-", dir=stage_dir))
    try:
        with tarfile.open(package.path, "r:gz") as tar:
            tar.extractall(tmp, filter="data")
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0o700: the container's user may be another one
        os.rename(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not final.is_dir():  # not a concurrent build that staged it first
            raise
    return final


def _is_under(path: str, folder: str) -> bool:
    rel = os.path.relpath(path, folder)
    return not rel.startswith("..") and not os.path.isabs(rel)
