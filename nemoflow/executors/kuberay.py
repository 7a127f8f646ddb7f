"""``KubeRayExecutor``: what a KubeRay RayCluster / RayJob custom resource is made of, checked before it is sent.

Also here: :class:`Kube`, the API calls the KubeRay backend makes (``nemoflow/ray/kuberay.py`` builds the
resources, sends them through it and follows them for ``RayCluster`` / ``RayJob``). A pipeline step does not
run on this executor directly: start a ``RayCluster`` with it, ``port_forward`` its dashboard, and give the
steps ``RayExecutor(address=<the forwarded URL>)``. The ``kubernetes`` client is imported only inside
functions, here and in ``nemoflow/ray/kuberay.py``.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pydantic

from nemoflow.errors import ExecutorError
from nemoflow.executors.base import Executor, Handle, Job, JobResult, JobState

DEFAULT_RAY_VERSION = "2.43.0"
GROUP, VERSION = "ray.io", "v1"
PLURALS = {"RayCluster": "rayclusters", "RayJob": "rayjobs"}
# Kubernetes' quantity syntax (the pattern the CRDs carry): "4Gi", "500m", "1.5", "2e3".
QUANTITY = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # an RFC 1123 label, at most 63 characters
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
# KubeRay's own limits (ray-operator/controllers/ray/utils/constant.go): the names of the pods and services it
# derives from a RayCluster must stay within 63 characters; a RayJob's cluster adds a 6-character suffix.
MAX_CLUSTER_NAME = 53
MAX_JOB_NAME = 47


def resource_name(name: str, limit: int = 63) -> str:
    """``name`` as a valid Kubernetes resource name: lowercase, other characters to '-', at most ``limit``.

    A name that had to be cut keeps a short hash of the original, so two long names stay apart.
    """
    cleaned = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    cleaned = re.sub(r"-{2,}", "-", cleaned) or "ray"
    if len(cleaned) <= limit:
        return cleaned
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{cleaned[: limit - 7].rstrip('-')}-{digest}"


def _quantity(value: str | int | float, field: str) -> str | int | float:
    if isinstance(value, bool) or (isinstance(value, (int, float)) and value < 0):
        raise ValueError(f"{field} must be a Kubernetes quantity like '4Gi' or '500m' (got {value!r})")
    if isinstance(value, str) and not QUANTITY.match(value):
        raise ValueError(f"{field} must be a Kubernetes quantity like '4Gi', '512Mi', '2' or '500m' (got {value!r})")
    return value


Quantity = str | int | float


class KubeRayWorkerGroup(pydantic.BaseModel):
    """One group of Ray worker pods: ``replicas`` between ``min_replicas`` and ``max_replicas`` (the autoscaler's
    bounds; both default to ``replicas``), each with ``cpu_per_worker`` / ``memory_per_worker`` (quantities, as
    requests and limits) and ``gpus_per_worker`` (``nvidia.com/gpu``)."""

    model_config = pydantic.ConfigDict(extra="forbid", validate_assignment=True)

    group_name: str
    replicas: int = pydantic.Field(default=1, ge=0)
    min_replicas: int | None = pydantic.Field(default=None, ge=0)
    max_replicas: int | None = pydantic.Field(default=None, ge=0)
    gpus_per_worker: int = pydantic.Field(default=0, ge=0)
    cpu_per_worker: Quantity = "1"
    memory_per_worker: Quantity = "4Gi"
    ray_start_params: dict[str, str] = {}

    @pydantic.field_validator("group_name")
    @classmethod
    def _group_name(cls, value: str) -> str:
        lowered = value.lower()
        if len(lowered) > 63 or not _LABEL.match(lowered):
            raise ValueError(
                f"group_name must be an RFC 1123 label: at most 63 of a-z, 0-9 and '-', starting and ending with a"
                f" letter or digit (got {value!r}; try {resource_name(value)!r})"
            )
        return lowered

    @pydantic.field_validator("cpu_per_worker", "memory_per_worker")
    @classmethod
    def _quantities(cls, value: Quantity, info: pydantic.ValidationInfo) -> Quantity:
        return _quantity(value, str(info.field_name))

    @pydantic.model_validator(mode="after")
    def _bounds(self) -> KubeRayWorkerGroup:
        low = self.replicas if self.min_replicas is None else self.min_replicas
        high = self.replicas if self.max_replicas is None else self.max_replicas
        if not low <= self.replicas <= high:
            raise ValueError(
                f"worker group {self.group_name!r}: min_replicas <= replicas <= max_replicas must hold"
                f" (got min_replicas={low}, replicas={self.replicas}, max_replicas={high})"
            )
        return self

    @property
    def bounds(self) -> tuple[int, int]:
        """(minReplicas, maxReplicas) as the RayCluster resource gets them."""
        low = self.replicas if self.min_replicas is None else self.min_replicas
        return low, self.replicas if self.max_replicas is None else self.max_replicas


class KubeRayExecutor(Executor):
    """Ray clusters and jobs as KubeRay custom resources (``ray.io/v1`` RayCluster, RayJob) in ``namespace``.

    ``image`` defaults to ``rayproject/ray:<ray_version>`` (keep it the Ray version of the machine that submits
    jobs); ``volumes`` / ``volume_mounts`` are Kubernetes ``Volume`` / ``VolumeMount`` objects (camelCase, as in
    a pod spec) given to the head and every worker, as are ``env_vars``; ``labels`` go on the resource and on
    its pods. ``kubeconfig`` / ``context`` choose the cluster (default: ``$KUBECONFIG`` or ``~/.kube/config``,
    else the in-cluster service account); ``crd_dir`` names a folder with KubeRay's CRD YAML
    (``ray-operator/config/crd/bases``) to check manifests against without asking the API server for its CRDs.
    """

    namespace: str = "default"
    ray_version: str = DEFAULT_RAY_VERSION
    image: str = ""
    head_cpu: Quantity = "1"
    head_memory: Quantity = "2Gi"
    ray_head_start_params: dict[str, str] = {}
    worker_groups: list[KubeRayWorkerGroup] = []
    volumes: list[dict[str, Any]] = []
    volume_mounts: list[dict[str, Any]] = []
    labels: dict[str, str] = {}
    service_type: str = "ClusterIP"
    kubeconfig: str | None = None
    context: str | None = None
    crd_dir: str | None = None
    poll_interval: float = pydantic.Field(default=2.0, gt=0)

    @pydantic.field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if len(value) > 63 or not _LABEL.match(value):
            raise ValueError(f"namespace must be an RFC 1123 label (a-z, 0-9, '-', at most 63; got {value!r})")
        return value

    @pydantic.field_validator("head_cpu", "head_memory")
    @classmethod
    def _quantities(cls, value: Quantity, info: pydantic.ValidationInfo) -> Quantity:
        return _quantity(value, str(info.field_name))

    @pydantic.field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            if len(key.rsplit("/", 1)[-1]) > 63 or not _LABEL_KEY.match(key):
                raise ValueError(f"label key {key!r} is not a valid Kubernetes label key (name or prefix/name)")
            if len(text) > 63 or not _LABEL_VALUE.match(text):
                raise ValueError(f"label {key}={text!r}: a value is at most 63 of A-Z, a-z, 0-9, '-', '_', '.'")
        return value

    @pydantic.field_validator("env_vars")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [name for name in value if not _ENV_NAME.match(name)]
        if bad:
            raise ValueError(f"env_vars names must match [-._a-zA-Z][-._a-zA-Z0-9]* (got {bad!r})")
        return value

    @pydantic.model_validator(mode="after")
    def _unique_groups(self) -> KubeRayExecutor:
        names = [group.group_name for group in self.worker_groups]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"worker_groups: each group_name must be unique (repeated: {twice})")
        return self

    @property
    def container_image(self) -> str:
        return self.image or f"rayproject/ray:{self.ray_version}"

    # ---- a step given this executor directly ------------------------------------------------------
    def submit(self, job: Job) -> Handle:
        raise ExecutorError(
            f"step {job.step!r}: a KubeRayExecutor describes a Ray cluster, it does not run steps itself."
            " Start one with nemoflow.ray.RayCluster(name, KubeRayExecutor(...)).start(), forward its dashboard"
            " with .port_forward(port=8265, target_port=8265), and give the steps"
            " nemoflow.RayExecutor(address='http://127.0.0.1:8265')"
        )

    def status(self, handle: Handle) -> JobState:
        return JobState.FAILED

    def cancel(self, handle: Handle) -> None:
        return None

    def wait(self, handle: Handle) -> JobResult:
        return JobResult(JobState.FAILED, None, "KubeRayExecutor does not run steps (see submit)")


# ---- the API server (the kubernetes client imported inside functions) ---------------------------------------


def api_client(executor: KubeRayExecutor) -> Any:
    """A ``kubernetes.client.ApiClient`` for the executor's cluster: its kubeconfig (or ``$KUBECONFIG``, else
    ``~/.kube/config``) and context, else the in-cluster service account."""
    from nemoflow.executors.kube import connect

    return connect(executor.kubeconfig, executor.context, "KubeRay", "KubeRayExecutor")[0]


class Kube:
    """The calls the KubeRay backend makes; each turns the client's errors into an ExecutorError naming the
    resource."""

    def __init__(self, executor: KubeRayExecutor) -> None:
        self.executor = executor
        self.namespace = executor.namespace
        self._client = api_client(executor)
        self._crds: dict[str, dict] = {}

    def read_crd(self, name: str) -> dict:
        """The CustomResourceDefinition ``name`` as the API server serves it (read once per instance)."""
        if name not in self._crds:
            from kubernetes import client

            api = client.ApiextensionsV1Api(self._client)
            response = self._call(
                f"CustomResourceDefinition {name}", "read",
                lambda: api.read_custom_resource_definition(name, _preload_content=False),
            )  # fmt: skip
            self._crds[name] = json.loads(response.data)
        return self._crds[name]

    def create(self, manifest: dict) -> dict:
        from kubernetes import client

        kind, name = manifest["kind"], manifest["metadata"]["name"]
        api = client.CustomObjectsApi(self._client)
        return self._call(
            f"{kind} {self.namespace}/{name}", "create",
            lambda: api.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURALS[kind], manifest, field_validation="Strict"
            ),
        )  # fmt: skip

    def get(self, kind: str, name: str) -> dict | None:
        """The resource, or None when there is none of that name."""
        from kubernetes import client

        api = client.CustomObjectsApi(self._client)
        return self._call(
            f"{kind} {self.namespace}/{name}", "read",
            lambda: api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURALS[kind], name),
            missing=None,
        )  # fmt: skip

    def delete(self, kind: str, name: str) -> bool:
        """Delete the resource (its pods go with it); False when there was none."""
        from kubernetes import client

        api = client.CustomObjectsApi(self._client)
        done = self._call(
            f"{kind} {self.namespace}/{name}", "delete",
            lambda: api.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURALS[kind], name, propagation_policy="Foreground"
            ),
            missing=False,
        )  # fmt: skip
        return done is not False

    def pods(self, selector: str) -> list[dict]:
        """The pods matching a label selector, newest first, as plain dicts (name, phase, created)."""
        from kubernetes import client

        api = client.CoreV1Api(self._client)
        response = self._call(
            f"pods {self.namespace} ({selector})", "list",
            lambda: api.list_namespaced_pod(self.namespace, label_selector=selector, _preload_content=False),
        )  # fmt: skip
        items = json.loads(response.data).get("items", [])
        found = [
            {
                "name": pod["metadata"]["name"],
                "phase": pod.get("status", {}).get("phase", ""),
                "created": pod["metadata"].get("creationTimestamp", ""),
            }
            for pod in items
        ]
        return sorted(found, key=lambda pod: pod["created"], reverse=True)

    def pod_log(self, pod: str, lines: int, follow: bool) -> Any:
        """The pod's log: text, or with ``follow`` the open response to read chunks from until the pod ends."""
        from kubernetes import client

        api = client.CoreV1Api(self._client)
        tail = {"tail_lines": lines} if lines > 0 and not follow else {}
        response = self._call(
            f"pod {self.namespace}/{pod}", "read the log of",
            lambda: api.read_namespaced_pod_log(pod, self.namespace, follow=follow, _preload_content=False, **tail),
        )  # fmt: skip
        return response if follow else response.data.decode("utf-8", "replace")

    def create_pod(self, manifest: dict) -> None:
        from kubernetes import client

        api = client.CoreV1Api(self._client)
        what = f"pod {self.namespace}/{manifest['metadata']['name']}"
        self._call(what, "create", lambda: api.create_namespaced_pod(self.namespace, manifest, _preload_content=False))

    def pod_phase(self, name: str) -> str | None:
        """The pod's ``status.phase`` (Pending, Running, Succeeded, Failed), or None when there is no such pod."""
        from kubernetes import client

        api = client.CoreV1Api(self._client)
        response = self._call(
            f"pod {self.namespace}/{name}", "read",
            lambda: api.read_namespaced_pod(name, self.namespace, _preload_content=False), missing=None,
        )  # fmt: skip
        return None if response is None else json.loads(response.data).get("status", {}).get("phase", "")

    def delete_pod(self, name: str) -> None:
        from kubernetes import client

        api = client.CoreV1Api(self._client)
        self._call(
            f"pod {self.namespace}/{name}", "delete",
            lambda: api.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0, _preload_content=False),
            missing=None,
        )  # fmt: skip

    def exec_with_input(self, pod: str, command: list[str], data: bytes, timeout: float) -> tuple[int | None, str]:
        """Run ``command`` in ``pod`` with ``data`` on its stdin (the exec stream); its exit code and stderr."""
        from kubernetes import client
        from kubernetes.stream import stream

        api = client.CoreV1Api(self._client)
        session = self._call(
            f"pod {self.namespace}/{pod}", "exec in",
            lambda: stream(
                api.connect_get_namespaced_pod_exec, pod, self.namespace, command=command,
                stdin=True, stdout=True, stderr=True, tty=False, _preload_content=False,
            ),
        )  # fmt: skip
        try:
            for start in range(0, len(data), 1 << 20):
                session.write_stdin(data[start : start + (1 << 20)])
            session.close_channel(0)  # only the v5 protocol can say so: commands read exactly len(data) bytes
            session.run_forever(timeout=timeout)
            if session.is_open():
                raise ExecutorError(f"{command[0]} in pod {self.namespace}/{pod} did not end within {timeout:g} s")
            return session.returncode, session.read_stderr()
        finally:
            session.close()

    def open_port(self, pod: str, port: int) -> Any:
        """A socket to ``port`` of ``pod``, through the API server's port-forward stream."""
        from kubernetes import client
        from kubernetes.stream import portforward

        api = client.CoreV1Api(self._client)
        forward = portforward(api.connect_get_namespaced_pod_portforward, pod, self.namespace, ports=str(port))
        return _Closing(forward.socket(port))

    def _call(self, what: str, verb: str, call: Any, missing: Any = ...) -> Any:
        import urllib3
        from kubernetes.client.exceptions import ApiException

        try:
            return call()
        except ApiException as exc:
            if exc.status == 404 and missing is not ...:
                return missing
            raise ExecutorError(f"could not {verb} {what}: {_api_message(exc)}{_api_hint(exc, verb, what)}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # refused, timed out, TLS: no answer
            host = self._client.configuration.host
            raise ExecutorError(
                f"could not {verb} {what}: the Kubernetes API at {host} did not answer ({exc})"
            ) from exc


def _api_message(exc: Any) -> str:
    message = ""
    try:
        message = json.loads(exc.body or "{}").get("message", "")
    except (ValueError, AttributeError):
        message = str(exc.body or "")[:300]
    return f"HTTP {exc.status} {exc.reason or ''}".rstrip() + (f": {message}" if message else "")


def _api_hint(exc: Any, verb: str, what: str) -> str:
    if exc.status in (401, 403):
        return f" (the kubeconfig's user may not {verb} it: check its RBAC, e.g. kubectl auth can-i {verb} ...)"
    if exc.status == 404 and "CustomResourceDefinition" in what:
        return " (is the KubeRay operator installed? Or give KubeRayExecutor(crd_dir=...) to check manifests here)"
    if exc.status == 404:
        return " (the KubeRay CRDs are not installed in this cluster, or the namespace does not exist)"
    return ""


class _Closing:
    """The port-forward socket with ``with`` support (what the relay expects), closing the socket after."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def __enter__(self) -> _Closing:
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()
