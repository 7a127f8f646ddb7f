"""Run each step as a DGX Cloud workload, through the Run:ai REST API that DGX Cloud exposes.

The workload mounts ``pvcs``; nemoflow keeps the job's folder in ``pvc_nemoflow_dir`` on one of
them, which this machine sees at ``local_nemoflow_dir`` (a shared filesystem, as with Slurm: the
build runs on the cluster, or the volume is mounted here). See :mod:`nemoflow.executors.shared_dir`.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import pydantic

from nemoflow.errors import ExecutorError
from nemoflow.executors.base import Executor, Handle, Job, JobResult, JobState
from nemoflow.executors.packagers import AnyPackager
from nemoflow.executors.rest import CredentialError, RestClient, secret_value
from nemoflow.executors.shared_dir import SharedJob, collect, k8s_name, preview, read_log, stage

SECRET_ENV = "DGXCLOUD_APP_SECRET"
NAME_CHARS = 34  # Run:ai workload names are at most 35 characters
_PENDING = {"Creating", "Initializing", "Resuming", "Pending", "Unknown"}
_RUNNING = {"Running", "Updating"}
_STOPPED = {"Stopped", "Stopping", "Deleting", "Deleted", "Terminating"}
_tokens: dict[tuple[str, str], str] = {}  # (base_url, app_id) -> bearer token, per process
_lock = threading.Lock()


class DGXCloudExecutor(Executor):
    """A Run:ai training workload per step (a distributed one when ``nodes > 1``).

    Attributes:
        base_url: the Run:ai API, ``https://<tenant>.run.ai/api/v1`` (or your DGX Cloud endpoint).
        app_id: the application's client id.
        app_secret: its secret; masked wherever the executor is recorded. None: the ``DGXCLOUD_APP_SECRET``
            environment variable.
        project_name: the Run:ai project the workload runs in.
        container_image: the image; it needs Python and the step's packages (nemoflow's source is shipped).
        nodes: workers of the workload; > 1 makes a distributed workload of ``distributed_framework``.
        gpus_per_node: GPUs each worker requests.
        pvcs: Run:ai PVC entries, ``{"claimName": ..., "path": ...}`` (``existingPvc`` is set to True when absent).
        pvc_nemoflow_dir: nemoflow's folder as the workload sees it; under one PVC's ``path``.
        local_nemoflow_dir: that folder as this machine sees it (None: the same path).
        custom_spec: merged last into the workload's ``spec``.
        packager: ships the code; None: only the pipeline file travels.
        python: the interpreter in the image.
    """

    base_url: str
    app_id: str
    app_secret: pydantic.SecretStr | None = None
    project_name: str
    container_image: str
    nodes: int = pydantic.Field(default=1, ge=1)
    gpus_per_node: int = pydantic.Field(default=0, ge=0)
    nprocs_per_node: int = pydantic.Field(default=1, ge=1)
    pvcs: list[dict[str, Any]] = []
    pvc_nemoflow_dir: str
    local_nemoflow_dir: str | None = None
    custom_spec: dict[str, Any] = {}
    distributed_framework: str = "PyTorch"
    packager: AnyPackager | None = None
    python: str = "python3"
    poll_interval: float = pydantic.Field(default=10.0, gt=0)
    retries: int = pydantic.Field(default=5, ge=0)
    backoff: float = pydantic.Field(default=1.0, ge=0)

    @pydantic.field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"base_url {value!r} is not an http(s) URL (e.g. 'https://<tenant>.run.ai/api/v1')")
        return value.rstrip("/")

    @pydantic.field_validator("app_id", "project_name", "container_image")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @pydantic.field_validator("pvcs")
    @classmethod
    def _pvcs(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for pvc in value:
            if not isinstance(pvc.get("claimName"), str) or not str(pvc.get("path", "")).startswith("/"):
                raise ValueError(f"bad PVC {pvc!r}: each needs 'claimName' and an absolute 'path'")
        return value

    @pydantic.model_validator(mode="after")
    def _nemoflow_dir_on_a_pvc(self) -> DGXCloudExecutor:
        folder = posixpath.normpath(self.pvc_nemoflow_dir)
        if not any(_under(folder, posixpath.normpath(pvc["path"])) for pvc in self.pvcs):
            raise ValueError(
                f"pvc_nemoflow_dir {self.pvc_nemoflow_dir!r} is on none of the pvcs "
                f"({[p['path'] for p in self.pvcs]}): add the PVC that holds it, or change pvc_nemoflow_dir"
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
        project_id, cluster_id = self.project_and_cluster(client)
        shared = stage(
            job,
            remote_dir=self.pvc_nemoflow_dir,
            local_dir=self.local_nemoflow_dir or self.pvc_nemoflow_dir,
            packager=self.packager,
            python=self.python,
            env_vars=self.env_vars,
        )
        payload = self.workload(k8s_name(job.name, NAME_CHARS), project_id, cluster_id, shared)
        answer = client.request("POST", f"workloads/{self._kind()}", json=payload)
        workload_id = (answer or {}).get("workloadId") if isinstance(answer, dict) else None
        if not workload_id:
            raise ExecutorError(f"DGX Cloud did not give a workload id for step {job.step!r}: {answer!r}")
        details = {"workload": payload["name"], "kind": self._kind(), **shared.details()}
        return Handle(job, workload_id, native=_Running(shared), details=details)

    def preview(self, job: Job) -> str:
        """The workload ``submit`` would create for ``job`` (``--dry-run``): no request is made, nothing written."""
        shared = preview(
            job, remote_dir=self.pvc_nemoflow_dir, packager=self.packager, python=self.python, env_vars=self.env_vars
        )
        body = self.workload(k8s_name(job.name, NAME_CHARS), f"<id of {self.project_name}>", "<its cluster id>", shared)
        return f"# POST {self.base_url}/workloads/{self._kind()}\n{json.dumps(body, indent=1)}\n"

    def status(self, handle: Handle) -> JobState:
        running: _Running = handle.native
        if running.result is not None:
            return running.result.state
        return self._state(self.phase(handle.job_id), running.cancelled)

    def logs(self, handle: Handle, follow: bool = False) -> str:
        running: _Running = handle.native
        return read_log(running.shared)

    def cancel(self, handle: Handle) -> None:
        if isinstance(handle.native, _Running):
            handle.native.cancelled = True
        self.delete(handle.job_id)

    def wait(self, handle: Handle) -> JobResult:
        running: _Running = handle.native
        try:
            while True:
                phase = self.phase(handle.job_id)
                state = self._state(phase, running.cancelled)
                if state.finished:
                    break
                time.sleep(self.poll_interval)
        except KeyboardInterrupt:
            self.cancel(handle)
            print(f"nemoflow: deleted DGX Cloud workload {handle.job_id} (step {handle.job.step!r})", file=sys.stderr)
            raise
        code = collect(running.shared, handle.job, state is JobState.SUCCEEDED)
        if state is JobState.SUCCEEDED:
            result = JobResult(state, 0, backend_state=phase)
        else:
            why = f"DGX Cloud workload {handle.job_id} {phase}" + (f" with exit code {code}" if code else "")
            result = JobResult(state, code, why, backend_state=phase)
        running.result = result
        return result

    # ---- the REST calls ---------------------------------------------------------------------------
    def client(self) -> RestClient:
        """A client of ``base_url`` that authenticates with a token made from app_id/app_secret."""
        return RestClient(
            self.base_url,
            service="DGX Cloud",
            credential=f"app_id / app_secret (or {SECRET_ENV}) for {self.base_url}",
            auth=self._bearer,
            retries=self.retries,
            backoff=self.backoff,
        )

    def token(self, *, renew: bool = False) -> str:
        """A bearer token for app_id/app_secret (``POST /token``), made once per process unless ``renew``."""
        marker = (self.base_url, self.app_id)
        with _lock:
            if renew or marker not in _tokens:
                secret = secret_value(self.app_secret, SECRET_ENV, "app_secret", "DGXCloudExecutor")
                body = {"grantType": "client_credentials", "clientId": self.app_id, "clientSecret": secret}
                client = RestClient(
                    self.base_url,
                    service="DGX Cloud",
                    credential=f"app_id / app_secret (or {SECRET_ENV}) for {self.base_url}",
                    retries=self.retries,
                    backoff=self.backoff,
                )
                answer = client.request("POST", "token", json=body, auth=False)
                token = answer.get("accessToken") if isinstance(answer, dict) else None
                if not token:
                    raise ExecutorError(f"DGX Cloud: POST {self.base_url}/token gave no accessToken")
                _tokens[marker] = token
            return _tokens[marker]

    def project_and_cluster(self, client: RestClient) -> tuple[str, str]:
        """The ids of ``project_name`` and of its cluster (``GET /org-unit/projects``)."""
        answer = self._call(client, "GET", "org-unit/projects")
        projects = answer.get("projects", []) if isinstance(answer, dict) else []
        for project in projects:
            if project.get("name") == self.project_name:
                return str(project["id"]), str(project["clusterId"])
        known = ", ".join(sorted(str(p.get("name")) for p in projects)) or "none"
        raise ExecutorError(f"DGX Cloud has no project {self.project_name!r} for app {self.app_id!r} (known: {known})")

    def workload(self, name: str, project_id: str, cluster_id: str, shared: SharedJob) -> dict[str, Any]:
        """The body of ``POST /workloads/trainings`` (or ``/workloads/distributed`` when ``nodes > 1``)."""
        command, *args = shared.command
        spec: dict[str, Any] = {
            "command": command,
            "args": shlex.join(args),
            "image": self.container_image,
            "compute": {"gpuDevicesRequest": self.gpus_per_node, "largeShmRequest": True},
            "storage": {"pvc": [{"existingPvc": True, **pvc} for pvc in self.pvcs]},
            "environmentVariables": [{"name": k, "value": v} for k, v in shared.env.items()],
        }
        if self.nodes > 1:
            spec.update(
                distributedFramework=self.distributed_framework,
                minReplicas=self.nodes,
                maxReplicas=self.nodes,
                numWorkers=self.nodes,
            )
        spec.update(self.custom_spec)
        return {
            "name": name,
            "useGivenNameAsPrefix": True,
            "projectId": project_id,
            "clusterId": cluster_id,
            "spec": spec,
        }

    def phase(self, workload_id: str) -> str:
        """The workload's ``actualPhase`` (``GET /workloads/<kind>/<id>``)."""
        try:
            answer = self._call(self.client(), "GET", f"workloads/{self._kind()}/{workload_id}")
        except ExecutorError as exc:
            if "HTTP 404" not in str(exc):
                raise
            return "Deleted"  # a deleted workload is gone from the API
        phase = (answer.get("actualPhase") or answer.get("phase")) if isinstance(answer, dict) else None
        return str(phase or "Unknown")

    def delete(self, workload_id: str) -> None:
        """Delete the workload (``DELETE /workloads/<kind>/<id>``); one already gone is fine."""
        try:
            self._call(self.client(), "DELETE", f"workloads/{self._kind()}/{workload_id}")
        except ExecutorError as exc:
            if "HTTP 404" not in str(exc):
                raise

    def _call(self, client: RestClient, method: str, path: str, **kwargs: Any) -> Any:
        """``client.request`` with the token renewed once when the API says it expired (401)."""
        try:
            return client.request(method, path, **kwargs)
        except CredentialError as exc:
            if "HTTP 401" not in str(exc):
                raise
            self.token(renew=True)
            return client.request(method, path, **kwargs)

    def _bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def _kind(self) -> str:
        return "distributed" if self.nodes > 1 else "trainings"

    @staticmethod
    def _state(phase: str, cancelled: bool) -> JobState:
        if phase in _PENDING:
            return JobState.PENDING
        if phase in _RUNNING:
            return JobState.RUNNING
        if phase == "Completed":
            return JobState.SUCCEEDED
        if phase in _STOPPED and cancelled:
            return JobState.CANCELLED
        return JobState.FAILED  # Failed, Degraded, or stopped by someone else


@dataclass
class _Running:
    shared: SharedJob
    cancelled: bool = False
    result: JobResult | None = None


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")
