"""Run each step as a Slurm job: on the login node (``LocalTunnel``) or from a laptop (``SSHTunnel``)."""

from __future__ import annotations

import dataclasses
import json
import os
import posixpath
import shlex
import sys
import time as _time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import pydantic

from nemoflow.errors import ExecutorError
from nemoflow.executors import remote
from nemoflow.executors.base import Executor, Handle, Job, JobResult, JobState
from nemoflow.executors.macros import ExecutorMacros
from nemoflow.executors.packagers import OptionalPackager
from nemoflow.executors.slurm_poll import SlurmState, job_state, poller_for
from nemoflow.executors.slurm_script import render_script
from nemoflow.executors.staging import RemotePaths, code_package, remote_spec, run_command, run_env, runtime_package
from nemoflow.executors.tunnels import AnyTunnel, LocalTunnel, SSHTunnel

SBATCH_FILE = "nemoflow-sbatch.sh"
_NOT_FORWARDED = {"NEMOFLOW_PARENT_PID", "NEMOFLOW_OUTPUT_DIR"}  # the job does not follow the build's process


@dataclass
class SlurmJob:
    """What the build knows of one submitted job: where it lives on the cluster."""

    paths: RemotePaths
    shared: bool
    script: str
    code_digest: str | None = None
    inputs_there: list[str] = dataclasses.field(default_factory=list)  # upstream outputs already on the cluster

    def details(self) -> dict[str, Any]:
        return {
            "root": self.paths.root,
            "output_dir": self.paths.output_dir,
            "shared": self.shared,
            "code_digest": self.code_digest,
        }


class SlurmExecutor(Executor):
    """A Slurm job per step, with NeMo Run's fields; ``tunnel`` says how the cluster is reached.

    With a shared filesystem (the default on the login node) the job writes straight into the store;
    otherwise its inputs are uploaded and its outputs fetched back through the tunnel.
    """

    account: str | None = None
    partition: str | None = None
    qos: str | None = None
    nodes: int = 1
    ntasks_per_node: int = 1
    gpus_per_node: int | None = None
    gpus_per_task: int | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    time: str | None = None
    exclusive: bool | str | None = None  # True: --exclusive; a string: --exclusive=<it> (user, mcs, topo)
    array: str | None = None
    job_name_prefix: str | None = None
    additional_parameters: dict[str, Any] = {}
    dependency_type: Literal["afterok", "afterany"] = "afterok"
    container_image: str | None = None
    container_mounts: list[str] = []
    packager: OptionalPackager = None
    torchrun_nproc_per_node: int | None = pydantic.Field(default=None, ge=1)
    """Processes torchrun starts per node; default: see :meth:`nproc_per_node`."""
    launcher_args: list[str] = []  # more arguments for the launcher (torchrun's --max_restarts=3, ...)
    tunnel: AnyTunnel = pydantic.Field(default_factory=LocalTunnel)
    python: str | None = None  # the interpreter on the cluster (default: this one on the login node, python3 over SSH)
    shared_filesystem: bool | None = None  # the store's paths are the same there (default: True for LocalTunnel)
    poll_interval: float = 2.0
    ray_cluster: bool = False
    """Start a Ray cluster inside the step's job (the head on its first node, a worker on each other node) and
    run the step on the head with ``RAY_ADDRESS`` set, so ``ray.init()`` in the step attaches to it."""
    ray_ready_timeout: float = pydantic.Field(default=600, gt=0)

    HEAD_NODE_IP_VAR: ClassVar[str] = "head_node_ip"
    NPROC_PER_NODE_VAR: ClassVar[str] = "SLURM_NTASKS_PER_NODE"
    NUM_NODES_VAR: ClassVar[str] = "SLURM_NNODES"
    NODE_RANK_VAR: ClassVar[str] = "SLURM_NODEID"
    HET_GROUP_HOST_VAR: ClassVar[str] = "het_group_host"

    # ---- NeMo Run's helpers -----------------------------------------------------------------------
    def assign(self, exp_id: str, exp_dir: str, task_id: str, task_dir: str) -> None:
        self._assign_dirs(exp_id, exp_dir, task_dir)

    def nnodes(self) -> int:
        return self.nodes

    def nproc_per_node(self) -> int:
        """``torchrun_nproc_per_node``, else ``gpus_per_node`` (with one task per node), else
        ``gpus_per_task``, else ``ntasks_per_node``."""
        if self.torchrun_nproc_per_node:
            return self.torchrun_nproc_per_node
        if self.gpus_per_node and self.ntasks_per_node == 1:
            return self.gpus_per_node
        if self.gpus_per_task:
            return self.gpus_per_task
        return self.ntasks_per_node

    def macro_values(self) -> ExecutorMacros:
        return ExecutorMacros(
            head_node_ip_var=self.HEAD_NODE_IP_VAR,
            nproc_per_node_var=self.NPROC_PER_NODE_VAR,
            num_nodes_var=self.NUM_NODES_VAR,
            node_rank_var=self.NODE_RANK_VAR,
            het_group_host_var=self.HET_GROUP_HOST_VAR,
        )

    # ---- the five verbs -------------------------------------------------------------------------
    def submit(self, job: Job) -> Handle:
        return self.submit_after(job, after=())

    def submit_after(
        self, job: Job, *, after: tuple[str, ...] | list[str], inputs: dict[str, str] | None = None
    ) -> Handle:
        """Submit ``job`` to start when the Slurm jobs ``after`` end (``dependency_type``).

        ``inputs`` names upstream outputs already on the cluster (step name -> folder there): the
        output folders of the jobs it comes after, which do not exist here yet.
        """
        slurm_job = self.stage(job, after=after, inputs=inputs or {})
        answer = self._send(job, slurm_job)
        job_id = answer.strip().splitlines()[-1].split(";")[0] if answer.strip() else ""
        if not job_id.isdigit():
            raise ExecutorError(f"sbatch did not give a job id for step {job.step!r}: {answer.strip()!r}")
        return Handle(job, job_id, native=slurm_job, details={"tunnel": self.tunnel.key, **slurm_job.details()})

    def status(self, handle: Handle) -> JobState:
        state = job_state(self.tunnel, self.poll_interval, handle.job_id)
        return state.state if state else JobState.PENDING

    def cancel(self, handle: Handle) -> None:
        self.tunnel.run(f"scancel {shlex.quote(handle.job_id)}", check=False)

    def logs(self, handle: Handle, follow: bool = False) -> str:
        slurm_job: SlurmJob = handle.native
        if slurm_job.shared or not isinstance(self.tunnel, SSHTunnel):
            return super().logs(handle, follow)
        return self.tunnel.run(f"cat {shlex.quote(slurm_job.paths.log_file)}", check=False).stdout

    def wait(self, handle: Handle) -> JobResult:
        try:
            final = self._follow(handle)
        except KeyboardInterrupt:
            self.cancel(handle)
            print(f"nemoflow: cancelled Slurm job {handle.job_id} (step {handle.job.step!r})", file=sys.stderr)
            raise
        return self.collect(handle, final)

    def attach(self, job: Job, job_id: str, details: dict[str, Any]) -> Handle:
        """A handle on a job submitted earlier (by a detached build), from what the ledger kept of it."""
        paths = RemotePaths(details["root"], details["output_dir"])
        return Handle(
            job, job_id, native=SlurmJob(paths, details["shared"], "", details.get("code_digest")), details=details
        )

    def states(self, job_ids: list[str]) -> dict[str, SlurmState]:
        """The state of each of ``job_ids`` on this cluster, in one query."""
        return poller_for(self.tunnel, self.poll_interval).states(job_ids)

    # ---- parts ----------------------------------------------------------------------------------
    def collect(self, handle: Handle, final: SlurmState) -> JobResult:
        """Bring the finished job's log and outputs back; its result as the cluster reports it."""
        slurm_job: SlurmJob = handle.native
        job = handle.job
        if not slurm_job.shared:
            job.log_path.parent.mkdir(parents=True, exist_ok=True)
            remote.fetch_file(self.tunnel, slurm_job.paths.log_file, job.log_path)
            if final.state is JobState.SUCCEEDED:
                remote.fetch_folder(self.tunnel, slurm_job.paths.output_dir, job.output_dir, _stage(job))
        if final.state is JobState.SUCCEEDED:
            return JobResult(JobState.SUCCEEDED, 0, backend_state=final.slurm)
        if final.signal:
            error = f"Slurm job {handle.job_id} {final.slurm} (signal {final.signal})"
        else:
            error = f"Slurm job {handle.job_id} {final.slurm} with exit code {final.exit_code}"
        return JobResult(final.state, final.exit_code, error, backend_state=final.slurm)

    def _follow(self, handle: Handle) -> SlurmState:
        unseen = 0
        while True:
            state = job_state(self.tunnel, self.poll_interval, handle.job_id)
            if state is not None and state.state.finished:
                return state
            unseen = unseen + 1 if state is None else 0
            if unseen * self.poll_interval > 120:  # neither sacct nor squeue knows it
                return SlurmState("UNKNOWN", JobState.FAILED, None)
            _time.sleep(self.poll_interval)

    def stage(
        self, job: Job, *, after: tuple[str, ...] | list[str] = (), inputs: dict[str, str] | None = None
    ) -> SlurmJob:
        """Where the job goes on the cluster, its packages there, and its sbatch script (saved with its log)."""
        if job.spec is None:
            raise ExecutorError(f"step {job.step!r}: SlurmExecutor runs nemoflow steps only (no job spec)")
        job_dir = self.tunnel.expand_path(self.tunnel.job_dir)
        paths, code_digest = self._paths(job, job_dir, inputs or {}, upload=True)
        script = self._script(job, paths, after)
        (job.output_dir / SBATCH_FILE).write_text(script)
        return SlurmJob(paths, self._shared(), script, code_digest, sorted(inputs or {}))

    def preview(self, job: Job) -> str:
        """The sbatch script ``job`` would be submitted with, made without touching the cluster (``--dry-run``)."""
        job_dir = self.tunnel.job_dir
        if isinstance(self.tunnel, LocalTunnel):
            job_dir = self.tunnel.expand_path(job_dir)  # this machine's home: no cluster to ask
        elif job_dir == "~" or job_dir.startswith("~/"):
            job_dir = "$HOME" + job_dir[1:]  # the cluster's home, expanded when the script runs
        paths, _ = self._paths(job, job_dir, {}, upload=False)
        return self._script(job, paths, (), preview=True)

    def _script(
        self, job: Job, paths: RemotePaths, after: tuple[str, ...] | list[str], *, preview: bool = False
    ) -> str:
        env = {k: v for k, v in {**job.env, **self.env_vars}.items() if k not in _NOT_FORWARDED}
        header = f"nemoflow step {job.step!r}, key {job.key}, run {job.run_id or '(dry run)'}"
        header += f"\nre-submit by hand with: sbatch {paths.root}/{SBATCH_FILE}"
        if self.ray_cluster:
            return self._ray_script(job, paths, after, header, env)
        return render_script(
            self,
            header=header,
            job_name=job.name,
            log_file=str(job.log_path) if self._shared() else paths.log_file,
            workdir=remote_spec(job.spec or {}, paths)["workdir"],
            command=run_command(self._python(), paths),
            env={**run_env(paths), **env},
            after=list(after),
            mounts=[f"{paths.root}:{paths.root}"] if self.container_image else [],
            preview=preview,
        )

    def _ray_script(
        self, job: Job, paths: RemotePaths, after: tuple[str, ...] | list[str], header: str, env: dict[str, str]
    ) -> str:
        from nemoflow.executors.slurm_ray import cluster_script

        if self.launcher is not None or self.container_image:
            raise ExecutorError(
                f"step {job.step!r}: ray_cluster=True runs the step as the driver of its own Ray cluster; "
                "drop launcher/container_image (Ray starts the processes on every node)"
            )
        return cluster_script(
            self,
            name=job.step,
            job_name=job.name,
            cluster_dir=paths.root,
            log_file=str(job.log_path) if self._shared() else paths.log_file,
            python=self._python(),
            ready_timeout=self.ray_ready_timeout,
            env={**run_env(paths), **env},
            command=shlex.join(run_command(self._python(), paths)),
            workdir=remote_spec(job.spec or {}, paths)["workdir"],
            after=list(after),
            header=header,
        )

    def _paths(self, job: Job, job_dir: str, known: dict[str, str], *, upload: bool) -> tuple[RemotePaths, str | None]:
        """The job's folders on the cluster; with ``upload``, nemoflow's runtime and the code are put there."""
        root = posixpath.join(job_dir, job.experiment_id or "adhoc", job.name)
        shared = self._shared()
        runtime_dir = posixpath.join(job_dir, ".nemoflow", "runtime-${NEMOFLOW_RUNTIME_DIGEST}")
        if upload:
            runtime = runtime_package(_stage(job))
            runtime_dir = posixpath.join(job_dir, ".nemoflow", f"runtime-{runtime.digest[:16]}")
            remote.ensure_unpacked(self.tunnel, runtime, runtime_dir)
        mounts: dict[str, str] = {}
        code = code_package(self.packager, job.cwd, _stage(job), job.experiment_id) if upload else None
        if code is not None:
            code_dir = posixpath.join(job_dir, ".nemoflow", f"code-{code.digest[:16]}")
            remote.ensure_unpacked(self.tunnel, code, code_dir)
            mounts[str(code.local_root)] = code_dir
        elif self.packager is not None:
            mounts[job.cwd] = posixpath.join(job_dir, ".nemoflow", "code-${NEMOFLOW_CODE_DIGEST}")
        elif not shared:
            mounts[job.cwd] = posixpath.join(root, "code")
            pipeline = (job.spec or {}).get("pipeline")
            if pipeline and not _inside(pipeline["file"], job.cwd):
                mounts[str(Path(pipeline["file"]).parent)] = posixpath.join(root, "pipeline")
        digest = code.digest if code else None
        if shared:
            return RemotePaths(root, str(job.output_dir), runtime_dir, mounts), digest
        inputs = {n: known.get(n) or posixpath.join(root, "inputs", n) for n in (job.spec or {})["upstream_dirs"]}
        return RemotePaths(root, posixpath.join(root, "output"), runtime_dir, mounts, inputs), digest

    def _send(self, job: Job, slurm_job: SlurmJob) -> str:
        paths = slurm_job.paths
        files = {SBATCH_FILE: slurm_job.script.encode()}
        files["nemoflow-job.json"] = json.dumps(remote_spec(job.spec or {}, paths), indent=1).encode()
        folders: dict[str, str] = {}
        if not slurm_job.shared:
            upstream = (job.spec or {})["upstream_dirs"].items()
            folders = {f"inputs/{n}": d for n, d in upstream if n not in slurm_job.inputs_there}
            folders.update(_shipped_code(job, paths))
        mkdir = f"mkdir -p {shlex.quote(paths.output_dir)}"
        sbatch = f"sbatch --parsable {shlex.quote(posixpath.join(paths.root, SBATCH_FILE))}"
        try:
            return remote.send_bundle(
                self.tunnel,
                paths.root,
                files=files,
                folders=folders,
                stage_dir=_stage(job),
                then=f"{mkdir} && {sbatch}",
            )
        except ExecutorError as exc:
            raise ExecutorError(f"could not submit step {job.step!r} to Slurm: {exc}") from exc

    def _shared(self) -> bool:
        return self.shared_filesystem if self.shared_filesystem is not None else isinstance(self.tunnel, LocalTunnel)

    def _python(self) -> str:
        if self.python:
            return self.python
        return sys.executable if isinstance(self.tunnel, LocalTunnel) else "python3"


def _stage(job: Job) -> Path:
    return job.stage_dir or job.output_dir.parent


def _inside(path: str, folder: str) -> bool:
    return not os.path.relpath(path, folder).startswith("..")


def _shipped_code(job: Job, paths: RemotePaths) -> dict[str, str]:
    """Without a packager (and no shared filesystem) only the pipeline file travels, next to the job."""
    pipeline = (job.spec or {}).get("pipeline")
    if not pipeline:
        return {}
    local = pipeline["file"]
    target = remote_spec(job.spec or {}, paths)["pipeline"]["file"]
    return {posixpath.relpath(target, paths.root): local}
