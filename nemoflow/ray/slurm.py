"""A Ray cluster inside a Slurm job, over the ``SlurmExecutor``'s tunnel (``LocalTunnel`` or ``SSHTunnel``).

``RayCluster.start`` submits :func:`nemoflow.executors.slurm_ray.cluster_script` (``--dependency=singleton``:
one live cluster per name and user; a live one is found by its job name and reused), ``stop`` scancels it,
``port_forward`` reaches the head's dashboard through the tunnel. A ``RayJob`` on a named cluster goes through
that dashboard (forwarded for an ``SSHTunnel``); a ``RayJob`` without one is an sbatch job of its own that
starts a cluster, runs the command on its head and ends with it.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nemoflow.errors import ExecutorError
from nemoflow.executors import remote
from nemoflow.executors.base import JobState
from nemoflow.executors.slurm_poll import SlurmState, parse_report, query_command
from nemoflow.executors.slurm_ray import DEFAULT_DASHBOARD_PORT, HEAD_FILE, cluster_script
from nemoflow.executors.tunnels import LocalTunnel
from nemoflow.ray import state
from nemoflow.ray.backend import ClusterBackend, ClusterStatus, JobBackend, JobStatus, close_forward, open_forward
from nemoflow.ray.jobs import DashboardJobBackend, last_lines

if TYPE_CHECKING:
    from nemoflow.executors.slurm import SlurmExecutor

KIND = "clusters"
JOB_KIND = "jobs"
SCRIPT_FILE = "ray-cluster.sbatch"
LOG_FILE = "ray-cluster.log"
_CLUSTER_STATES = {
    JobState.PENDING: "PENDING",
    JobState.RUNNING: "RUNNING",
    JobState.SUCCEEDED: "STOPPED",
    JobState.CANCELLED: "STOPPED",
    JobState.FAILED: "FAILED",
}
_JOB_STATES = {
    JobState.PENDING: "PENDING",
    JobState.RUNNING: "RUNNING",
    JobState.SUCCEEDED: "SUCCEEDED",
    JobState.CANCELLED: "STOPPED",
    JobState.FAILED: "FAILED",
}


class SlurmClusterBackend(ClusterBackend):
    """``RayCluster(name, SlurmExecutor(nodes=..., tunnel=...))``: the cluster is one sbatch job."""

    kind = "slurm"
    executor: SlurmExecutor

    @property
    def job_name(self) -> str:
        return f"{self.executor.job_name_prefix or ''}nemoflow-ray-{_safe(self.name)}"

    def cluster_dir(self) -> str:
        return _folder(self.executor, "ray-clusters", self.name)

    def start(
        self, *, wait_until_ready: bool, timeout: float, dryrun: bool, pre_ray_start_commands: list[str]
    ) -> str | None:
        folder = _folder(self.executor, "ray-clusters", self.name, ask=not dryrun)
        script = self._script(folder, timeout, pre_ray_start_commands)
        if dryrun:
            return script
        job_id = self._live_job_id()
        if job_id is None:  # no live cluster of this name: submit one
            job_id = _submit(self.executor, folder, {SCRIPT_FILE: script})
        state.save(
            KIND, self.name, {"backend": self.kind, "job_id": job_id, "cluster_dir": folder, **_where(self.executor)}
        )
        if wait_until_ready:
            self._wait_ready(job_id, folder, timeout)
        return None

    def status(self) -> ClusterStatus:
        known = state.load(KIND, self.name)
        job_id = known["job_id"] if known else self._live_job_id()
        if job_id is None:
            return ClusterStatus(self.name, self.kind, "NOT_FOUND")
        folder = known["cluster_dir"] if known else self.cluster_dir()
        found = _slurm_state(self.executor, job_id)
        details: dict[str, Any] = {"job_id": job_id, "cluster_dir": folder}
        if found is None:
            return ClusterStatus(self.name, self.kind, "NOT_FOUND", details=details)
        details["slurm_state"] = found.slurm
        word = _CLUSTER_STATES[found.state]
        if word != "RUNNING":
            return ClusterStatus(self.name, self.kind, word, details=details)
        head = _head(self.executor, folder)
        if head is None or head.get("job_id") != job_id:
            return ClusterStatus(self.name, self.kind, "STARTING", details=details)
        dashboard = f"http://{head['host']}:{head['dashboard_port']}"
        here = dashboard if isinstance(self.executor.tunnel, LocalTunnel) else None
        return ClusterStatus(
            self.name, self.kind, "RUNNING", True, here, {**details, "head": head, "dashboard": dashboard}
        )

    def port_forward(self, port: int, target_port: int) -> None:
        head = self._ready_head()
        # Ray's default dashboard port stands for the dashboard, wherever the script put it
        remote_port = head["dashboard_port"] if target_port == DEFAULT_DASHBOARD_PORT else target_port
        open_forward(port, self.executor.tunnel.forward_local(port, remote_port, head["host"]))

    def stop(self) -> None:
        known = state.load(KIND, self.name)
        job_id = known["job_id"] if known else self._live_job_id()
        if job_id is not None:
            _cancel(self.executor, job_id)
        _forget_forward(self.name)
        state.remove(KIND, self.name)

    # ---- parts ----------------------------------------------------------------------------------
    def _script(self, folder: str, timeout: float, pre: list[str]) -> str:
        return cluster_script(
            self.executor,
            name=self.name,
            job_name=self.job_name,
            cluster_dir=folder,
            log_file=posixpath.join(folder, LOG_FILE),
            python=_python(self.executor),
            ready_timeout=timeout,
            pre_ray_start_commands=pre,
        )

    def _live_job_id(self) -> str | None:
        """The job id of a pending or running cluster of this name (this user's), if there is one."""
        found = self.executor.tunnel.run(
            f"squeue -h --me -o '%i|%T' --name={shlex.quote(self.job_name)}", check=False
        ).stdout.split()
        live = [line.split("|")[0] for line in found if line.split("|")[-1] in ("PENDING", "RUNNING", "CONFIGURING")]
        return live[0] if live else None

    def _wait_ready(self, job_id: str, folder: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            found = self.status()
            if found.ready:
                return
            if found.state in ("STOPPED", "FAILED", "NOT_FOUND") and found.details.get("slurm_state"):
                tail = _tail(self.executor, posixpath.join(folder, LOG_FILE), 15)
                raise ExecutorError(
                    f"Ray cluster {self.name!r} (Slurm job {job_id}) ended before it was ready "
                    f"({found.details['slurm_state']}); its log {folder}/{LOG_FILE} ends:\n{tail}"
                )
            if time.monotonic() > deadline:
                raise ExecutorError(
                    f"Ray cluster {self.name!r} (Slurm job {job_id}) was not ready in {timeout:g} s "
                    f"({found.state}); it stays queued or starting: RayCluster.stop() cancels it"
                )
            time.sleep(min(2.0, self.executor.poll_interval))

    def _ready_head(self) -> dict[str, Any]:
        found = self.status()
        if not found.ready:
            raise ExecutorError(f"Ray cluster {self.name!r} is {found.state}, not ready (RayCluster.start)")
        return found.details["head"]


class SlurmJobBackend(JobBackend):
    """``RayJob(name, SlurmExecutor(...))``: on the named cluster's dashboard, or an sbatch job with a cluster
    of its own that runs ``command`` on its head (``RAY_ADDRESS`` set) and ends with it."""

    kind = "slurm"
    executor: SlurmExecutor

    def __init__(self, name: str, executor: Any, cluster_name: str | None) -> None:
        super().__init__(name, executor, cluster_name)
        self.on_cluster = _OnNamedCluster(name, executor, cluster_name) if cluster_name else None

    def start(
        self,
        command: str,
        workdir: str | None,
        runtime_env_yaml: str | None,
        pre_ray_start_commands: list[str],
        dryrun: bool,
    ) -> str | None:
        if self.on_cluster is not None:
            return self.on_cluster.start(command, workdir, runtime_env_yaml, pre_ray_start_commands, dryrun)
        tunnel = self.executor.tunnel
        local = isinstance(tunnel, LocalTunnel)
        folder = _folder(self.executor, "ray-jobs", self.name, ask=not dryrun)
        there = (
            (str(Path(workdir).expanduser().resolve()) if local else posixpath.join(folder, "code"))
            if workdir
            else None
        )
        env_file = None
        files: dict[str, bytes] = {}
        if runtime_env_yaml:
            env_file = posixpath.join(folder, "runtime_env.yaml")
            files["runtime_env.yaml"] = Path(runtime_env_yaml).expanduser().read_bytes()
        script = cluster_script(
            self.executor,
            name=self.name,
            job_name=f"{self.executor.job_name_prefix or ''}nemoflow-rayjob-{_safe(self.name)}",
            cluster_dir=folder,
            log_file=posixpath.join(folder, "job.log"),
            python=_python(self.executor),
            ready_timeout=600,
            pre_ray_start_commands=pre_ray_start_commands,
            command=command,
            workdir=there,
            runtime_env_yaml=env_file,
        )
        if dryrun:
            return script
        files[SCRIPT_FILE] = script.encode()
        folders = {"code": workdir} if workdir and not local else {}
        job_id = _submit(self.executor, folder, files, folders)
        state.save(
            JOB_KIND, self.name, {"backend": self.kind, "job_id": job_id, "folder": folder, **_where(self.executor)}
        )
        return job_id

    def status(self) -> JobStatus:
        if self.on_cluster is not None:
            return self.on_cluster.status()
        known = state.load(JOB_KIND, self.name)
        if known is None:
            return JobStatus(self.name, self.kind, "NOT_FOUND")
        found = _slurm_state(self.executor, known["job_id"])
        if found is None:
            return JobStatus(self.name, self.kind, "PENDING", known["job_id"], "not in the queue yet")
        return JobStatus(
            self.name, self.kind, _JOB_STATES[found.state], known["job_id"], found.slurm, found.exit_code, known
        )

    def logs(self, follow: bool, lines: int) -> str:
        if self.on_cluster is not None:
            return self.on_cluster.logs(follow, lines)
        known = state.load(JOB_KIND, self.name)
        if known is None:
            raise ExecutorError(f"Ray job {self.name!r} has not been started (RayJob.start)")
        log = posixpath.join(known["folder"], "job.log")
        if not follow:
            return _tail(self.executor, log, lines)
        return last_lines(_follow(self.executor, log, lambda: self.status().finished), lines)

    def stop(self) -> None:
        if self.on_cluster is not None:
            self.on_cluster.stop()
            return
        known = state.load(JOB_KIND, self.name)
        if known is not None:
            _cancel(self.executor, known["job_id"])


class _OnNamedCluster(DashboardJobBackend):
    """A job submitted to a running Slurm cluster's dashboard (through a forward of this process over SSH)."""

    kind = "slurm"

    def address(self) -> str:
        assert self.cluster_name is not None
        cluster = SlurmClusterBackend(self.cluster_name, self.executor)
        found = cluster.status()
        if not found.ready:
            raise ExecutorError(
                f"Ray cluster {self.cluster_name!r} is {found.state}, not ready: start it first (RayCluster.start)"
            )
        if found.dashboard:
            return found.dashboard
        port = _FORWARDED.get(self.cluster_name)
        if port is None:
            port = _free_port()
            cluster.port_forward(port, DEFAULT_DASHBOARD_PORT)
            _FORWARDED[self.cluster_name] = port
        return f"http://127.0.0.1:{port}"


_FORWARDED: dict[str, int] = {}  # cluster name -> the local port this process forwards to its dashboard


def _forget_forward(name: str) -> None:
    port = _FORWARDED.pop(name, None)
    if port is not None:
        close_forward(port)


def _folder(executor: SlurmExecutor, kind: str, name: str, ask: bool = True) -> str:
    """Where the cluster's script, log and head file live there; unless ``ask``, with ``~`` left as it is for a
    tunnel that would have to connect to expand it (a dry run)."""
    tunnel = executor.tunnel
    job_dir = tunnel.expand_path(tunnel.job_dir) if ask or isinstance(tunnel, LocalTunnel) else tunnel.job_dir
    return posixpath.join(job_dir, kind, _safe(name))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _python(executor: SlurmExecutor) -> str:
    if executor.python:
        return executor.python
    return sys.executable if isinstance(executor.tunnel, LocalTunnel) else "python3"


def _where(executor: SlurmExecutor) -> dict[str, Any]:
    return {"tunnel": executor.tunnel.key}


def _submit(
    executor: SlurmExecutor, folder: str, files: dict[str, bytes | str], folders: dict[str, str] | None = None
) -> str:
    data = {name: body.encode() if isinstance(body, str) else body for name, body in files.items()}
    sbatch = f"sbatch --parsable {shlex.quote(posixpath.join(folder, SCRIPT_FILE))}"
    try:
        answer = remote.send_bundle(
            executor.tunnel,
            folder,
            files=data,
            folders=folders or {},
            stage_dir=state.state_dir() / "stage",
            then=sbatch,
        )
    except ExecutorError as exc:
        raise ExecutorError(f"could not submit the Ray cluster script {folder}/{SCRIPT_FILE}: {exc}") from exc
    job_id = answer.strip().splitlines()[-1].split(";")[0] if answer.strip() else ""
    if not job_id.isdigit():
        raise ExecutorError(f"sbatch did not give a job id for {folder}/{SCRIPT_FILE}: {answer.strip()!r}")
    return job_id


def _slurm_state(executor: SlurmExecutor, job_id: str) -> SlurmState | None:
    return parse_report(executor.tunnel.run(query_command([job_id]), check=False).stdout).get(job_id)


def _cancel(executor: SlurmExecutor, job_id: str, timeout: float = 60) -> None:
    """scancel, then wait (bounded) until Slurm says the job has ended."""
    executor.tunnel.run(f"scancel {shlex.quote(job_id)}", check=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _slurm_state(executor, job_id)
        if found is None or found.state.finished:
            return
        time.sleep(1)


def _head(executor: SlurmExecutor, folder: str) -> dict[str, Any] | None:
    text = executor.tunnel.run(f"cat {shlex.quote(posixpath.join(folder, HEAD_FILE))}", check=False).stdout
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        return None


def _tail(executor: SlurmExecutor, path: str, lines: int) -> str:
    command = f"cat {shlex.quote(path)}" if lines <= 0 else f"tail -n {int(lines)} {shlex.quote(path)}"
    return executor.tunnel.run(f"{command} 2>/dev/null", check=False).stdout


def _follow(executor: SlurmExecutor, path: str, finished: Any) -> str:
    """Print the log as it grows until ``finished()``; the whole log."""
    seen = 0
    chunks: list[str] = []
    while True:
        done = finished()  # asked before the read, so the last lines are not missed
        text = executor.tunnel.run(f"tail -c +{seen + 1} {shlex.quote(path)} 2>/dev/null", check=False).stdout
        if text:
            chunks.append(text)
            seen += len(text.encode())
            sys.stdout.write(text)
            sys.stdout.flush()
        if done:
            return "".join(chunks)
        time.sleep(max(0.5, min(2.0, executor.poll_interval)))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
