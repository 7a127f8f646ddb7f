"""Stage a job for a backend that does not share this machine's paths: where its code, inputs and outputs live there.

A step always runs as ``python -m nemoflow.run_step JOB.json``. Here the job's paths are rewritten
for the far side (a container, a cluster reached over SSH), nemoflow's own source is shipped next to
the code (so the far side needs only Python and the step's own packages), and the outputs come back.
"""

from __future__ import annotations

import functools
import os
import posixpath
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemoflow.executors.packagers import Package, Packager, PatternPackager

JOB_FILE = "nemoflow-job.json"
LOG_FILE = "nemoflow.log"


@dataclass(frozen=True)
class RemotePaths:
    """Where one job's files are on the far side.

    Attributes:
        root: the job's own folder there (its job file and log).
        output_dir: where the step writes its outputs there.
        runtime_dir: nemoflow's shipped source (put first on PYTHONPATH), or None when installed there.
        mounts: local folder -> the folder that mirrors it there (the unpacked code archive, a bind
            mount); a local path under none of them is taken to be the same there (a shared filesystem).
        inputs: upstream step name -> its outputs' folder there.
    """

    root: str
    output_dir: str
    runtime_dir: str | None = None
    mounts: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)

    @property
    def job_file(self) -> str:
        return posixpath.join(self.root, JOB_FILE)

    @property
    def log_file(self) -> str:
        return posixpath.join(self.root, LOG_FILE)


def remote_spec(spec: dict[str, Any], paths: RemotePaths) -> dict[str, Any]:
    """The run_step job ``spec`` with every path as the far side sees it."""
    out = dict(spec)
    out["output_dir"] = paths.output_dir
    out["upstream_dirs"] = {name: paths.inputs.get(name, folder) for name, folder in spec["upstream_dirs"].items()}
    out["workdir"] = map_path(spec["workdir"], paths)
    search = [paths.runtime_dir] if paths.runtime_dir else []
    pipeline = spec.get("pipeline")
    if pipeline:
        out["pipeline"] = {**pipeline, "file": map_path(pipeline["file"], paths)}
        search.append(posixpath.dirname(out["pipeline"]["file"]))
    search += [map_path(p, paths) for p in spec.get("sys_path", []) if not _is_site_dir(p)]
    out["sys_path"] = list(dict.fromkeys(search))
    return out


def map_path(local: str, paths: RemotePaths) -> str:
    """Where the local path ``local`` is on the far side: under the deepest mount that holds it, else unchanged."""
    for folder in sorted(paths.mounts, key=len, reverse=True):
        rel = os.path.relpath(local, folder)
        if rel == ".":
            return paths.mounts[folder]
        if not rel.startswith(".."):
            return posixpath.join(paths.mounts[folder], *Path(rel).parts)
    return local


def run_command(python: str, paths: RemotePaths) -> list[str]:
    """The command that runs the staged job on the far side."""
    return [python, "-m", "nemoflow.run_step", paths.job_file]


def run_env(paths: RemotePaths) -> dict[str, str]:
    """Environment variables the staged job needs (nemoflow's runtime importable, unbuffered output)."""
    env = {"PYTHONUNBUFFERED": "1", "NEMOFLOW_OUTPUT_DIR": paths.output_dir}
    if paths.runtime_dir:
        env["PYTHONPATH"] = paths.runtime_dir
    return env


def shell_line(command: list[str], env: dict[str, str] | None = None) -> str:
    """``command`` as one shell line, with ``env`` exported first."""
    exports = [f"export {k}={shlex.quote(v)}" for k, v in (env or {}).items()]
    return "; ".join([*exports, shlex.join(command)])


def _is_site_dir(path: str) -> bool:
    return "site-packages" in path or "dist-packages" in path or path.endswith(".zip")


@functools.cache
def _runtime_packager() -> PatternPackager:
    return PatternPackager(include=["nemoflow/**/*.py", "nemoflow/py.typed"])


def runtime_package(dest_dir: Path) -> Package:
    """nemoflow's own source as a deterministic archive in ``dest_dir``, made once per process: the code
    that runs here is the code loaded at its start."""
    source_root = Path(__file__).resolve().parent.parent.parent
    return _once(
        ("runtime", str(dest_dir)), lambda: _runtime_packager().package(source_root, dest_dir, name="nemoflow-runtime")
    )


def code_package(packager: Packager | None, workdir: str, dest_dir: Path, build: str) -> Package | None:
    """The step's code, packaged by its executor's packager once per build (``build``: its experiment id),
    so every step of a build ships the same snapshot; None: no packager, paths are shared."""
    if packager is None:
        return None
    marker = ("code", packager.model_dump_json(), workdir, str(dest_dir), build)
    return _once(marker, lambda: packager.package(Path(workdir), dest_dir, name="code"))


_PACKAGES: dict[tuple[str, ...], Package] = {}


def _once(marker: tuple[str, ...], make: Callable[[], Package]) -> Package:
    """The package made for ``marker`` in this process, while its archive is still there; else a new one."""
    package = _PACKAGES.get(marker)
    if package is None or not package.path.exists():
        package = _PACKAGES[marker] = make()
    return package
