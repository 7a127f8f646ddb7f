"""Session fixtures for the real services `.ci/services.sh` starts: sshd, Slurm (with sacct) and Docker.

The script records what runs in /var/lib/nemoflow-ci/services.json (another file with the env var
NEMOFLOW_SERVICES). Each fixture reads its part, checks that the service really answers, and returns it as a
frozen dataclass; when the service is missing it skips the test and names the system component to start.
tests/integration/conftest.py imports the fixtures, so tests only ask for `sshd_service`, `slurm_service`
or `docker_service` by name.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

DEFAULT_SERVICES_JSON = "/var/lib/nemoflow-ci/services.json"
HOW = "run `sudo bash .ci/services.sh`"
CHECK_TIMEOUT = 20.0  # seconds for one check command


@dataclass(frozen=True)
class SshdService:
    host: str
    port: int
    user: str
    identity: str  # private key of `user`, readable by the tests (root)
    known_hosts: str  # has the host key of [host]:port
    pid_file: str


@dataclass(frozen=True)
class SlurmService:
    partition: str
    cluster: str
    remote_python: str  # a Python with pydantic, dill, yaml, numpy that every user can run
    torch_python: str | None = None  # Debian's CPU torch (python3-torch) plus pydantic and dill
    ray_python: str | None = None  # ray[default] plus pydantic, dill and yaml, runnable by every user


@dataclass(frozen=True)
class DockerService:
    base_url: str  # e.g. unix:///var/run/docker.sock
    python_image: str  # an image with python3 and pydantic, dill, yaml, numpy


def services_json_path() -> Path:
    return Path(os.environ.get("NEMOFLOW_SERVICES") or DEFAULT_SERVICES_JSON)


def _skip(component: str, why: str) -> NoReturn:
    pytest.skip(f"needs {component}: {HOW} ({why})")


def _section(name: str, component: str) -> dict[str, Any]:
    path = services_json_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        _skip(component, f"{path} does not exist")
    except (OSError, ValueError) as exc:
        _skip(component, f"cannot read {path}: {exc}")
    section = data.get(name) if isinstance(data, dict) else None
    if not isinstance(section, dict):
        _skip(component, f"{path} has no {name!r} entry")
    return section


def _run(component: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=CHECK_TIMEOUT, check=False)
    except FileNotFoundError:
        _skip(component, f"{argv[0]} is not on PATH")
    except subprocess.TimeoutExpired:
        _skip(component, f"`{' '.join(argv)}` did not answer in {CHECK_TIMEOUT:.0f} s")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


@pytest.fixture(scope="session")
def sshd_service() -> SshdService:
    """The loopback sshd: log in as `user` with `identity`, checking the host key against `known_hosts`."""
    component = "sshd (openssh-server)"
    section = _section("sshd", component)
    try:
        service = SshdService(
            host=str(section["host"]),
            port=int(section["port"]),
            user=str(section["user"]),
            identity=str(section["identity"]),
            known_hosts=str(section["known_hosts"]),
            pid_file=str(section.get("pid_file", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        _skip(component, f"bad sshd entry in {services_json_path()}: {exc!r}")
    for what, path in (("client key", service.identity), ("known_hosts file", service.known_hosts)):
        if not os.access(path, os.R_OK):
            _skip(component, f"the {what} {path} is missing or not readable by this user")
    try:
        with socket.create_connection((service.host, service.port), timeout=5.0) as conn:
            conn.settimeout(5.0)
            banner = conn.recv(64)
    except OSError as exc:
        _skip(component, f"nothing answers on {service.host}:{service.port}: {exc}")
    if not banner.startswith(b"SSH-"):
        _skip(component, f"{service.host}:{service.port} answers, but not with an SSH banner: {banner!r}")
    return service


@pytest.fixture(scope="session")
def slurm_service() -> SlurmService:
    """The one-node Slurm cluster with a usable node in `partition` and working sacct."""
    component = "Slurm (munge, slurmctld, slurmd, slurmdbd with MariaDB)"
    section = _section("slurm", component)
    try:
        service = SlurmService(
            partition=str(section["partition"]),
            cluster=str(section["cluster"]),
            remote_python=str(section["remote_python"]),
            torch_python=section.get("torch_python"),
            ray_python=section.get("ray_python"),
        )
    except (KeyError, TypeError) as exc:
        _skip(component, f"bad slurm entry in {services_json_path()}: {exc!r}")
    for tool in ("sinfo", "sbatch", "squeue", "sacct", "scancel"):
        if shutil.which(tool) is None:
            _skip(component, f"{tool} is not on PATH")
    states = _run(component, ["sinfo", "-h", "-p", service.partition, "-o", "%t"])
    usable = {"idle", "mix", "alloc", "comp"}
    found = set(states.stdout.split())
    if states.returncode != 0 or not found & usable:
        detail = _last_line(states.stderr) if states.returncode else f"node states {sorted(found) or 'none'}"
        _skip(component, f"partition {service.partition!r} has no usable node: {detail}")
    acct = _run(component, ["sacct", "-n", "-X", "-S", "now-1minutes", "-o", "JobID"])
    if acct.returncode != 0 or "disabled" in acct.stderr:
        _skip(component, f"sacct does not work: {_last_line(acct.stderr or acct.stdout)}")
    if not os.access(service.remote_python, os.X_OK):
        _skip(component, f"the remote Python {service.remote_python} is missing")
    return service


def _docker_sdk_check(service: DockerService) -> str | None:
    """The error, or None when the engine answers and has the image; uses the docker SDK."""
    import docker  # the optional extra `nemoflow[docker]`
    from docker.errors import DockerException, ImageNotFound

    try:
        client = docker.DockerClient(base_url=service.base_url, timeout=int(CHECK_TIMEOUT))
    except DockerException as exc:
        return f"no engine at {service.base_url}: {exc}"
    try:
        client.ping()
        client.images.get(service.python_image)
    except ImageNotFound:
        return f"the image {service.python_image} is not there"
    except DockerException as exc:
        return f"the engine at {service.base_url} does not answer: {exc}"
    finally:
        client.close()
    return None


def _docker_cli_check(component: str, service: DockerService) -> str | None:
    """The error, or None when the engine answers and has the image; uses the docker CLI."""
    info = _run(component, ["docker", "-H", service.base_url, "info", "--format", "{{.ServerVersion}}"])
    if info.returncode != 0 or not info.stdout.strip():
        return f"the engine at {service.base_url} does not answer: {_last_line(info.stderr)}"
    image = _run(component, ["docker", "-H", service.base_url, "image", "inspect", service.python_image])
    if image.returncode != 0:
        return f"the image {service.python_image} is not there"
    return None


@pytest.fixture(scope="session")
def docker_service() -> DockerService:
    """The Docker engine at `base_url`, with `python_image` present."""
    component = "Docker (docker.io, dockerd)"
    section = _section("docker", component)
    try:
        service = DockerService(base_url=str(section["base_url"]), python_image=str(section["python_image"]))
    except (KeyError, TypeError) as exc:
        _skip(component, f"bad docker entry in {services_json_path()}: {exc!r}")
    try:
        error = _docker_sdk_check(service)
    except ImportError:
        error = _docker_cli_check(component, service)
    if error:
        _skip(component, error)
    return service
