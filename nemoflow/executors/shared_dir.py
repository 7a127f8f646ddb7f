"""Stage a job in a folder the workload and this machine both see (a PVC, a mounted shared filesystem).

The cloud executors (DGX Cloud, Lepton) run a step in a container that mounts a volume; nemoflow
keeps its job folders in one folder of it: ``remote_dir`` as the container sees it, ``local_dir`` as
this machine sees it (the same path when the build itself runs on the cluster, else where the volume
is mounted here). Layout::

    <dir>/.nemoflow/runtime-<digest>/      nemoflow's own source (shared by every job)
    <dir>/.nemoflow/code-<digest>/         the packager's code archive, unpacked (shared by a build)
    <dir>/<experiment>/<job>/              nemoflow-job.json, nemoflow.log, exit_code
                         output/           where the step writes; copied into the store when it succeeds
                         inputs/<step>/    each upstream step's outputs, copied from the store
                         code/             without a packager: the pipeline file only
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nemoflow.errors import ExecutorError
from nemoflow.executors.base import Job
from nemoflow.executors.docker import extract_once
from nemoflow.executors.packagers import Packager
from nemoflow.executors.staging import RemotePaths, code_package, remote_spec, run_command, run_env, runtime_package

EXIT_FILE = "exit_code"
_LOCAL_ONLY_ENV = ("NEMOFLOW_PARENT_PID",)  # the workload does not follow the build's process


@dataclass
class SharedJob:
    """One job staged in the shared folder: its paths there, its folder here and the command the workload runs."""

    paths: RemotePaths
    local_root: Path
    command: list[str]
    env: dict[str, str]
    code_digest: str | None = None

    def details(self) -> dict[str, Any]:
        return {"root": self.paths.root, "local_root": str(self.local_root), "code_digest": self.code_digest}


def stage(
    job: Job,
    *,
    remote_dir: str,
    local_dir: str,
    packager: Packager | None,
    python: str,
    env_vars: dict[str, str],
    pre_launch: list[str] | None = None,
) -> SharedJob:
    """Put ``job``'s runtime, code, inputs and job file in the shared folder; the workload's command."""
    if job.spec is None or job.stage_dir is None:
        raise ExecutorError(f"step {job.step!r}: the cloud executors run nemoflow steps only (no job spec)")
    local = Path(local_dir)
    if not local.is_dir():
        raise ExecutorError(
            f"step {job.step!r}: the shared folder {local_dir!r} is not on this machine; mount the volume here "
            "(or run the build where it is mounted) and name it with the executor's local folder field"
        )
    root = _root(job, remote_dir)
    here = Path(_to_local(root, remote_dir, local_dir))
    shutil.rmtree(here, ignore_errors=True)  # a re-run of the same job name starts clean
    (here / "output").mkdir(parents=True)
    hidden = local / ".nemoflow"
    hidden.mkdir(exist_ok=True)
    runtime = extract_once(runtime_package(job.stage_dir), hidden, "runtime")
    package = code_package(packager, job.cwd, job.stage_dir, job.experiment_id)
    code = None
    if package is not None:
        code = (
            str(package.local_root),
            posixpath.join(remote_dir, ".nemoflow", extract_once(package, hidden, "code").name),
        )
    paths = _layout(job, remote_dir, runtime.name, code)
    spec = remote_spec(job.spec, paths)
    for name, folder in job.spec["upstream_dirs"].items():
        shutil.copytree(folder, _to_local(paths.inputs[name], remote_dir, local_dir), dirs_exist_ok=True)
    if package is None and spec.get("pipeline"):
        target = Path(_to_local(spec["pipeline"]["file"], remote_dir, local_dir))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(job.spec["pipeline"]["file"], target)
    Path(_to_local(spec["workdir"], remote_dir, local_dir)).mkdir(parents=True, exist_ok=True)
    (here / "nemoflow-job.json").write_text(json.dumps(spec, indent=1))
    command, env = _launch(job, paths, spec["workdir"], python, env_vars, pre_launch or [])
    return SharedJob(paths, here, command, env, package.digest if package else None)


def preview(
    job: Job,
    *,
    remote_dir: str,
    packager: Packager | None,
    python: str,
    env_vars: dict[str, str],
    pre_launch: list[str] | None = None,
) -> SharedJob:
    """What :func:`stage` would give for ``job``, with ``<digest>`` for the packages' digests; writes nothing."""
    if job.spec is None:
        raise ExecutorError(f"step {job.step!r}: the cloud executors run nemoflow steps only (no job spec)")
    code = (job.cwd, posixpath.join(remote_dir, ".nemoflow", "code-<digest>")) if packager is not None else None
    paths = _layout(job, remote_dir, "runtime-<digest>", code)
    command, env = _launch(job, paths, remote_spec(job.spec, paths)["workdir"], python, env_vars, pre_launch or [])
    return SharedJob(paths, Path(paths.root), command, env)


def _root(job: Job, remote_dir: str) -> str:
    return posixpath.join(remote_dir, job.experiment_id or "adhoc", job.name)


def _layout(job: Job, remote_dir: str, runtime_name: str, code: tuple[str, str] | None) -> RemotePaths:
    """The job's paths as the workload sees them; ``code``: (local root, folder there) of the code package."""
    assert job.spec is not None
    root = _root(job, remote_dir)
    mounts: dict[str, str] = {}
    if code is not None:
        mounts[code[0]] = code[1]
    else:
        mounts[job.cwd] = posixpath.join(root, "code")
        pipeline = job.spec.get("pipeline")
        if pipeline and os.path.relpath(pipeline["file"], job.cwd).startswith(".."):
            mounts[str(Path(pipeline["file"]).parent)] = posixpath.join(root, "pipeline")
    inputs = {name: posixpath.join(root, "inputs", name) for name in job.spec["upstream_dirs"]}
    runtime_dir = posixpath.join(remote_dir, ".nemoflow", runtime_name)
    return RemotePaths(root, posixpath.join(root, "output"), runtime_dir, mounts=mounts, inputs=inputs)


def _launch(
    job: Job, paths: RemotePaths, workdir: str, python: str, env_vars: dict[str, str], pre_launch: list[str]
) -> tuple[list[str], dict[str, str]]:
    """The workload's command and environment."""
    env = {k: v for k, v in {**job.env, **env_vars}.items() if k not in _LOCAL_ONLY_ENV}
    ours = run_env(paths)
    if "PYTHONPATH" in env and "PYTHONPATH" in ours:  # nemoflow's runtime stays first
        env["PYTHONPATH"] = f"{ours['PYTHONPATH']}:{env['PYTHONPATH']}"
    env = {**ours, **env, "NEMOFLOW_OUTPUT_DIR": paths.output_dir}
    return ["/bin/bash", "-c", _script(workdir, run_command(python, paths), paths, pre_launch)], env


def _script(workdir: str, command: list[str], paths: RemotePaths, pre_launch: list[str]) -> str:
    """The workload's shell line: the pre-launch commands and the step, logged to the job's folder, exit code kept."""
    log = shlex.quote(paths.log_file)
    body = "; ".join([*pre_launch, f"cd {shlex.quote(workdir)}", shlex.join(command)])
    exit_file = shlex.quote(posixpath.join(paths.root, EXIT_FILE))
    # tee: the log is in the shared folder and on the workload's stdout (the service's own log view)
    return f"set -o pipefail; {{ {body}; }} 2>&1 | tee -a {log}; code=$?; echo $code > {exit_file}; exit $code"


def collect(shared: SharedJob, job: Job, succeeded: bool) -> int | None:
    """Append the workload's log to the step's log; with ``succeeded``, copy its outputs into the store.

    Returns the exit code the workload wrote (None when it wrote none)."""
    log = shared.local_root / "nemoflow.log"
    if log.exists():
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(job.log_path, "ab") as out:
            out.write(log.read_bytes())
    if succeeded:
        shutil.copytree(shared.local_root / "output", job.output_dir, dirs_exist_ok=True)
    exit_file = shared.local_root / EXIT_FILE
    text = exit_file.read_text().strip() if exit_file.exists() else ""
    return int(text) if text.lstrip("-").isdigit() else None


def read_log(shared: SharedJob) -> str:
    """What the workload has logged so far, read from the shared folder."""
    log = shared.local_root / "nemoflow.log"
    return log.read_text(errors="replace") if log.exists() else ""


def k8s_name(name: str, limit: int = 34) -> str:
    """``name`` as a workload name the services accept: lower case ``[a-z0-9-]``, a letter first, at most ``limit``
    characters (a longer one is cut and ends with a digest of the whole name)."""
    clean = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if not clean or not clean[0].isalpha():
        clean = f"nf-{clean}".strip("-")
    if len(clean) <= limit:
        return clean
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]  # a cut name stays unique (its run id may be cut off)
    return f"{clean[: limit - 9].rstrip('-')}-{digest}"


def _to_local(remote: str, remote_dir: str, local_dir: str) -> str:
    rel = posixpath.relpath(remote, remote_dir)
    return os.path.join(local_dir, *rel.split("/")) if rel != "." else local_dir
