"""``KubernetesExecutor``: each step as one ``batch/v1`` Job, its code and inputs on a volume shared with this
machine.

How code and inputs reach the pod: through a shared volume (a ReadWriteMany PVC, NFS...) that this machine
and the pod both mount **at the same path**, as a Slurm cluster shares its filesystem. The store (its
targets and ``.stage`` folder, where nemoflow's runtime, the packaged code and the job file are unpacked)
must be under one of ``volume_mounts``' ``mountPath`` values, and so must the pipeline's folder unless a
``packager`` ships the code; the step writes its outputs straight into the store. Without such a volume
``submit`` refuses, saying which path is not shared. No upload happens, so nothing is copied twice.

The ``kubernetes`` client is imported only inside functions (here and in ``kube.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Literal

import pydantic

from nemoflow.errors import ExecutorError, UserError
from nemoflow.executors.base import Executor, Handle, Job, JobResult, JobState
from nemoflow.executors.docker import extract_once
from nemoflow.executors.kube import Retry, call, connect
from nemoflow.executors.kube_manifest import job_manifest, validate
from nemoflow.executors.kube_status import STUCK, newest_first, observe
from nemoflow.executors.kuberay import _ENV_NAME, _LABEL, _LABEL_KEY, _LABEL_VALUE, Quantity, _quantity, resource_name
from nemoflow.executors.packagers import AnyPackager
from nemoflow.executors.staging import (
    RemotePaths,
    code_package,
    map_path,
    remote_spec,
    run_command,
    run_env,
    runtime_package,
)

DEFAULT_KUBERNETES_VERSION = "1.33.0"  # the API version manifests are validated for
_LOCAL_ONLY_ENV = ("NEMOFLOW_PARENT_PID", "NEMOFLOW_OUTPUT_DIR")  # meaningless in the pod


class KubernetesExecutor(Executor):
    """A ``batch/v1`` Job per step in ``namespace`` (one pod, ``backoffLimit: 0``), running
    ``python -m nemoflow.run_step`` from ``image``.

    ``cpus`` / ``memory`` are Kubernetes quantities (``"2"``, ``"500m"``, ``"8Gi"``) set as requests and limits,
    ``gpus`` asks for ``nvidia.com/gpu``. ``volumes`` / ``volume_mounts`` are Kubernetes ``Volume`` /
    ``VolumeMount`` objects (camelCase, as in a pod spec); one of them must hold the store at the same path as
    here (see the module's docstring). ``secret_env_vars`` maps a variable to ``"secret-name/key"``: the
    kubelet fills it from the Secret, so the value is never in the manifest, the ledger or a log.
    ``security_context`` is the pod's ``PodSecurityContext`` (e.g. ``{"runAsUser": 1000, "runAsGroup": 1000}``
    so the outputs on the shared volume belong to the build's user).
    ``kubeconfig`` / ``context`` choose the cluster (default: ``$KUBECONFIG`` or ``~/.kube/config``, else the
    in-cluster service account). API calls answered 429/5xx or not answered are tried ``api_attempts`` times
    with a doubling wait from ``api_backoff`` seconds (or the server's ``Retry-After``).
    """

    namespace: str = "default"
    image: str
    cpus: Quantity | None = None
    memory: Quantity | None = None
    gpus: int = pydantic.Field(default=0, ge=0)
    volumes: list[dict[str, Any]] = []
    volume_mounts: list[dict[str, Any]] = []
    service_account: str | None = None
    node_selector: dict[str, str] = {}
    tolerations: list[dict[str, Any]] = []
    labels: dict[str, str] = {}
    image_pull_secrets: list[str] = []
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    packager: AnyPackager | None = None
    ttl_seconds_after_finished: int | None = pydantic.Field(default=3600, ge=0)
    active_deadline_seconds: int | None = pydantic.Field(default=None, gt=0)
    secret_env_vars: dict[str, str] = {}
    security_context: dict[str, Any] = {}
    python: str = "python3"
    kubeconfig: str | None = None
    context: str | None = None
    kubernetes_version: str = DEFAULT_KUBERNETES_VERSION
    poll_interval: float = pydantic.Field(default=2.0, gt=0)
    api_attempts: int = pydantic.Field(default=5, ge=1)
    api_backoff: float = pydantic.Field(default=0.5, ge=0)

    @pydantic.field_validator("namespace", "service_account")
    @classmethod
    def _rfc1123(cls, value: str | None, info: pydantic.ValidationInfo) -> str | None:
        if value is not None and (len(value) > 63 or not _LABEL.match(value)):
            raise ValueError(f"{info.field_name} must be an RFC 1123 label (a-z, 0-9, '-', at most 63; got {value!r})")
        return value

    @pydantic.field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not value.strip() or any(c.isspace() for c in value):
            raise ValueError(f"image must be an image reference like 'python:3.12-slim' (got {value!r})")
        return value

    @pydantic.field_validator("cpus", "memory")
    @classmethod
    def _quantities(cls, value: Quantity | None, info: pydantic.ValidationInfo) -> Quantity | None:
        return None if value is None else _quantity(value, str(info.field_name))

    @pydantic.field_validator("labels", "node_selector")
    @classmethod
    def _labels(cls, value: dict[str, str], info: pydantic.ValidationInfo) -> dict[str, str]:
        for key, text in value.items():
            if len(key.rsplit("/", 1)[-1]) > 63 or not _LABEL_KEY.match(key):
                raise ValueError(f"{info.field_name}: {key!r} is not a valid Kubernetes label key")
            if len(text) > 63 or not _LABEL_VALUE.match(text):
                raise ValueError(f"{info.field_name}: {key}={text!r}: a value is at most 63 of A-Z, a-z, 0-9, -_.")
        return value

    @pydantic.field_validator("env_vars", "secret_env_vars")
    @classmethod
    def _env_names(cls, value: dict[str, str], info: pydantic.ValidationInfo) -> dict[str, str]:
        bad = [name for name in value if not _ENV_NAME.match(name)]
        if bad:
            raise ValueError(f"{info.field_name} names must match [-._a-zA-Z][-._a-zA-Z0-9]* (got {bad!r})")
        return value

    @pydantic.field_validator("secret_env_vars")
    @classmethod
    def _secret_refs(cls, value: dict[str, str]) -> dict[str, str]:
        for name, ref in value.items():
            secret, _, key = ref.partition("/")
            if not _LABEL.match(secret) or not key:
                raise ValueError(f"secret_env_vars[{name!r}] must be 'secret-name/key' (got {ref!r})")
        return value

    @pydantic.field_validator("image_pull_secrets")
    @classmethod
    def _secret_names(cls, value: list[str]) -> list[str]:
        bad = [name for name in value if len(name) > 253 or not _LABEL.match(name.replace(".", "-"))]
        if bad:
            raise ValueError(f"image_pull_secrets are Secret names (RFC 1123; got {bad!r})")
        return value

    @pydantic.model_validator(mode="after")
    def _mounts(self) -> KubernetesExecutor:
        names = [v.get("name") for v in self.volumes]
        if any(not isinstance(n, str) or not n for n in names):
            raise ValueError("every entry of volumes needs a 'name' (a Kubernetes Volume, e.g. {'name': 'store',"
                             " 'persistentVolumeClaim': {'claimName': 'nemoflow-store'}})")  # fmt: skip
        for mount in self.volume_mounts:
            if mount.get("name") not in names:
                raise ValueError(f"volume_mounts: {mount!r} names no volume in volumes (known: {names})")
            if not str(mount.get("mountPath", "")).startswith("/"):
                raise ValueError(f"volume_mounts: {mount!r} needs an absolute 'mountPath'")
        return self

    # ---- NeMo Run's helpers -----------------------------------------------------------------------
    def assign(self, exp_id: str, exp_dir: str, task_id: str, task_dir: str) -> None:
        self._assign_dirs(exp_id, exp_dir, task_dir)

    def nnodes(self) -> int:
        return 1

    def nproc_per_node(self) -> int:
        return 1

    # ---- the five verbs -------------------------------------------------------------------------
    def submit(self, job: Job) -> Handle:
        manifest, code_digest = self._prepare(job, write=True)
        kube = self._kube()
        name = manifest["metadata"]["name"]
        kube.create_job(manifest)
        details = {"namespace": self.namespace, "job": name, "code_digest": code_digest}
        return Handle(job, name, native=_Running(kube), details=details)

    def status(self, handle: Handle) -> JobState:
        return self._observe(handle).state

    def logs(self, handle: Handle, follow: bool = False) -> str:
        kube = self._kube()
        pods = kube.pods(handle.job_id)
        if pods:
            return kube.pod_log(pods[0]["metadata"]["name"])
        return super().logs(handle, follow) if handle.job is not None else ""

    def cancel(self, handle: Handle) -> None:
        running = handle.native if isinstance(handle.native, _Running) else None
        if running is not None:
            running.cancelled = True
        (running.kube if running else self._kube()).delete_job(handle.job_id)

    def wait(self, handle: Handle) -> JobResult:
        running: _Running = handle.native
        try:
            while True:
                result = self._observe(handle)
                if result.state.finished:
                    break
                time.sleep(self.poll_interval)
        except KeyboardInterrupt:
            with contextlib.suppress(ExecutorError):
                self.cancel(handle)
            print(f"nemoflow: deleted Kubernetes Job {self.namespace}/{handle.job_id} (step {handle.job.step!r})",
                  file=sys.stderr)  # fmt: skip
            raise
        if running.cancelled:
            return JobResult(JobState.CANCELLED, result.exit_code, "cancelled", result.backend_state)
        if result.backend_state in STUCK:
            with contextlib.suppress(ExecutorError):  # it would wait there for ever
                running.kube.delete_job(handle.job_id)
        return result

    def attach(self, job: Job, job_id: str, details: dict[str, Any]) -> Handle:
        """A handle on a Job submitted earlier, from what the ledger kept of it."""
        return Handle(job, job_id, native=_Running(self._kube()), details=details)

    def preview(self, job: Job) -> str:
        """The Job manifest as it would be created (``--dry-run``): validated, nothing written or sent."""
        return json.dumps(self._prepare(job, write=False)[0], indent=1)

    # ---- parts ----------------------------------------------------------------------------------
    def _kube(self) -> _Kube:
        return _Kube(self)

    def _observe(self, handle: Handle) -> JobResult:
        """Where the Job is now; the pod's new log text copied into the step's log on the way."""
        running = handle.native if isinstance(handle.native, _Running) else _Running(self._kube())
        found = running.kube.read_job(handle.job_id)
        pods = running.kube.pods(handle.job_id) if found is not None else []
        if pods and handle.job is not None:
            self._copy_log(handle.job, running, pods[0])
        return observe(found, pods, self.image, self.memory)

    def _copy_log(self, job: Job, running: _Running, pod: dict[str, Any]) -> None:
        if (pod.get("status") or {}).get("phase") not in ("Running", "Succeeded", "Failed"):
            return
        text = running.kube.pod_log(pod["metadata"]["name"])
        new = text[running.written :]
        if not new:
            return
        running.written = len(text)
        with open(job.log_path, "a", encoding="utf-8") as log:
            log.write(new)
        if job.tail_logs:
            sys.stdout.write("".join(f"[{job.step}] {line}\n" for line in new.rstrip("\n").split("\n")))
            sys.stdout.flush()

    def _prepare(self, job: Job, *, write: bool) -> tuple[dict[str, Any], str | None]:
        """The job's validated Job manifest (and its code's digest); with ``write``, its files staged."""
        if job.spec is None or job.stage_dir is None:
            raise UserError(f"step {job.step!r}: KubernetesExecutor runs nemoflow steps (a function), not scripts")
        if write:  # --dry-run shows the Job wherever it runs; submit needs the shared volume
            self._refuse_unshared(job)
        paths, digest = self._paths(job, write=write)
        env = {**run_env(paths), **self.env_vars, **{k: v for k, v in job.env.items() if k not in _LOCAL_ONLY_ENV}}
        if "PYTHONPATH" in self.env_vars and paths.runtime_dir:
            env["PYTHONPATH"] = f"{paths.runtime_dir}:{self.env_vars['PYTHONPATH']}"
        env["NEMOFLOW_OUTPUT_DIR"] = paths.output_dir
        name = job_name(job)
        workdir = map_path(job.cwd, paths)
        manifest = job_manifest(self, name, run_command(self.python, paths), env, workdir, job.step, job.key)
        validate(manifest, self.kubernetes_version, job.step)
        if write:
            Path(paths.root).mkdir(parents=True, exist_ok=True)
            Path(paths.job_file).write_text(json.dumps(remote_spec(job.spec, paths), indent=1))
        return manifest, digest

    def _paths(self, job: Job, *, write: bool) -> tuple[RemotePaths, str | None]:
        assert job.stage_dir is not None
        root = str(job.stage_dir / "kubernetes" / job.name)
        if not write:
            return RemotePaths(root, str(job.output_dir), str(job.stage_dir / "runtime-<digest>")), None
        runtime = extract_once(runtime_package(job.stage_dir), job.stage_dir, "runtime")
        package = code_package(self.packager, job.cwd, job.stage_dir, job.experiment_id)
        mounts = {}
        if package is not None:
            mounts[str(package.local_root)] = str(extract_once(package, job.stage_dir, "code"))
        paths = RemotePaths(root, str(job.output_dir), str(runtime), mounts=mounts)
        return paths, package.digest if package else None

    def _refuse_unshared(self, job: Job) -> None:
        """A UserError naming the first path the pod would need but no volume mount shares at the same path."""
        assert job.spec is not None and job.stage_dir is not None
        needed = {"the step's output folder": str(job.output_dir), "the store's .stage folder": str(job.stage_dir)}
        needed |= {f"the outputs of {name!r}": folder for name, folder in job.spec["upstream_dirs"].items()}
        if self.packager is None:
            needed["the pipeline's folder (no packager ships it)"] = job.cwd
            pipeline = job.spec.get("pipeline")
            if pipeline:
                needed["the pipeline file's folder"] = os.path.dirname(pipeline["file"])
        mounts = [str(m["mountPath"]).rstrip("/") or "/" for m in self.volume_mounts if not m.get("readOnly")]
        for what, path in needed.items():
            if not any(_under(os.path.abspath(path), mount) for mount in mounts):
                shown = ", ".join(mounts) or "none"
                raise UserError(
                    f"step {job.step!r}: KubernetesExecutor needs {what} ({path}) on a volume the pod mounts at the"
                    f" same path; the writable volume_mounts are: {shown}",
                    hint="put the store (and the pipeline, or give a packager) on a shared volume, e.g. a"
                    " ReadWriteMany PVC mounted here and in the pod at one path: volumes=[{'name': 'store',"
                    " 'persistentVolumeClaim': {'claimName': 'nemoflow-store'}}], volume_mounts=[{'name': 'store',"
                    " 'mountPath': '/mnt/store'}], and NEMOFLOW_STORE=/mnt/store/targets",
                )


def job_name(job: Job) -> str:
    """The Job's name: readable, unique per run, a valid name for the Job and the pods' job-name label."""
    return resource_name(f"nf-{job.name}", limit=63)


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


class _Running:
    """The backend side of a Handle: the API calls, how much of the pod's log is copied, and a cancel request."""

    def __init__(self, kube: _Kube) -> None:
        self.kube = kube
        self.written = 0
        self.cancelled = False


class _Kube:
    """The Jobs and pods calls a KubernetesExecutor makes, each retried and explained by :func:`kube.call`."""

    def __init__(self, executor: KubernetesExecutor) -> None:
        self.namespace = executor.namespace
        self.client, self.credential = connect(
            executor.kubeconfig, executor.context, "KubernetesExecutor", "KubernetesExecutor"
        )
        self.retry = Retry(executor.api_attempts, executor.api_backoff)

    def _call(self, what: str, verb: str, make: Any, missing: Any = ...) -> Any:
        host = self.client.configuration.host
        return call(make, what, verb, credential=self.credential, host=host, retry=self.retry, missing=missing)

    def create_job(self, manifest: dict[str, Any]) -> None:
        from kubernetes import client

        api = client.BatchV1Api(self.client)
        name = manifest["metadata"]["name"]
        what = f"jobs {self.namespace}/{name}"
        try:
            self._call(what, "create", lambda: api.create_namespaced_job(
                self.namespace, manifest, field_validation="Strict", _preload_content=False))  # fmt: skip
        except ExecutorError as exc:
            # a create answered 5xx may still have been made: the retry's 409 is then our own Job
            found = self.read_job(name) if "HTTP 409" in str(exc) else None
            key = manifest["metadata"]["annotations"]["nemoflow/key"]
            if found is None or found["metadata"].get("annotations", {}).get("nemoflow/key") != key:
                raise

    def read_job(self, name: str) -> dict[str, Any] | None:
        from kubernetes import client

        api = client.BatchV1Api(self.client)
        response = self._call(
            f"jobs {self.namespace}/{name}", "get",
            lambda: api.read_namespaced_job(name, self.namespace, _preload_content=False), missing=None,
        )  # fmt: skip
        return None if response is None else json.loads(response.data)

    def delete_job(self, name: str) -> None:
        """Delete the Job and, first, its pod (foreground propagation); a Job already gone is fine."""
        from kubernetes import client

        api = client.BatchV1Api(self.client)
        body = client.V1DeleteOptions(propagation_policy="Foreground")
        self._call(
            f"jobs {self.namespace}/{name}", "delete",
            lambda: api.delete_namespaced_job(
                name, self.namespace, propagation_policy="Foreground", body=body, _preload_content=False
            ),
            missing=None,
        )  # fmt: skip

    def pods(self, job: str) -> list[dict[str, Any]]:
        """The Job's pods (label ``job-name``, set by the Job controller), newest first."""
        from kubernetes import client

        api = client.CoreV1Api(self.client)
        response = self._call(
            f"pods {self.namespace} (job-name={job})", "list",
            lambda: api.list_namespaced_pod(self.namespace, label_selector=f"job-name={job}", _preload_content=False),
        )  # fmt: skip
        return newest_first(json.loads(response.data).get("items", []))

    def pod_log(self, pod: str) -> str:
        from kubernetes import client

        api = client.CoreV1Api(self.client)
        response = self._call(
            f"pods {self.namespace}/{pod}", "get the log of",
            lambda: api.read_namespaced_pod_log(pod, self.namespace, _preload_content=False), missing=None,
        )  # fmt: skip
        return "" if response is None else response.data.decode("utf-8", "replace")
