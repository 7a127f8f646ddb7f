"""A Ray job submitted to a cluster's dashboard (its job API), for the backends whose clusters have one here."""

from __future__ import annotations

import abc
import sys
import time
from pathlib import Path
from typing import Any

from nemoflow.errors import ExecutorError, UserError
from nemoflow.executors import ray as ray_api
from nemoflow.ray import state
from nemoflow.ray.backend import JobBackend, JobStatus

KIND = "jobs"


class DashboardJobBackend(JobBackend):
    """Submit ``command`` through the dashboard at :meth:`address`; remember the job id under the job's name."""

    @abc.abstractmethod
    def address(self) -> str:
        """The dashboard URL this machine reaches the job's cluster at."""

    def start(
        self,
        command: str,
        workdir: str | None,
        runtime_env_yaml: str | None,
        pre_ray_start_commands: list[str],
        dryrun: bool,
    ) -> str | None:
        runtime_env = runtime_env_for(self.executor, workdir, runtime_env_yaml)
        entrypoint = " && ".join([*pre_ray_start_commands, command])
        if dryrun:
            return f"ray job submit --address {self.address()} --runtime-env-json '{runtime_env}' -- {entrypoint}"
        address = self.address()
        job_id = f"{self.name}-{time.time_ns()}"
        ray_api.submit_job(
            address,
            entrypoint=entrypoint,
            submission_id=job_id,
            runtime_env=runtime_env,
            entrypoint_num_cpus=getattr(self.executor, "num_cpus", None),
            entrypoint_num_gpus=getattr(self.executor, "num_gpus", None),
        )
        state.save(KIND, self.name, {"backend": self.kind, "job_id": job_id, "cluster": self.cluster_name})
        return job_id

    def job_id(self) -> str | None:
        known = state.load(KIND, self.name)
        return known["job_id"] if known else None

    def status(self) -> JobStatus:
        job_id = self.job_id()
        if job_id is None:
            return JobStatus(self.name, self.kind, "NOT_FOUND")
        info = ray_api.job_info(self.address(), job_id)
        return JobStatus(
            self.name, self.kind, info["status"], job_id, info["message"], info["driver_exit_code"], {"address": self.address()}
        )

    def logs(self, follow: bool, lines: int) -> str:
        job_id = self._known_id()
        address = self.address()
        if follow:
            chunks: list[str] = []

            def write(text: str) -> None:
                chunks.append(text)
                sys.stdout.write(text)
                sys.stdout.flush()

            ray_api.follow_logs(address, job_id, write)
            text = "".join(chunks)
        else:
            text = ray_api.job_logs(address, job_id)
        return last_lines(text, lines)

    def stop(self) -> None:
        job_id = self.job_id()
        if job_id is not None:
            ray_api.stop_job(self.address(), job_id)

    def _known_id(self) -> str:
        job_id = self.job_id()
        if job_id is None:
            raise ExecutorError(f"Ray job {self.name!r} has not been started (RayJob.start)")
        return job_id


def runtime_env_for(executor: Any, workdir: str | None, runtime_env_yaml: str | None) -> dict[str, Any]:
    """The executor's runtime_env, then the YAML file's (loaded safely), then ``workdir`` and env vars."""
    runtime_env = dict(getattr(executor, "runtime_env", {}) or {})
    if runtime_env_yaml:
        import yaml

        path = Path(runtime_env_yaml).expanduser()
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise UserError(f"cannot read the runtime_env YAML {path}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise UserError(f"{path}: a runtime_env is a mapping (working_dir, pip, env_vars, ...)")
        runtime_env.update(loaded)
    if workdir:
        runtime_env["working_dir"] = str(Path(workdir).expanduser().resolve())
    env = {**runtime_env.get("env_vars", {}), **getattr(executor, "env_vars", {})}
    if env:
        runtime_env["env_vars"] = env
    return runtime_env


def last_lines(text: str, lines: int) -> str:
    if lines <= 0:
        return text
    return "\n".join(text.rstrip("\n").split("\n")[-lines:]) + ("\n" if text else "")
