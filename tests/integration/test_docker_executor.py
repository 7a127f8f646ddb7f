"""DockerExecutor against the real dockerd of .ci/services.sh, with the image it builds from a debootstrap
rootfs (Debian's python3 plus pydantic/dill/yaml/numpy): no registry is reachable, nothing is pulled.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from nemoflow.executors.base import Job
from nemoflow.executors.docker import DockerExecutor
from nemoflow.executors.staging import RemotePaths

from helpers import background_build, nemoflow, published_target, runs_by_step

STEPS = '''
import os
import sys
import time

import nemoflow


def greet() -> str:
    text = os.environ["GREETING"] + " " + open("/data/name.txt").read().strip()
    (nemoflow.output_dir() / "greeting.txt").write_text(text)
    print("inside", sys.executable, "uid", os.getuid())
    return text


def shout(src: str) -> str:
    text = open(src).read().upper()
    (nemoflow.output_dir() / "shout.txt").write_text(text)
    return text


def fail(code: int) -> None:
    print("failing on purpose")
    sys.exit(code)


def sleepy(seconds: float) -> None:
    print("sleeping", flush=True)
    time.sleep(seconds)
'''


def _pipeline(tmp_path: Path, image: str, body: str) -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "name.txt").write_text("world\n")
    executor = f"""
ex = nemoflow.DockerExecutor(
    container_image={image!r}, network="none", env_vars={{"GREETING": "hi"}}, volumes=[{f"{data}:/data:ro"!r}],
)
"""
    path = tmp_path / "docker_pipeline.py"
    path.write_text(STEPS + executor + textwrap.dedent(body))
    return path


def _containers(label: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-a", "-q", "--filter", f"label={label}"], capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def test_docker_steps_run_in_containers_and_publish(tmp_path, docker_service):
    pipeline = _pipeline(
        tmp_path,
        docker_service.python_image,
        """
        exp = nemoflow.Experiment("docker_chain")
        g = exp.add(nemoflow.Partial(greet), name="greet", executor=ex)
        exp.add(nemoflow.Partial(shout, src=g.output("greeting.txt")), name="shout", executor=ex)
        """,
    )
    nemoflow("build", str(pipeline), cwd=tmp_path, check=True)
    greet_dir = published_target(tmp_path, "greet")
    assert (greet_dir / "greeting.txt").read_text() == "hi world"  # env var and volume seen inside
    assert (published_target(tmp_path, "shout") / "shout.txt").read_text() == "HI WORLD"  # upstream outputs mounted
    log = (greet_dir / "nemoflow.log").read_text()
    assert "inside /usr/bin/python3" in log  # the image's Python, not this machine's
    assert f"uid {os.getuid()}" in log  # outputs belong to the build's user
    manifest = json.loads((greet_dir / "nemoflow.json").read_text())
    assert [f["path"] for f in manifest["files"]] == ["greeting.txt", "result.json"]
    runs = runs_by_step(tmp_path)
    for step in ("greet", "shout"):
        assert runs[step]["executor"] == "docker" and runs[step]["status"] == "succeeded"
        assert runs[step]["job_id"] and not _containers(f"nemoflow.key={runs[step]['key']}")  # removed
    again = nemoflow("build", str(pipeline), "--json", cwd=tmp_path, check=True)
    assert json.loads(again.stdout.strip().splitlines()[-1])["ran"] == []


def test_exit_code_of_the_container_fails_the_step(tmp_path, docker_service):
    pipeline = _pipeline(
        tmp_path,
        docker_service.python_image,
        """
        exp = nemoflow.Experiment("docker_fail")
        bad = exp.add(nemoflow.Partial(fail, code=3), name="bad", executor=ex)
        exp.add(nemoflow.Partial(shout, src=bad.output("x")), name="after", executor=ex)
        """,
    )
    proc = nemoflow("build", str(pipeline), cwd=tmp_path)
    assert proc.returncode == 1 and "exit code 3" in proc.stderr
    runs = runs_by_step(tmp_path)
    assert runs["bad"]["status"] == "failed" and runs["bad"]["exit_code"] == 3
    assert "after" not in runs
    assert not _containers(f"nemoflow.key={runs['bad']['key']}")


def test_ctrl_c_removes_the_container(tmp_path, docker_service):
    pipeline = _pipeline(
        tmp_path,
        docker_service.python_image,
        """
        exp = nemoflow.Experiment("docker_cancel")
        exp.add(nemoflow.Partial(sleepy, seconds=120), name="sleepy", executor=ex)
        """,
    )
    with background_build(pipeline, tmp_path) as build:
        deadline = time.monotonic() + 60
        while not _running("nemoflow.step=sleepy", tmp_path) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _running("nemoflow.step=sleepy", tmp_path), "the container never started"
        build.send_signal(signal.SIGINT)
        build.communicate(timeout=30)
    assert build.returncode != 0
    key = runs_by_step(tmp_path)["sleepy"]["key"]
    assert not _containers(f"nemoflow.key={key}")  # Ctrl-C leaves no container behind


def _running(label: str, tmp_path: Path) -> bool:
    if not (tmp_path / "targets" / "ledger.db").exists():
        return False
    try:
        run = runs_by_step(tmp_path).get("sleepy")
    except sqlite3.OperationalError:  # the build has made the file, not yet its tables
        return False
    if not run:
        return False
    out = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=nemoflow.key={run['key']}", "--filter", "status=running"],
        capture_output=True,
        text=True,
    )
    return bool(out.stdout.strip())


def test_missing_image_is_a_clear_error_naming_it(tmp_path, docker_service):
    pipeline = _pipeline(
        tmp_path,
        "nemoflow-no-such-image:1",
        """
        exp = nemoflow.Experiment("docker_missing")
        exp.add(nemoflow.Partial(greet), name="greet", executor=ex)
        """,
    )
    proc = nemoflow("build", str(pipeline), cwd=tmp_path)
    assert proc.returncode != 0
    assert "nemoflow-no-such-image:1" in proc.stderr and "is not on this machine" in proc.stderr


def test_resource_fields_become_container_options(tmp_path):
    """No engine needed: the keyword arguments handed to ``containers.run``."""
    ex = DockerExecutor(
        container_image="img", num_gpus=2, cpus=1.5, memory="4g", shm_size="1g", ports=["8080:80", 9000]
    )
    job = Job("s", "k" * 64, [], tmp_path, tmp_path / "log", str(tmp_path), run_id="20261126-000000-abcdef12")
    kwargs = ex._run_kwargs(job, RemotePaths("/nemoflow/job", "/nemoflow/output"), [])
    assert kwargs["device_requests"] == [{"count": 2, "capabilities": [["gpu"]]}]
    assert kwargs["nano_cpus"] == 1_500_000_000 and kwargs["mem_limit"] == "4g" and kwargs["shm_size"] == "1g"
    assert kwargs["ports"] == {"80/tcp": 8080, "9000/tcp": 9000}
    assert kwargs["labels"]["nemoflow.key"] == "k" * 64
    with pytest.raises(ValueError, match="bad volume"):
        DockerExecutor(container_image="img", volumes=["only-one-part"])
