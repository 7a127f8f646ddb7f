"""``nemoflow worker --executor kubernetes`` serves a real luigid: it takes the Kubernetes step, a local worker
takes the local one, and a registering build (``--no-run``) waits for both."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("kubernetes", reason="needs the kubernetes client: pip install 'nemoflow[kubernetes]'")
pytest.importorskip("kubernetes_validate", reason="needs kubernetes-validate: pip install 'nemoflow[kubernetes]'")

from job_stub import JobStub, kube_fixture  # noqa: F401 - kube_fixture: the `kube` fixture

from helpers import runs_by_step

PIPELINE = Path(__file__).with_name("kube_pipeline.py")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/task_list?data=%7B%7D", timeout=2):
            return True
    except OSError:
        return False


def test_a_kubernetes_worker_takes_the_kubernetes_step(kube: JobStub, tmp_path: Path) -> None:
    """No Kubernetes API server can run on this machine; the stub speaks the documented protocol and runs the
    pod's command here when the test's kubelet starts the pod. luigid, the workers and the build are real."""
    from nemoflow.luigi.luigid import LuigidSettings, luigid_command, luigid_env, write_config

    def runs_the_pod(stub: JobStub, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        stub.finish(name, stub.run_pod(name))

    kube.on_create = runs_the_pod
    shutil.copy(PIPELINE, tmp_path / "kube_pipeline.py")
    state = tmp_path / "luigid"
    config = write_config(state, LuigidSettings(worker_disconnect_delay=3.0, retry_delay=1))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "NEMOFLOW_STORE"} | {"NF_KUBE_MOUNT": str(tmp_path)}
    started: dict[str, subprocess.Popen[str]] = {}

    def start(name: str, *args: str, cwd: Path = tmp_path, extra: dict[str, str] | None = None) -> None:
        out = (tmp_path / f"{name}.out").open("w")
        started[name] = subprocess.Popen(
            args, cwd=cwd, env={**env, **(extra or {})}, stdout=out, stderr=subprocess.STDOUT, text=True
        )

    start("luigid", *luigid_command(state, "127.0.0.1", port), cwd=state, extra=luigid_env(config))
    try:
        cli = [sys.executable, "-m", "nemoflow.cli"]
        deadline = time.monotonic() + 30
        while not _answers(url):
            assert time.monotonic() < deadline, "luigid did not answer"
            time.sleep(0.2)
        for executor in ("kubernetes", "local"):
            start(executor, *cli, "worker", "kube_pipeline.py", "--executor", executor, "--scheduler", url,
                  "--json", "--timeout", "120")  # fmt: skip
        start("build", *cli, "build", "kube_pipeline.py", "--scheduler", url, "--no-run", "--timeout", "120", "--json")
        for name in ("build", "kubernetes", "local"):
            code = started[name].wait(timeout=300)
            assert code == 0, f"{name} exited {code}:\n{(tmp_path / f'{name}.out').read_text()}"
    finally:
        for proc in started.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=20)
    runs = runs_by_step(tmp_path)
    assert runs["train"]["status"] == "succeeded" and runs["prepare"]["status"] == "succeeded"
    assert runs["train"]["worker"].endswith(f":{started['kubernetes'].pid}"), runs["train"]["worker"]
    assert runs["prepare"]["worker"].endswith(f":{started['local'].pid}"), runs["prepare"]["worker"]
    assert runs["train"]["job_id"] == kube.created_jobs[0]["metadata"]["name"]
