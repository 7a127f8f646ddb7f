"""Executors by name; each backend's module (and SDK) is imported only when asked for."""

from __future__ import annotations

# serialize (and with it pydantic) is imported only when an executor is written or read as data.
import importlib
import json
from typing import Any

from nemoflow.errors import UserError, did_you_mean
from nemoflow.executors.base import Executor, Handle, Job, JobResult, JobState

REGISTRY: dict[str, str] = {
    "local": "nemoflow.executors.local:LocalExecutor",
    "docker": "nemoflow.executors.docker:DockerExecutor",
    "slurm": "nemoflow.executors.slurm:SlurmExecutor",
    "ray": "nemoflow.executors.ray:RayExecutor",
    "kuberay": "nemoflow.executors.kuberay:KubeRayExecutor",
    "kubernetes": "nemoflow.executors.kubernetes:KubernetesExecutor",
    "dgxcloud": "nemoflow.executors.dgxcloud:DGXCloudExecutor",
    "lepton": "nemoflow.executors.lepton:LeptonExecutor",
}


def executor_class(name: str) -> type[Executor]:
    """The executor class registered as ``name``."""
    if name not in REGISTRY:
        raise UserError(
            f"unknown executor {name!r}", hint=did_you_mean(name, REGISTRY) or f"known: {', '.join(REGISTRY)}"
        )
    module, _, cls = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def make_executor(name: str, **fields: Any) -> Executor:
    return executor_class(name)(**fields)


def executor_to_data(executor: Executor) -> dict[str, Any]:
    """An executor as JSON data: its class by import path and the fields that differ from their defaults."""
    from nemoflow.configs.serialize import import_path

    return {"class": import_path(type(executor)), "fields": executor.model_dump(mode="json", exclude_defaults=True)}


def executor_from_data(data: dict[str, Any]) -> Executor:
    """The executor :func:`executor_to_data` describes."""
    from nemoflow.configs.serialize import import_object

    return import_object(data["class"])(**data["fields"])


def backend_of(run: dict[str, Any]) -> Executor | None:
    """The executor a ledger run's job was submitted to, when it recorded one it can cancel by job id."""
    details = json.loads(run.get("details") or "{}")
    if "executor" not in details or not run.get("job_id"):
        return None
    return executor_from_data(details["executor"])


__all__ = [
    "REGISTRY",
    "Executor",
    "Handle",
    "Job",
    "JobResult",
    "JobState",
    "backend_of",
    "executor_class",
    "executor_from_data",
    "executor_to_data",
    "make_executor",
]
