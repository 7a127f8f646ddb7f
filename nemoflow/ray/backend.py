"""What a Ray backend does for ``RayCluster`` and ``RayJob``, and which backend an executor selects."""

from __future__ import annotations

import abc
import atexit
import contextlib
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from nemoflow.errors import UserError

if TYPE_CHECKING:
    from nemoflow.executors.base import Executor


@dataclass
class ClusterStatus:
    """Where a named cluster is: ``state`` is one of NOT_FOUND, PENDING, STARTING, RUNNING, STOPPED, FAILED."""

    name: str
    backend: str
    state: str
    ready: bool = False
    dashboard: str | None = None  # the dashboard URL as this machine reaches it, when it can without a forward
    details: dict[str, Any] = field(default_factory=dict)  # the backend's own ids: pids, Slurm job id, CR name

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class JobStatus:
    """A Ray job's state: PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED or NOT_FOUND (Ray's own words)."""

    name: str
    backend: str
    state: str
    job_id: str | None = None
    message: str = ""
    exit_code: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.state in ("SUCCEEDED", "FAILED", "STOPPED")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ClusterBackend(abc.ABC):
    """One named Ray cluster on one kind of infrastructure."""

    kind: str = ""

    def __init__(self, name: str, executor: Executor) -> None:
        self.name = name
        self.executor = executor

    @abc.abstractmethod
    def start(
        self, *, wait_until_ready: bool, timeout: float, dryrun: bool, pre_ray_start_commands: list[str]
    ) -> str | None:
        """Start the cluster (reuse a live one of the same name); with ``dryrun`` only return what would be done."""

    @abc.abstractmethod
    def status(self) -> ClusterStatus: ...

    @abc.abstractmethod
    def port_forward(self, port: int, target_port: int) -> None:
        """Make 127.0.0.1:``port`` here reach the head's ``target_port`` (in a thread of this process)."""

    @abc.abstractmethod
    def stop(self) -> None: ...


class JobBackend(abc.ABC):
    """One named Ray job: on a running cluster (``cluster_name``), or with a cluster of its own."""

    kind: str = ""

    def __init__(self, name: str, executor: Executor, cluster_name: str | None) -> None:
        self.name = name
        self.executor = executor
        self.cluster_name = cluster_name

    @abc.abstractmethod
    def start(
        self,
        command: str,
        workdir: str | None,
        runtime_env_yaml: str | None,
        pre_ray_start_commands: list[str],
        dryrun: bool,
    ) -> str | None:
        """Submit; returns the job id (or, with ``dryrun``, what would be submitted)."""

    @abc.abstractmethod
    def status(self) -> JobStatus: ...

    @abc.abstractmethod
    def logs(self, follow: bool, lines: int) -> str:
        """The last ``lines`` lines (all with ``lines <= 0``); ``follow`` prints them as they come until the job ends."""

    @abc.abstractmethod
    def stop(self) -> None: ...


# Executor class name -> (module of its backends, cluster backend class, job backend class).
_BACKENDS = {
    "RayExecutor": ("nemoflow.ray.local", "LocalClusterBackend", "LocalJobBackend"),
    "SlurmExecutor": ("nemoflow.ray.slurm", "SlurmClusterBackend", "SlurmJobBackend"),
    "KubeRayExecutor": ("nemoflow.ray.kuberay", "KubeRayClusterBackend", "KubeRayJobBackend"),
}
# Executors that select a backend not built yet (issue 14 built them all).
_PLANNED: dict[str, str] = {}


def _backend_class(executor: Executor, index: int) -> type:
    import importlib

    kind = type(executor).__name__
    if kind in _PLANNED:
        raise UserError(
            f"RayCluster/RayJob with a {kind} ({_PLANNED[kind]}) is not available yet",
            hint="start the cluster yourself and use nemoflow.RayExecutor(address=<its dashboard URL>)",
        )
    if kind not in _BACKENDS:
        raise UserError(
            f"no Ray backend for {kind}",
            hint="give RayCluster/RayJob a nemoflow.RayExecutor (a head on this machine)",
        )
    module, *classes = _BACKENDS[kind]
    return getattr(importlib.import_module(module), classes[index])


def cluster_backend(name: str, executor: Executor) -> ClusterBackend:
    return _backend_class(executor, 0)(name, executor)


def job_backend(name: str, executor: Executor, cluster_name: str | None) -> JobBackend:
    return _backend_class(executor, 1)(name, executor, cluster_name)


# ---- port forwards: one per local port in this process; forwarding a port again replaces the old one ----
_FORWARDS: dict[int, contextlib.ExitStack] = {}


def open_forward(port: int, forward: contextlib.AbstractContextManager[Any]) -> None:
    """Keep ``forward`` (a context manager that serves 127.0.0.1:``port``) open, closing an older one first."""
    close_forward(port)
    stack = contextlib.ExitStack()
    stack.enter_context(forward)
    _FORWARDS[port] = stack


def close_forward(port: int) -> None:
    stack = _FORWARDS.pop(port, None)
    if stack is not None:
        stack.close()


def close_all_forwards() -> None:
    for port in list(_FORWARDS):
        close_forward(port)


atexit.register(close_all_forwards)  # while the relays' threads still run (before the interpreter ends them)
