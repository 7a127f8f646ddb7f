"""``nemoflow.ray.RayJob``: NeMo Run's Ray job, on a named cluster or with a cluster of its own."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nemoflow.ray.backend import job_backend

if TYPE_CHECKING:
    from nemoflow.executors.base import Executor


class RayJob:
    """A named Ray job. ``cluster_name`` attaches it to a running ``RayCluster`` of that name; without it the job
    goes to the executor's own cluster (``RayExecutor(address=...)``), or starts one for itself (Slurm, KubeRay).
    """

    def __init__(self, name: str, executor: Executor, cluster_name: str | None = None) -> None:
        self.name = name
        self.executor = executor
        self.cluster_name = cluster_name
        self.backend = job_backend(name, executor, cluster_name)

    def start(
        self,
        command: str,
        workdir: str | None = None,
        runtime_env_yaml: str | None = None,
        pre_ray_start_commands: list[str] | None = None,
        dryrun: bool = False,
    ) -> Any:
        """Submit ``command`` (run with ``workdir`` as Ray's working_dir); the job id, or with ``dryrun`` the plan."""
        found = self.backend.start(command, workdir, runtime_env_yaml, list(pre_ray_start_commands or []), dryrun)
        if dryrun and found is not None:
            print(found)
        return found

    def status(self, display: bool = True) -> dict[str, Any]:
        found = self.backend.status()
        if display:
            print(f"Ray job {self.name} ({found.backend}): {found.state}{f' [{found.job_id}]' if found.job_id else ''}")
        return found.to_dict()

    def logs(self, follow: bool = False, lines: int = 100) -> str:
        """The job's last ``lines`` log lines; ``follow`` prints the log as it grows until the job ends."""
        text = self.backend.logs(follow, lines)
        if not follow:
            print(text, end="")
        return text

    def stop(self) -> None:
        self.backend.stop()
