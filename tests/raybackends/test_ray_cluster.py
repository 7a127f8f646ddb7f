"""NeMo Run's RayCluster / RayJob on the local backend, for real: a Ray head on 127.0.0.1 started, forwarded,
given a job whose log is followed, and stopped (exactly its own processes)."""

from __future__ import annotations

import json
import os
import socket
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="needs Ray: pip install 'nemoflow[ray]' (CI installs it)")

import nemoflow
from nemoflow.ray import RayCluster, RayJob


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _version(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/version", timeout=10) as response:
        return json.loads(response.read())


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _session_members(session: int) -> list[int]:
    """Live processes in ``session`` (GCS, raylet, dashboard, agents and workers all stay in the head's)."""
    members = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == session:
            members.append(int(entry))
    return members


def test_cluster_forward_job_logs_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NEMOFLOW_RAY_STATE", str(tmp_path / "state"))
    dashboard = _free_port()
    executor = nemoflow.RayExecutor(address=f"http://127.0.0.1:{dashboard}", cluster_num_cpus=2)
    cluster = RayCluster("nemoflow-tests-cluster", executor)

    preview = cluster.start(dryrun=True)
    assert "ray start --head" in preview.replace("/ray start", "ray start") and "--node-ip-address=127.0.0.1" in preview
    assert cluster.status(display=False)["state"] == "NOT_FOUND"  # a dry run starts nothing

    bystander = os.getpid()  # a process that is not the cluster's: stop must leave it alone
    try:
        cluster.start(timeout=180)
        found = cluster.status(display=True)
        assert found["state"] == "RUNNING" and found["ready"], found
        assert "RUNNING (ready)" in capsys.readouterr().out
        pids = found["details"]["pids"]
        session = found["details"]["session"]
        assert pids and session not in (os.getsid(0), None)  # the head runs in a session of its own
        cluster.start(timeout=60)  # a live cluster of the same name is reused
        assert cluster.status(display=False)["details"]["pids"] == pids

        forwarded = _free_port()
        cluster.port_forward(port=forwarded, target_port=dashboard)
        assert _version(forwarded)["ray_version"]  # the dashboard answers on the forwarded port
        cluster.port_forward(port=forwarded, target_port=dashboard)  # re-forwarding replaces the old forward
        assert _version(forwarded)["ray_version"]

        workdir = tmp_path / "code"
        workdir.mkdir()
        (workdir / "hello.py").write_text(
            "import ray\nray.init()\n"
            "print('total', sum(ray.get([ray.remote(lambda x: x * x).remote(i) for i in range(5)])))\n"
        )
        job = RayJob("hello", executor, cluster_name="nemoflow-tests-cluster")
        job_id = job.start("python hello.py", workdir=str(workdir))
        assert job_id.startswith("hello-")
        text = job.logs(follow=True)
        assert "total 30" in text and "total 30" in capsys.readouterr().out
        status = job.status(display=False)
        assert status["state"] == "SUCCEEDED" and status["exit_code"] == 0, status
        # another process (or session) finds the job by name
        assert (
            RayJob("hello", executor, cluster_name="nemoflow-tests-cluster").status(display=False)["job_id"] == job_id
        )
    finally:
        cluster.stop()
    assert cluster.status(display=False)["state"] == "NOT_FOUND"
    assert not [p for p in pids if _cmdline(p)], "every process of the cluster ended"
    assert not _session_members(session), "no agent, idle worker or client server of the head is left behind"
    assert os.path.exists(f"/proc/{bystander}")
    with pytest.raises(OSError):
        _version(dashboard)


def test_a_job_on_a_cluster_that_was_never_started_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEMOFLOW_RAY_STATE", str(tmp_path / "state"))
    job = RayJob("orphan", nemoflow.RayExecutor(), cluster_name="never-started")
    with pytest.raises(nemoflow.errors.ExecutorError, match="no Ray cluster named 'never-started'"):
        job.start("python -c 'print(1)'")
