"""DockerExecutor(runtime=..., ipc_mode=...) against the real dockerd of .ci/services.sh."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
from integration.services import docker_service  # noqa: F401  (the dockerd and image of .ci/services.sh)

import nemoflow as run

from helpers import nemoflow, published_target, runs_by_step

STEPS = """
import os
import nemoflow as run


def ipc_namespace() -> str:
    return os.readlink("/proc/self/ns/ipc")


def limits() -> dict:
    import resource

    status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
    return {"nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)), "cap_eff": status["CapEff"].strip()}


exp = run.Experiment("docker_options")
"""


def _pipeline(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "p.py"
    path.write_text(STEPS + textwrap.dedent(body))
    return path


def test_ipc_mode_host_shares_this_machines_ipc_namespace(tmp_path: Path, docker_service) -> None:  # noqa: F811
    image = docker_service.python_image
    pipeline = _pipeline(
        tmp_path,
        f"""
        exp.add(run.Partial(ipc_namespace), name="host_ipc",
                executor=run.DockerExecutor(container_image={image!r}, ipc_mode="host", runtime="runc"))
        exp.add(run.Partial(ipc_namespace), name="own_ipc", executor=run.DockerExecutor(container_image={image!r}))
        """,
    )
    nemoflow("build", str(pipeline), cwd=tmp_path, check=True)
    ours = os.readlink("/proc/self/ns/ipc")
    assert json.loads((published_target(tmp_path, "host_ipc") / "result.json").read_text()) == ours
    assert json.loads((published_target(tmp_path, "own_ipc") / "result.json").read_text()) != ours


def test_ulimits_reach_the_container(tmp_path: Path, docker_service) -> None:  # noqa: F811
    image = docker_service.python_image
    pipeline = _pipeline(
        tmp_path,
        f"""
        exp.add(run.Partial(limits), name="limited",
                executor=run.DockerExecutor(container_image={image!r}, ulimits=["nofile:1024:2048"]))
        exp.add(run.Partial(limits), name="plain", executor=run.DockerExecutor(container_image={image!r}))
        """,
    )
    nemoflow("build", str(pipeline), cwd=tmp_path, check=True)
    limited = json.loads((published_target(tmp_path, "limited") / "result.json").read_text())
    plain = json.loads((published_target(tmp_path, "plain") / "result.json").read_text())
    assert limited["nofile"] == [1024, 2048] and plain["nofile"] != [1024, 2048]


def test_privileged_reaches_the_container(tmp_path: Path, docker_service) -> None:  # noqa: F811
    image = docker_service.python_image
    pipeline = _pipeline(
        tmp_path,
        f"""
        exp.add(run.Partial(limits), name="privileged",
                executor=run.DockerExecutor(container_image={image!r}, privileged=True))
        exp.add(run.Partial(limits), name="plain", executor=run.DockerExecutor(container_image={image!r}))
        """,
    )
    proc = nemoflow("build", str(pipeline), cwd=tmp_path)
    plain = json.loads((published_target(tmp_path, "plain") / "result.json").read_text())
    if proc.returncode == 0:
        privileged = json.loads((published_target(tmp_path, "privileged") / "result.json").read_text())
        assert int(privileged["cap_eff"], 16) > int(plain["cap_eff"], 16)  # all capabilities
    else:  # a sandboxed dockerd refuses to give a container every capability: it was asked to
        assert "unable to apply caps" in " ".join((proc.stdout + proc.stderr).split())


def test_an_unknown_runtime_fails_the_step_naming_it(tmp_path: Path, docker_service) -> None:  # noqa: F811
    image = docker_service.python_image
    pipeline = _pipeline(
        tmp_path,
        f"""
        exp.add(run.Partial(ipc_namespace), name="bad_runtime",
                executor=run.DockerExecutor(container_image={image!r}, runtime="nemoflow-no-such-runtime"))
        """,
    )
    proc = nemoflow("build", str(pipeline), cwd=tmp_path)
    assert proc.returncode != 0
    assert "nemoflow-no-such-runtime" in proc.stdout + proc.stderr
    assert runs_by_step(tmp_path)["bad_runtime"]["status"] == "failed"


def test_several_processes_need_a_launcher(tmp_path: Path) -> None:
    pipeline = _pipeline(
        tmp_path,
        """
        exp.add(run.Partial(ipc_namespace), name="multi",
                executor=run.DockerExecutor(container_image="img", ntasks_per_node=2))
        """,
    )
    proc = nemoflow("build", str(pipeline), cwd=tmp_path)
    assert proc.returncode != 0
    assert 'set launcher="torchrun"' in " ".join((proc.stderr + proc.stdout).split())


def test_torchrun_launcher_starts_the_step_through_torchrun(tmp_path: Path, docker_service) -> None:  # noqa: F811
    image = docker_service.python_image  # Python without torch: torchrun is asked for, and is missing
    pipeline = _pipeline(
        tmp_path,
        f"""
        exp.add(run.Partial(ipc_namespace), name="multi",
                executor=run.DockerExecutor(container_image={image!r}, ntasks_per_node=2, launcher="torchrun"))
        """,
    )
    proc = nemoflow("build", str(pipeline), cwd=tmp_path)
    assert proc.returncode != 0
    [log] = (tmp_path / "targets" / ".failed" / "multi").glob("*/nemoflow.log")
    assert "torch.distributed.run" in log.read_text() and "No module named 'torch'" in log.read_text()


def test_runtime_and_ipc_mode_default_to_dockers_own() -> None:
    executor = run.DockerExecutor(container_image="img")
    assert executor.runtime is None and executor.ipc_mode is None
    with pytest.raises(ValueError):
        run.DockerExecutor(container_image="img", ntasks_per_node=0)
    with pytest.raises(ValueError, match="bad ulimit"):
        run.DockerExecutor(container_image="img", ulimits=["nofile"])
    executor = run.DockerExecutor(container_image="img", ulimits=["memlock:-1", "nofile=10:20"], privileged=True)
    assert executor.ulimits == ["memlock:-1", "nofile=10:20"] and executor.privileged
