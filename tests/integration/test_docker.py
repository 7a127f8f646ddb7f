"""DockerExecutor's pure helpers (no engine needed); the real-dockerd acceptance tests are in test_docker_executor.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from nemoflow.executors.base import Job
from nemoflow.executors.docker import DockerExecutor, container_name, extract_once, port_bindings
from nemoflow.executors.packagers import PatternPackager
from nemoflow.executors.staging import RemotePaths


def test_extract_once_unpacks_then_reuses(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("A = 1\n")
    package = PatternPackager(include=["*.py"]).package(tmp_path / "src", tmp_path / "stage")
    first = extract_once(package, tmp_path / "stage", "code")
    assert first.name == f"code-{package.digest[:16]}" and (first / "a.py").read_text() == "A = 1\n"
    (first / "marker").write_text("kept")
    assert extract_once(package, tmp_path / "stage", "code") == first and (first / "marker").exists()
    assert not [p for p in (tmp_path / "stage").iterdir() if p.name.startswith(".code-")]  # no temp dir left


def test_port_bindings_and_names() -> None:
    assert port_bindings(["127.0.0.1:8080:80/udp", 22]) == {"80/udp": ("127.0.0.1", 8080), "22/tcp": 22}
    with pytest.raises(ValueError, match="bad port"):
        DockerExecutor(container_image="img", ports=["http:80"])
    assert container_name("train model/1-abc") == "train-model-1-abc"
    assert container_name("_x") == "nf-_x" and container_name("!!") == "step"


def test_environment_drops_local_only_variables(tmp_path: Path) -> None:
    ex = DockerExecutor(container_image="img", env_vars={"GREETING": "hi", "PYTHONPATH": "/extra"})
    job = Job(
        "s",
        "k" * 64,
        [],
        tmp_path,
        tmp_path / "log",
        str(tmp_path),
        env={"NEMOFLOW_PARENT_PID": "1", "NEMOFLOW_OUTPUT_DIR": str(tmp_path), "A": "b"},
    )
    env = ex._environment(job, RemotePaths("/nemoflow/job", "/nemoflow/output", "/nemoflow/runtime"))
    assert "NEMOFLOW_PARENT_PID" not in env and env["NEMOFLOW_OUTPUT_DIR"] == "/nemoflow/output"
    assert env["PYTHONPATH"] == "/nemoflow/runtime:/extra" and env["GREETING"] == "hi" and env["A"] == "b"
