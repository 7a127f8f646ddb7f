"""Run each step as a DGX Cloud Lepton job, through the workspace's REST API (no leptonai SDK needed).

The job mounts ``mounts``; nemoflow keeps the job's folder in ``nemoflow_dir`` under one of their
``mount_path``, which this machine sees at ``local_nemoflow_dir`` (a shared filesystem, as with
Slurm). See :mod:`nemoflow.executors.shared_dir`.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import sys
import time
from dataclasses import dataclass
from typing import Any

import pydantic

from nemoflow.errors import ExecutorError, UserError
from nemoflow.executors.base import Executor, Handle, Job, JobResult, JobState
from nemoflow.executors.packagers import AnyPackager
from nemoflow.executors.rest import RestClient, secret_value
from nemoflow.executors.shared_dir import SharedJob, collect, k8s_name, preview, read_log, stage

TOKEN_ENV = "LEPTON_WORKSPACE_TOKEN"
URL_ENV = "LEPTON_WORKSPACE_URL"
_STOPPED = {"Stopped", "Stopping", "Deleting", "Deleted"}
_PRIORITY = re.compile(r"^(low|mid|high)-\d{4}$")


class LeptonExecutor(Executor):
    """A Lepton job per step: ``nodes`` replicas of ``container_image`` on ``node_group``.

    Attributes:
        container_image: the image; it needs Python and the step's packages (nemoflow's source is shipped).
        resource_shape: the Lepton resource shape (``"gpu.8xh100-80gb"``, ``"cpu.small"``).
        node_group: the dedicated node group's name.
        nodes: replicas of the job (completions and parallelism).
        gpus_per_node: GPUs per replica (for ``nproc_per_node()``; the shape decides what is allocated).
        mounts: Lepton mounts, ``{"path": ..., "mount_path": ..., "from": ...}``.
        env_vars: plain environment variables.
        secret_vars: environment variable -> the name of a workspace secret holding its value.
        pre_launch_commands: shell commands run before the step, in the job.
        priority: the queue priority class (``"mid-4000"``); None: the workspace's default.
        workspace_url: the workspace API, ``.../api/v2/workspaces/<id>``; None: ``LEPTON_WORKSPACE_URL``.
        workspace_token: the workspace token, masked wherever recorded; None: ``LEPTON_WORKSPACE_TOKEN``.
        nemoflow_dir: nemoflow's folder as the job sees it; under one mount's ``mount_path``.
        local_nemoflow_dir: that folder as this machine sees it (None: the same path).
    """

    container_image: str
    resource_shape: str
    node_group: str
    nodes: int = pydantic.Field(default=1, ge=1)
    gpus_per_node: int = pydantic.Field(default=0, ge=0)
    nprocs_per_node: int = pydantic.Field(default=1, ge=1)
    mounts: list[dict[str, Any]] = []
    secret_vars: dict[str, str] = {}
    pre_launch_commands: list[str] = []
    priority: str | None = None
    workspace_url: str | None = None
    workspace_token: pydantic.SecretStr | None = None
    nemoflow_dir: str
    local_nemoflow_dir: str | None = None
    shared_memory_size: int = pydantic.Field(default=65536, ge=0)
    custom_spec: dict[str, Any] = {}
    packager: AnyPackager | None = None
    python: str = "python3"
    poll_interval: float = pydantic.Field(default=10.0, gt=0)
    retries: int = pydantic.Field(default=5, ge=0)
    backoff: float = pydantic.Field(default=1.0, ge=0)

    @pydantic.field_validator("container_image", "resource_shape", "node_group")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @pydantic.field_validator("workspace_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"workspace_url {value!r} is not an http(s) URL")
        return value.rstrip("/") if value else value

    @pydantic.field_validator("mounts")
    @classmethod
    def _mounts(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for mount in value:
            if not all(isinstance(mount.get(k), str) and mount[k] for k in ("path", "mount_path")):
                raise ValueError(f"bad mount {mount!r}: each needs a 'path' and a 'mount_path'")
        return value

    @pydantic.field_validator("priority")
    @classmethod
    def _priority(cls, value: str | None) -> str | None:
        if value is not None and not _PRIORITY.match(value):
            raise ValueError(f"priority {value!r} is not a Lepton priority class such as 'low-1000' or 'mid-4000'")
        return value

    @pydantic.model_validator(mode="after")
    def _nemoflow_dir_on_a_mount(self) -> LeptonExecutor:
        folder = posixpath.normpath(self.nemoflow_dir)
        paths = [posixpath.normpath(m["mount_path"]) for m in self.mounts]
        if not any(folder == p or folder.startswith(p.rstrip("/") + "/") for p in paths):
            raise ValueError(
                f"nemoflow_dir {self.nemoflow_dir!r} is under none of the mounts' mount_path ({paths}): "
                "add the mount that holds it, or change nemoflow_dir"
            )
        return self

    # ---- NeMo Run's helpers -----------------------------------------------------------------------
    def nnodes(self) -> int:
        return self.nodes

    def nproc_per_node(self) -> int:
        return self.gpus_per_node or self.nprocs_per_node

    def assign(self, exp_id: str, exp_dir: str, task_id: str, task_dir: str) -> None:
        assign_dirs = getattr(self, "_assign_dirs", None)
        if assign_dirs is not None:
            assign_dirs(exp_id, exp_dir, task_dir)

    # ---- the five verbs ---------------------------------------------------------------------------
    def submit(self, job: Job) -> Handle:
        client = self.client()
        group_id, node_ids = self.node_group_ids(client)
        shared = stage(
            job,
            remote_dir=self.nemoflow_dir,
            local_dir=self.local_nemoflow_dir or self.nemoflow_dir,
            packager=self.packager,
            python=self.python,
            env_vars=self.env_vars,
            pre_launch=self.pre_launch_commands,
        )
        body = self.job_body(k8s_name(job.name), group_id, node_ids, shared)
        answer = client.request("POST", "jobs", json=body)
        job_id = ((answer or {}).get("metadata") or {}).get("id") if isinstance(answer, dict) else None
        if not job_id:
            raise ExecutorError(f"Lepton did not give a job id for step {job.step!r}: {answer!r}")
        return Handle(job, job_id, native=_Running(shared), details={"node_group": self.node_group, **shared.details()})

    def preview(self, job: Job) -> str:
        """The job ``submit`` would create for ``job`` (``--dry-run``): no request is made, nothing written."""
        shared = preview(
            job,
            remote_dir=self.nemoflow_dir,
            packager=self.packager,
            python=self.python,
            env_vars=self.env_vars,
            pre_launch=self.pre_launch_commands,
        )
        body = self.job_body(k8s_name(job.name), f"<id of {self.node_group}>", ["<its nodes>"], shared)
        url = self.workspace_url or f"${URL_ENV}"
        return f"# POST {url}/jobs\n{json.dumps(body, indent=1)}\n"

    def status(self, handle: Handle) -> JobState:
        running: _Running | None = handle.native
        if running is not None and running.result is not None:
            return running.result.state
        return _job_state(self.job_status(handle.job_id), running is not None and running.cancelled)

    def logs(self, handle: Handle, follow: bool = False) -> str:
        """The first replica's log from the API; the shared folder's copy when the job has no replica now."""
        client = self.client()
        replicas = client.request("GET", f"jobs/{handle.job_id}/replicas") or []
        ids = [str((r.get("metadata") or {}).get("id", "")) for r in replicas if isinstance(r, dict)]
        first = [i for i in ids if i.removeprefix(handle.job_id).startswith("-0")] or ids
        if not first:
            return read_log(handle.native.shared) if isinstance(handle.native, _Running) else ""
        response = client.send("GET", f"jobs/{handle.job_id}/replicas/{first[0]}/log")
        return response.text

    def cancel(self, handle: Handle) -> None:
        if isinstance(handle.native, _Running):
            handle.native.cancelled = True
        try:
            self.client().request("DELETE", f"jobs/{handle.job_id}")
        except ExecutorError as exc:
            if "HTTP 404" not in str(exc):
                raise

    def wait(self, handle: Handle) -> JobResult:
        running: _Running = handle.native
        try:
            while True:
                status = self.job_status(handle.job_id)
                state = _job_state(status, running.cancelled)
                if state.finished:
                    break
                time.sleep(self.poll_interval)
        except KeyboardInterrupt:
            self.cancel(handle)
            print(f"nemoflow: deleted Lepton job {handle.job_id} (step {handle.job.step!r})", file=sys.stderr)
            raise
        code = collect(running.shared, handle.job, state is JobState.SUCCEEDED)
        word = str(status.get("state", "Unknown"))
        if state is JobState.SUCCEEDED:
            result = JobResult(state, 0, backend_state=word)
        else:
            why = f"Lepton job {handle.job_id} {word}" + (f" with exit code {code}" if code else "")
            result = JobResult(state, code, why, backend_state=word)
        running.result = result
        return result

    # ---- the REST calls ---------------------------------------------------------------------------
    def client(self) -> RestClient:
        """A client of the workspace API, authenticated by the workspace token."""
        url = self.workspace_url or os.environ.get(URL_ENV, "")
        if not url:
            raise UserError("LeptonExecutor needs workspace_url", hint=f"set workspace_url=... or {URL_ENV}")
        token = secret_value(self.workspace_token, TOKEN_ENV, "workspace_token", "LeptonExecutor")
        return RestClient(
            url,
            service="Lepton",
            credential=f"workspace_token (or {TOKEN_ENV}) for {url}",
            auth=lambda: {"Authorization": f"Bearer {token}"},
            retries=self.retries,
            backoff=self.backoff,
        )

    def node_group_ids(self, client: RestClient) -> tuple[str, list[str]]:
        """The id of ``node_group`` and of its nodes (``GET /dedicated-node-groups``, ``.../<id>/nodes``)."""
        groups = client.request("GET", "dedicated-node-groups") or []
        by_name = {str((g.get("metadata") or {}).get("name")): g for g in groups if isinstance(g, dict)}
        if self.node_group not in by_name:
            known = ", ".join(sorted(by_name)) or "none"
            raise ExecutorError(f"Lepton workspace has no node group {self.node_group!r} (known: {known})")
        group_id = str(by_name[self.node_group]["metadata"]["id"])
        nodes = client.request("GET", f"dedicated-node-groups/{group_id}/nodes") or []
        return group_id, [str((n.get("metadata") or {}).get("id")) for n in nodes if isinstance(n, dict)]

    def job_body(self, name: str, group_id: str, node_ids: list[str], shared: SharedJob) -> dict[str, Any]:
        """The body of ``POST /jobs``."""
        envs: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in shared.env.items()]
        envs += [{"name": k, "value_from": {"secret_name_ref": ref}} for k, ref in self.secret_vars.items()]
        spec: dict[str, Any] = {
            "resource_shape": self.resource_shape,
            "affinity": {"allowed_dedicated_node_groups": [group_id], "allowed_nodes_in_node_group": node_ids},
            "container": {"image": self.container_image, "command": shared.command},
            "shared_memory_size": self.shared_memory_size,
            "completions": self.nodes,
            "parallelism": self.nodes,
            "envs": envs,
            "mounts": self.mounts,
            "intra_job_communication": self.nodes > 1,
        }
        if self.priority:
            spec["queue_config"] = {"priority_class": self.priority}
        spec.update(self.custom_spec)
        return {"metadata": {"id": name, "name": name}, "spec": spec}

    def job_status(self, job_id: str) -> dict[str, Any]:
        """The job's ``status`` object (``GET /jobs/<id>``)."""
        try:
            answer = self.client().request("GET", f"jobs/{job_id}")
        except ExecutorError as exc:
            if "HTTP 404" not in str(exc):
                raise
            return {"state": "Deleted"}  # a deleted job is gone from the API
        status = answer.get("status") if isinstance(answer, dict) else None
        return status if isinstance(status, dict) else {}


@dataclass
class _Running:
    shared: SharedJob
    cancelled: bool = False
    result: JobResult | None = None


def _job_state(status: dict[str, Any], cancelled: bool) -> JobState:
    """A Lepton job status as a JobState; Running counts only once every replica is ready."""
    state = str(status.get("state", "Unknown"))
    if state == "Completed":
        return JobState.SUCCEEDED
    if state == "Failed":
        return JobState.FAILED
    if state in _STOPPED:
        return JobState.CANCELLED if cancelled else JobState.FAILED
    if state == "Running" and int(status.get("ready", 0) or 0) >= int(status.get("active", 0) or 0):
        return JobState.RUNNING
    return JobState.PENDING  # Queueing, Starting, Restarting, Unknown...
