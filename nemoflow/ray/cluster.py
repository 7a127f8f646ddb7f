"""``nemoflow.ray.RayCluster``: NeMo Run's Ray cluster, on the backend its executor selects."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from nemoflow.ray.backend import ClusterStatus, close_forward, cluster_backend

if TYPE_CHECKING:
    from nemoflow.executors.base import Executor


class RayCluster:
    """A named Ray cluster: ``RayExecutor`` (a head on this machine), ``SlurmExecutor`` or ``KubeRayExecutor``.

    Example:
        cluster = RayCluster("dev", nemoflow.RayExecutor(num_cpus=2))
        cluster.start(timeout=120)
        cluster.port_forward(port=8265, target_port=8265)
        ...
        cluster.stop()
    """

    def __init__(self, name: str, executor: Executor) -> None:
        self.name = name
        self.executor = executor
        self.backend = cluster_backend(name, executor)
        self._forwarded: set[int] = set()

    def start(
        self,
        wait_until_ready: bool = True,
        timeout: float = 600,
        dryrun: bool = False,
        pre_ray_start_commands: list[str] | None = None,
    ) -> Any:
        """Start the cluster, or reuse a live one of this name. With ``dryrun``, print and return what would run."""
        preview = self.backend.start(
            wait_until_ready=wait_until_ready,
            timeout=timeout,
            dryrun=dryrun,
            pre_ray_start_commands=list(pre_ray_start_commands or []),
        )
        if dryrun and preview is not None:
            print(preview)
        return preview

    def status(self, display: bool = True) -> dict[str, Any]:
        """Where the cluster is (state, ready, dashboard, the backend's ids); ``display`` prints a line of it."""
        found: ClusterStatus = self.backend.status()
        if display:
            where = f" at {found.dashboard}" if found.dashboard else ""
            print(f"Ray cluster {self.name} ({found.backend}): {found.state}{' (ready)' if found.ready else ''}{where}")
        return found.to_dict()

    def port_forward(self, port: int = 8265, target_port: int = 8265, wait: bool = False) -> None:
        """Serve 127.0.0.1:``port`` here from the head's ``target_port`` (re-forwarding a port replaces it).

        The forward lives in this process; ``wait=True`` blocks (Ctrl-C ends it).
        """
        self.backend.port_forward(port, target_port)
        self._forwarded.add(port)
        if wait:
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                close_forward(port)

    def stop(self) -> None:
        """Stop the cluster: exactly its processes, its Slurm job or its custom resource; and its forwards."""
        for port in sorted(self._forwarded):
            close_forward(port)
        self._forwarded.clear()
        self.backend.stop()
