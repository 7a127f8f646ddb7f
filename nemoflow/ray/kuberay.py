"""``RayCluster`` / ``RayJob`` as KubeRay custom resources (``ray.io/v1``), through the kubernetes client.

A manifest is built by a pure function (:func:`cluster_manifest`, :func:`job_manifest`) and checked against
the CRD's ``openAPIV3Schema`` (unknown fields refused, as the API server's ``fieldValidation=Strict`` does)
before anything is created. The CRD comes from ``KubeRayExecutor(crd_dir=...)`` when given, else from the API
server (``apiextensions.k8s.io/v1``). The resource is the state: nothing is remembered on this machine.
A RayJob's log is its submitter pod's (KubeRay's default ``K8sJobMode``: a Kubernetes Job named after the
RayJob runs ``ray job submit`` and follows the job's log); once that pod is gone, so is the log. A local
``workdir`` is copied into the first of the executor's volume mounts through a short-lived pod (:class:`WorkdirCopy`).
"""

from __future__ import annotations

import codecs
import functools
import gzip
import io
import json
import shlex
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import yaml

from nemoflow.errors import ExecutorError, UserError
from nemoflow.executors.kuberay import (
    GROUP,
    MAX_CLUSTER_NAME,
    MAX_JOB_NAME,
    PLURALS,
    VERSION,
    Kube,
    KubeRayExecutor,
    resource_name,
)
from nemoflow.executors.relay import relay
from nemoflow.ray.backend import ClusterBackend, ClusterStatus, JobBackend, JobStatus, open_forward
from nemoflow.ray.jobs import last_lines, runtime_env_for

CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}
CLUSTER_LABEL, NODE_TYPE_LABEL = "ray.io/cluster", "ray.io/node-type"
HEAD_PORTS = {"gcs": 6379, "dashboard": 8265, "client": 10001}
_JOB_WORDS = {"PENDING", "RUNNING", "SUCCEEDED", "FAILED", "STOPPED"}
DELETE_WAIT = 300.0  # seconds RayJob.start waits for a stopped RayJob of its name to be gone


# ---- manifests (pure) ---------------------------------------------------------------------------------------


def cluster_manifest(name: str, executor: KubeRayExecutor, pre_ray_start_commands: list[str] | None = None) -> dict:
    """The RayCluster resource named after ``name`` (a valid name derived from it)."""
    metadata = {"name": resource_name(name, MAX_CLUSTER_NAME), "namespace": executor.namespace}
    if executor.labels:
        metadata["labels"] = dict(executor.labels)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RayCluster",
        "metadata": metadata,
        "spec": cluster_spec(executor, pre_ray_start_commands or []),
    }


def job_manifest(
    name: str,
    executor: KubeRayExecutor,
    entrypoint: str,
    runtime_env: dict[str, Any],
    cluster_name: str | None = None,
    pre_ray_start_commands: list[str] | None = None,
    job_id: str | None = None,
) -> dict:
    """The RayJob resource: on the RayCluster ``cluster_name`` (``clusterSelector``), else with a cluster of its
    own (``rayClusterSpec``) that KubeRay deletes when the job ends."""
    metadata = {"name": resource_name(name, MAX_JOB_NAME), "namespace": executor.namespace}
    if executor.labels:
        metadata["labels"] = dict(executor.labels)
    spec: dict[str, Any] = {"entrypoint": entrypoint}
    if job_id:
        spec["jobId"] = job_id
    if runtime_env:
        spec["runtimeEnvYAML"] = yaml.safe_dump(runtime_env, sort_keys=True)
    if cluster_name:
        spec["clusterSelector"] = {CLUSTER_LABEL: resource_name(cluster_name, MAX_CLUSTER_NAME)}
    else:
        spec["shutdownAfterJobFinishes"] = True
        spec["rayClusterSpec"] = cluster_spec(executor, pre_ray_start_commands or [])
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RayJob", "metadata": metadata, "spec": spec}


def cluster_spec(executor: KubeRayExecutor, pre_ray_start_commands: list[str]) -> dict:
    head = _pod_template(executor, "ray-head", executor.head_cpu, executor.head_memory, 0, pre_ray_start_commands)
    head["spec"]["containers"][0]["ports"] = [{"name": k, "containerPort": v} for k, v in HEAD_PORTS.items()]
    workers = []
    for group in executor.worker_groups:
        low, high = group.bounds
        template = _pod_template(
            executor, "ray-worker", group.cpu_per_worker, group.memory_per_worker, group.gpus_per_worker,
            pre_ray_start_commands,
        )  # fmt: skip
        workers.append(
            {
                "groupName": group.group_name,
                "replicas": group.replicas,
                "minReplicas": low,
                "maxReplicas": high,
                "rayStartParams": dict(group.ray_start_params),
                "template": template,
            }
        )
    return {
        "rayVersion": executor.ray_version,
        "headGroupSpec": {
            "serviceType": executor.service_type,
            "rayStartParams": {"dashboard-host": "0.0.0.0", **executor.ray_head_start_params},
            "template": head,
        },
        "workerGroupSpecs": workers,
    }


def _pod_template(
    executor: KubeRayExecutor, container: str, cpu: Any, memory: Any, gpus: int, pre_ray_start_commands: list[str]
) -> dict:
    resources: dict[str, Any] = {"cpu": cpu, "memory": memory}
    if gpus:
        resources["nvidia.com/gpu"] = gpus
    spec: dict[str, Any] = {"name": container, "image": executor.container_image}
    spec["resources"] = {"requests": dict(resources), "limits": dict(resources)}
    if executor.env_vars:
        spec["env"] = [{"name": k, "value": v} for k, v in sorted(executor.env_vars.items())]
    if executor.volume_mounts:
        spec["volumeMounts"] = [dict(mount) for mount in executor.volume_mounts]
    if pre_ray_start_commands:  # KubeRay runs the container's args, then `ray start` (`<args> && ray start ...`)
        spec["args"] = [" && ".join(pre_ray_start_commands)]
    pod: dict[str, Any] = {"containers": [spec]}
    if executor.volumes:
        pod["volumes"] = [dict(volume) for volume in executor.volumes]
    template: dict[str, Any] = {"spec": pod}
    if executor.labels:
        template["metadata"] = {"labels": dict(executor.labels)}
    return template


# ---- validation against the CRD's schema ----------------------------------------------------------------------


def validate(manifest: dict, schema: dict) -> None:
    """Raise a UserError naming the first field of ``manifest`` that ``schema`` (an openAPIV3Schema) refuses."""
    try:
        import jsonschema
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise ExecutorError("checking KubeRay manifests needs jsonschema: pip install 'nemoflow[kubernetes]'") from exc
    errors = sorted(jsonschema.Draft4Validator(schema).iter_errors(manifest), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    first = errors[0]
    path = _field_path(first.absolute_path)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    raise UserError(
        f"{manifest['kind']} {manifest['metadata']['name']!r}: field {path} = {json.dumps(first.instance)[:200]}"
        f" is refused by the KubeRay CRD schema: {first.message[:300]}{more}",
        hint="fix that field of the KubeRayExecutor (volumes / volume_mounts are Kubernetes objects in camelCase)",
    )


def _field_path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".") or "<the resource>"


def strict(schema: Any) -> Any:
    """``schema`` with unknown fields refused wherever it lists its fields and does not keep unknown ones."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    found = {key: strict(value) for key, value in schema.items()}
    keeps_unknown = "additionalProperties" in found or found.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in found and not keeps_unknown:
        found["additionalProperties"] = False
    return found


def schema_from_crd(crd: dict) -> dict:
    """The served ``v1`` openAPIV3Schema of a CustomResourceDefinition, made strict."""
    for version in crd["spec"]["versions"]:
        if version["name"] == VERSION:
            return strict(version["schema"]["openAPIV3Schema"])
    raise ExecutorError(f"the CRD {crd['metadata']['name']} serves no {VERSION} version (a KubeRay older than 1.0?)")


@functools.cache
def _schema_file(path: str, mtime: float) -> dict:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path) as handle:
        return schema_from_crd(yaml.load(handle, Loader=loader))


def crd_schema(kube: Kube, kind: str) -> dict:
    """The schema ``kind``'s manifests are checked against: from ``crd_dir`` when given, else the API server's CRD."""
    if kube.executor.crd_dir:
        return local_schema(kube.executor.crd_dir, kind)
    return schema_from_crd(kube.read_crd(f"{PLURALS[kind]}.{GROUP}"))


def local_schema(crd_dir: str, kind: str) -> dict:
    path = Path(crd_dir).expanduser() / CRD_FILES[kind]
    try:
        return _schema_file(str(path), path.stat().st_mtime)
    except OSError as exc:
        raise UserError(
            f"KubeRayExecutor(crd_dir={crd_dir!r}): cannot read {path}: {exc}",
            hint="point it at KubeRay's ray-operator/config/crd/bases, or leave it None to ask the API server",
        ) from exc


# ---- the backends ----------------------------------------------------------------------------------------------


class KubeRayClusterBackend(ClusterBackend):
    """``RayCluster(name, KubeRayExecutor(...))``: a RayCluster resource named after ``name``."""

    kind = "kuberay"

    @property
    def resource(self) -> str:
        return resource_name(self.name, MAX_CLUSTER_NAME)

    def start(
        self, *, wait_until_ready: bool, timeout: float, dryrun: bool, pre_ray_start_commands: list[str]
    ) -> str | None:
        manifest = cluster_manifest(self.name, self.executor, pre_ray_start_commands)
        if dryrun:  # no API call: checked only against CRDs on this machine
            if self.executor.crd_dir:
                validate(manifest, local_schema(self.executor.crd_dir, "RayCluster"))
            return yaml.safe_dump(manifest, sort_keys=False)
        kube = Kube(self.executor)
        validate(manifest, crd_schema(kube, "RayCluster"))
        existing = kube.get("RayCluster", self.resource)
        if existing is not None and existing["metadata"].get("deletionTimestamp"):
            wait_gone(kube, "RayCluster", self.resource, timeout)  # a stopped cluster still going away
            existing = None
        if existing is None:  # else a cluster of this name exists: reuse it
            kube.create(manifest)
        if wait_until_ready:
            self._wait(kube, timeout)
        return None

    def status(self) -> ClusterStatus:
        found = Kube(self.executor).get("RayCluster", self.resource)
        if found is None:
            return ClusterStatus(self.name, self.kind, "NOT_FOUND", details={"resource": self.resource})
        return cluster_status(self.name, found)

    def port_forward(self, port: int, target_port: int) -> None:
        kube = Kube(self.executor)
        pod = self.head_pod(kube)
        where = f"the Kubernetes API (pod {self.executor.namespace}/{pod} port {target_port})"
        open_forward(port, relay(port, lambda _: kube.open_port(pod, target_port), where))

    def stop(self) -> None:
        Kube(self.executor).delete("RayCluster", self.resource)

    def head_pod(self, kube: Kube) -> str:
        selector = f"{CLUSTER_LABEL}={self.resource},{NODE_TYPE_LABEL}=head"
        running = [pod for pod in kube.pods(selector) if pod["phase"] == "Running"]
        if not running:
            raise ExecutorError(
                f"RayCluster {self.executor.namespace}/{self.resource} has no running head pod ({selector}) to forward"
                " to (RayCluster.status() says where it is; start(wait_until_ready=True) waits for it)"
            )
        return running[0]["name"]

    def _wait(self, kube: Kube, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            found = kube.get("RayCluster", self.resource)
            state = cluster_status(self.name, found).state if found else "NOT_FOUND"
            if state == "RUNNING":
                return
            where = f"RayCluster {self.executor.namespace}/{self.resource}"
            if state in ("FAILED", "NOT_FOUND", "STOPPED"):
                raise ExecutorError(f"{where} is {state}: {_reason(found)}")
            if time.monotonic() > deadline:
                raise ExecutorError(f"{where} is {state} after {timeout:g} s")
            time.sleep(self.executor.poll_interval)


def wait_gone(kube: Kube, kind: str, name: str, timeout: float) -> None:
    """Wait until the API server answers 404 for a resource being deleted (its finalizers and pods go first)."""
    deadline = time.monotonic() + timeout
    while kube.get(kind, name) is not None:
        if time.monotonic() > deadline:
            raise ExecutorError(f"{kind} {kube.namespace}/{name} is still being deleted after {timeout:g} s")
        time.sleep(kube.executor.poll_interval)


def cluster_status(name: str, resource: dict) -> ClusterStatus:
    """Our words for a RayCluster's ``.status``: ``state`` ready -> RUNNING, suspended -> STOPPED, failed -> FAILED."""
    status = resource.get("status") or {}
    word = str(status.get("state", "")).lower()
    state = {"ready": "RUNNING", "suspended": "STOPPED", "failed": "FAILED"}.get(word, "PENDING")
    if resource.get("metadata", {}).get("deletionTimestamp"):
        state = "STOPPED"
    details = {
        "resource": resource["metadata"]["name"],
        "namespace": resource["metadata"].get("namespace"),
        "kuberay_state": status.get("state", ""),
        "head": status.get("head", {}),
        "endpoints": status.get("endpoints", {}),
        "ready_workers": status.get("readyWorkerReplicas"),
    }
    return ClusterStatus(name, "kuberay", state, state == "RUNNING", None, details)


def _reason(resource: dict | None) -> str:
    status = (resource or {}).get("status") or {}
    return status.get("reason") or status.get("message") or "no reason given"


class KubeRayJobBackend(JobBackend):
    """``RayJob(name, KubeRayExecutor(...), cluster_name=None)``: a RayJob resource named after ``name``."""

    kind = "kuberay"

    @property
    def resource(self) -> str:
        return resource_name(self.name, MAX_JOB_NAME)

    def start(
        self,
        command: str,
        workdir: str | None,
        runtime_env_yaml: str | None,
        pre_ray_start_commands: list[str],
        dryrun: bool,
    ) -> str | None:
        manifest, copy = self.plan(command, workdir, runtime_env_yaml, pre_ray_start_commands)
        if dryrun:
            if self.executor.crd_dir:
                validate(manifest, local_schema(self.executor.crd_dir, "RayJob"))
            return (copy.describe() if copy else "") + yaml.safe_dump(manifest, sort_keys=False)
        kube = Kube(self.executor)
        validate(manifest, crd_schema(kube, "RayJob"))
        self._check_free(kube)
        if copy is not None:
            copy.run(kube)
        kube.create(manifest)
        return manifest["spec"]["jobId"]

    def plan(
        self, command: str, workdir: str | None, runtime_env_yaml: str | None, pre_ray_start_commands: list[str]
    ) -> tuple[dict, WorkdirCopy | None]:
        """The RayJob manifest, and the copy of a local ``workdir`` to make first (None for none or a URI)."""
        runtime_env = runtime_env_for(self.executor, None, runtime_env_yaml)
        copy = None
        if workdir and "://" in workdir:
            runtime_env["working_dir"] = workdir  # a URI Ray downloads
        elif workdir:
            copy = WorkdirCopy(self.executor, workdir, self.resource)
        # On a cluster of its own the commands run before `ray start` in its pods; on a shared one, before the job.
        before = pre_ray_start_commands if self.cluster_name else []
        steps = [*([f"cd {shlex.quote(copy.dest)}"] if copy else []), *before, command]
        manifest = job_manifest(
            self.name, self.executor, " && ".join(steps), runtime_env, self.cluster_name,
            [] if self.cluster_name else pre_ray_start_commands, f"{self.resource}-{time.time_ns():x}",
        )  # fmt: skip
        return manifest, copy

    def _check_free(self, kube: Kube) -> None:
        """Its cluster is there, and no RayJob of its name is (waiting for one being deleted to go)."""
        if self.cluster_name:
            cluster = resource_name(self.cluster_name, MAX_CLUSTER_NAME)
            if kube.get("RayCluster", cluster) is None:
                raise ExecutorError(
                    f"RayJob {self.name!r}: no RayCluster {self.executor.namespace}/{cluster} to run on"
                    " (start it with RayCluster(name, executor).start(),"
                    " or leave cluster_name out for a cluster of its own)"
                )
        existing = kube.get("RayJob", self.resource)
        if existing is not None and existing["metadata"].get("deletionTimestamp"):
            wait_gone(kube, "RayJob", self.resource, DELETE_WAIT)  # a stopped job still going away
        elif existing is not None:
            raise ExecutorError(
                f"RayJob {self.executor.namespace}/{self.resource} already exists"
                f" ({job_status(self.name, existing).state});"
                " RayJob(...).stop() deletes it, or give the job another name"
            )

    def status(self) -> JobStatus:
        found = Kube(self.executor).get("RayJob", self.resource)
        if found is None:
            return JobStatus(self.name, self.kind, "NOT_FOUND", details={"resource": self.resource})
        return job_status(self.name, found)

    def logs(self, follow: bool, lines: int) -> str:
        kube = Kube(self.executor)
        pod = self._submitter(kube, wait=follow)
        if not follow:
            return kube.pod_log(pod, lines, follow=False)
        chunks = []
        decoder = codecs.getincrementaldecoder("utf-8")("replace")  # a chunk may end inside a character
        response = kube.pod_log(pod, lines, follow=True)
        try:
            for chunk in response.stream(4096):
                text = decoder.decode(chunk)
                chunks.append(text)
                sys.stdout.write(text)
                sys.stdout.flush()
        finally:
            response.release_conn()
        return last_lines("".join(chunks) + decoder.decode(b"", final=True), lines)

    def stop(self) -> None:
        """Delete the RayJob: KubeRay stops the Ray job, and deletes the job's own cluster with it."""
        Kube(self.executor).delete("RayJob", self.resource)

    def _submitter(self, kube: Kube, wait: bool) -> str:
        """The newest submitter pod; with ``wait``, the newest that has started, once there is one."""
        selector = f"job-name={self.resource}"
        while True:
            pods = kube.pods(selector)
            started = [pod for pod in pods if pod["phase"] != "Pending"]
            if started or (pods and not wait):
                return (started or pods)[0]["name"]
            job = kube.get("RayJob", self.resource) if wait else None
            if job is None or job_status(self.name, job).finished:
                raise ExecutorError(
                    f"RayJob {self.executor.namespace}/{self.resource}: no submitter pod ({selector}) to read the log"
                    " from yet, or any more (KubeRay's K8sJobMode runs one; it is deleted with the job)"
                )
            time.sleep(self.executor.poll_interval)


def job_status(name: str, resource: dict) -> JobStatus:
    """Our words for a RayJob's ``.status``: Ray's ``jobStatus`` when it has one; a failed deployment
    (``jobDeploymentStatus`` Failed / ValidationFailed) is FAILED, a suspended one STOPPED, else PENDING."""
    status = resource.get("status") or {}
    job, deployment = status.get("jobStatus", ""), status.get("jobDeploymentStatus", "")
    if deployment in ("Failed", "ValidationFailed"):
        state = "FAILED"
    elif job in _JOB_WORDS:
        state = job
    elif deployment in ("Suspended", "Suspending"):
        state = "STOPPED"
    else:
        state = "PENDING"
    details = {
        "resource": resource["metadata"]["name"],
        "namespace": resource["metadata"].get("namespace"),
        "job_deployment_status": deployment,
        "ray_cluster": status.get("rayClusterName", ""),
        "dashboard": status.get("dashboardURL", ""),
    }
    job_id = status.get("jobId") or resource.get("spec", {}).get("jobId")
    return JobStatus(
        name, "kuberay", state, job_id, status.get("message", "") or status.get("reason", ""), None, details
    )


# ---- a local workdir, copied into the first volume mount (a volume the head and workers share) ----------------


class WorkdirCopy:
    """``workdir`` as a gzipped tar, unpacked by a short-lived pod into ``<first mountPath>/nemoflow-code/<job>``,
    the folder the job's entrypoint starts in (NeMo Run syncs a workdir into the first volume mount too)."""

    def __init__(self, executor: KubeRayExecutor, workdir: str, job: str) -> None:
        self.executor = executor
        self.source = Path(workdir).expanduser().resolve()
        if not self.source.is_dir():
            raise UserError(f"RayJob workdir {workdir!r} is not a folder on this machine")
        if not executor.volume_mounts:
            raise UserError(
                f"RayJob workdir {workdir!r}: a local folder is copied into the first of KubeRayExecutor.volume_mounts"
                " (a volume the head and workers share, such as a ReadWriteMany PVC), and there is none",
                hint="add volumes=[...] and volume_mounts=[...], or give workdir as a URI"
                " (https://.../code.zip, s3://...)",
            )
        self.mount = executor.volume_mounts[0]
        named = [volume for volume in executor.volumes if volume.get("name") == self.mount.get("name")]
        if not named:
            raise UserError(
                f"volume_mounts[0] names the volume {self.mount.get('name')!r}, which volumes does not list"
            )
        self.volume = named[0]
        self.dest = f"{str(self.mount['mountPath']).rstrip('/')}/nemoflow-code/{job}"
        self.pod = resource_name(f"{job}-code-{time.time_ns():x}"[-63:].lstrip("-"), 63)

    def describe(self) -> str:
        return f"# workdir {self.source} is copied to {self.dest} (volume {self.volume['name']}) first\n"

    def run(self, kube: Kube, timeout: float = DELETE_WAIT) -> None:
        """Start the copying pod, unpack the archive through its exec stream, and delete the pod."""
        archive = code_archive(self.source)
        kube.create_pod(self.pod_manifest())
        try:
            self._wait_running(kube, timeout)
            dest = shlex.quote(self.dest)
            script = f"rm -rf {dest} && mkdir -p {dest} && head -c {len(archive)} | tar -xzf - -C {dest}"
            code, stderr = kube.exec_with_input(self.pod, ["sh", "-c", script], archive, timeout)
            if code != 0:
                raise ExecutorError(
                    f"copying workdir {self.source} into {self.dest} (pod {kube.namespace}/{self.pod}) failed"
                    f" with exit code {code}: {stderr.strip()[-500:]}"
                )
        finally:
            kube.delete_pod(self.pod)

    def pod_manifest(self) -> dict:
        container = {
            "name": "copy",
            "image": self.executor.container_image,  # has sh, head and tar
            "command": ["sleep", "3600"],
            "volumeMounts": [dict(self.mount)],
        }
        metadata = {"name": self.pod, "labels": {**self.executor.labels, "app.kubernetes.io/created-by": "nemoflow"}}
        spec = {"restartPolicy": "Never", "activeDeadlineSeconds": 3600, "containers": [container]}
        return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": {**spec, "volumes": [self.volume]}}

    def _wait_running(self, kube: Kube, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (phase := kube.pod_phase(self.pod)) != "Running":
            if phase in (None, "Succeeded", "Failed") or time.monotonic() > deadline:
                raise ExecutorError(f"the pod {kube.namespace}/{self.pod} that copies the workdir is {phase}")
            time.sleep(self.executor.poll_interval)


def code_archive(folder: Path) -> bytes:
    """``folder`` as a gzipped tar, the same bytes for the same files (sorted, no times or owners; .git left out;
    symlinks kept as links)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped, tarfile.open(fileobj=zipped, mode="w") as tar:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            if ".git" in relative.parts:
                continue
            info = tar.gettarinfo(str(path), arcname=str(relative))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if info.isreg():
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
            elif info.isdir() or info.issym():
                tar.addfile(info)
    return buffer.getvalue()
