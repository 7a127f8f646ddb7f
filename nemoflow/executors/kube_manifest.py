"""The ``batch/v1`` Job a ``KubernetesExecutor`` step runs as, as a pure function, and its check against the
Kubernetes API's own schema (``kubernetes-validate``) before any request is sent."""

from __future__ import annotations

import re
from typing import Any

from nemoflow.errors import UserError

CONTAINER = "step"
MANAGED_BY = {"app.kubernetes.io/managed-by": "nemoflow"}


def label_value(text: str) -> str:
    """``text`` as a valid label value: at most 63 of A-Z, a-z, 0-9, '-', '_', '.', alphanumeric at both ends."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)


def job_manifest(
    executor: Any,
    name: str,
    command: list[str],
    env: dict[str, str],
    workdir: str,
    step: str,
    key: str,
) -> dict[str, Any]:
    """The Job for one step of ``executor`` (a KubernetesExecutor): one pod, never restarted, no retries."""
    labels = {**executor.labels, **MANAGED_BY, "nemoflow/step": label_value(step), "nemoflow/key": key[:63]}
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": executor.image,
        "command": command,
        "workingDir": workdir,
        "env": [{"name": k, "value": v} for k, v in env.items()] + secret_env(executor.secret_env_vars),
        "volumeMounts": executor.volume_mounts,
    }
    if executor.image_pull_policy:
        container["imagePullPolicy"] = executor.image_pull_policy
    resources = _resources(executor)
    if resources:
        container["resources"] = {"requests": resources, "limits": resources}
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container], "volumes": executor.volumes}
    optional = {
        "serviceAccountName": executor.service_account,
        "nodeSelector": executor.node_selector or None,
        "tolerations": executor.tolerations or None,
        "imagePullSecrets": [{"name": s} for s in executor.image_pull_secrets] or None,
        "securityContext": executor.security_context or None,
    }
    pod.update({k: v for k, v in optional.items() if v is not None})
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "template": {"metadata": {"labels": labels}, "spec": pod},
    }
    if executor.ttl_seconds_after_finished is not None:
        spec["ttlSecondsAfterFinished"] = executor.ttl_seconds_after_finished
    if executor.active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = executor.active_deadline_seconds
    metadata = {
        "name": name,
        "namespace": executor.namespace,
        "labels": labels,
        "annotations": {"nemoflow/step": step, "nemoflow/key": key},
    }
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}


def secret_env(refs: dict[str, str]) -> list[dict[str, Any]]:
    """``{"NAME": "secret/key"}`` as env entries the kubelet fills from the Secret (no value leaves the cluster)."""
    out = []
    for name, ref in refs.items():
        secret, _, key = ref.partition("/")
        out.append({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
    return out


def _resources(executor: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if executor.cpus is not None:
        found["cpu"] = str(executor.cpus)
    if executor.memory is not None:
        found["memory"] = str(executor.memory)
    if executor.gpus:
        found["nvidia.com/gpu"] = str(executor.gpus)
    return found


def validate(manifest: dict[str, Any], version: str, step: str) -> None:
    """Raise a UserError naming the field when ``manifest`` is not a valid object for Kubernetes ``version``
    (strict: an unknown field is an error, as ``fieldValidation=Strict`` makes it)."""
    try:
        import kubernetes_validate
    except ImportError:
        raise UserError(
            "KubernetesExecutor checks every Job against the Kubernetes schema before sending it",
            hint="pip install 'nemoflow[kubernetes]' (it brings kubernetes-validate)",
        ) from None
    try:
        kubernetes_validate.validate(manifest, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(part) for part in exc.path) or "(the Job)"
        raise UserError(
            f"step {step!r}: the Kubernetes Job is not valid for Kubernetes {version}: {where}: {exc.message}",
            hint="check the KubernetesExecutor field that sets it (volumes, volume_mounts and tolerations are"
            " Kubernetes objects in camelCase, as in a pod spec)",
        ) from None
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as exc:
        raise UserError(
            f"kubernetes-validate has no schema for Kubernetes {version}: {exc}",
            hint="set KubernetesExecutor(kubernetes_version=...) to a version it knows, e.g. '1.33.0'",
        ) from None
