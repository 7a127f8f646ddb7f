"""Pipeline steps on a real local Ray cluster (one head on 127.0.0.1 for this module, started and stopped here).

A local prepare step, a 20-step fan-out on ``RayExecutor`` with ``-j 4`` and a local reduce step, built through
the real ``nemoflow`` command: outputs in the store, Ray job ids in the ledger (and Ray knows them), a no-op
rebuild submits nothing, a changed config resubmits exactly its steps, a failing job is a failed step with its
exit code and log tail, Ctrl-C stops the Ray jobs and records ``cancelled``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import last_json, names, nemoflow, runs_by_step

ray = pytest.importorskip("ray", reason="needs Ray: pip install 'nemoflow[ray]' (CI installs it)")

import nemoflow as nf  # noqa: E402
from nemoflow.executors import ray as ray_api  # noqa: E402
from nemoflow.ray import RayCluster  # noqa: E402

PIPELINE = Path(__file__).with_name("ray_fanout.py")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Ray head on this machine for the module's tests; its dashboard URL."""
    state = tmp_path_factory.mktemp("ray-state")
    old = os.environ.get("NEMOFLOW_RAY_STATE")
    os.environ["NEMOFLOW_RAY_STATE"] = str(state)
    address = f"http://127.0.0.1:{_free_port()}"
    head = RayCluster("nemoflow-tests-steps", nf.RayExecutor(address=address, cluster_num_cpus=2))
    try:
        head.start(timeout=180)
        yield address
    finally:
        head.stop()
        if old is None:
            os.environ.pop("NEMOFLOW_RAY_STATE", None)
        else:
            os.environ["NEMOFLOW_RAY_STATE"] = old


def _build(folder: Path, address: str, *options: str, **env: str) -> subprocess.CompletedProcess[str]:
    return nemoflow(
        "build", "ray_fanout.py", "--json", *options, cwd=folder, env={"NF_RAY_ADDRESS": address, **env}, timeout=600
    )


def _ray_jobs(address: str) -> set[str]:
    return {job.submission_id for job in ray_api.client(address).list_jobs() if job.submission_id}


@pytest.fixture(scope="module")
def fanout(cluster: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fanout")
    shutil.copy(PIPELINE, folder / "ray_fanout.py")
    proc = _build(folder, cluster, "-j", "4")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return folder


def test_fanout_builds_on_ray_with_job_ids_in_the_ledger(cluster: str, fanout: Path) -> None:
    total = json.loads(next((fanout / "targets" / "reduce").glob("*/total.json")).read_text())
    assert total == {"total": sum(i * i for i in range(20))}
    runs = runs_by_step(fanout)
    ray_runs = [runs[f"square-{i}"] for i in range(20)]
    assert {r["executor"] for r in ray_runs} == {"ray"} and runs["prepare"]["executor"] == "local"
    known = _ray_jobs(cluster)
    for run in ray_runs:
        assert run["status"] == "succeeded"
        assert run["job_id"] in known, run["job_id"]  # the ledger's id is Ray's submission id
        info = ray_api.client(cluster).get_job_info(run["job_id"])
        assert info.metadata["nemoflow_key"] == run["key"]
        value = json.loads(next((fanout / "targets" / run["step"]).glob("*/value.json")).read_text())
        assert value["ray_address"]  # the step really ran as a Ray job (its supervisor set RAY_ADDRESS)
    # -j 4: up to four Ray jobs ran at once, and more than one did
    spans = [(r["started"], r["ended"]) for r in ray_runs]
    overlap = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert 2 <= overlap <= 4, overlap


def test_a_no_op_rebuild_submits_nothing(cluster: str, fanout: Path) -> None:
    before = _ray_jobs(cluster)
    proc = _build(fanout, cluster, "-j", "4")
    assert proc.returncode == 0, proc.stderr
    assert last_json(proc.stdout)["ran"] == []
    assert _ray_jobs(cluster) == before


def test_a_changed_config_resubmits_exactly_its_steps(cluster: str, fanout: Path) -> None:
    before = _ray_jobs(cluster)
    proc = _build(fanout, cluster, "-j", "4", NF_OFFSET_3="5")
    assert proc.returncode == 0, proc.stderr
    assert sorted(names(last_json(proc.stdout)["ran"])) == ["reduce", "square-3"]
    new = _ray_jobs(cluster) - before
    assert len(new) == 1 and next(iter(new)).startswith("nemoflow-square-3-")
    total = json.loads(max((fanout / "targets" / "reduce").glob("*/total.json"), key=os.path.getmtime).read_text())
    assert total == {"total": sum(i * i for i in range(20)) + 5}


def test_a_failing_job_is_a_failed_step_with_its_exit_code_and_log(cluster: str, tmp_path: Path) -> None:
    shutil.copy(PIPELINE, tmp_path / "ray_fanout.py")
    proc = _build(tmp_path, cluster, "-j", "2", NF_FANOUT="3", NF_FAIL="square-1")
    assert proc.returncode != 0
    run = runs_by_step(tmp_path)["square-1"]
    assert run["status"] == "failed" and run["exit_code"] == 3, run
    assert "FAILED" in run["error"] and "exit code 3" in run["error"]
    failed = {e["name"]: e for e in last_json(proc.stdout)["failed"]}
    assert "exit code 3" in failed["square-1"]["error"]
    assert "SystemExit: 3" in failed["square-1"]["error"]  # the last line of the step's log, as Ray kept it
    logs = nemoflow("logs", "ray-fanout", "square-1", cwd=tmp_path)
    assert "this step was told to fail" in logs.stdout
    assert ray_api.job_info(cluster, run["job_id"])["status"] == "FAILED"


def test_ctrl_c_stops_the_ray_jobs_and_records_cancelled(cluster: str, tmp_path: Path) -> None:
    shutil.copy(PIPELINE, tmp_path / "ray_fanout.py")
    env = {**os.environ, "NF_RAY_ADDRESS": cluster, "NF_FANOUT": "2", "NF_SLEEP": "120", "COLUMNS": "200"}
    env.pop("NEMOFLOW_STORE", None)
    build = subprocess.Popen(
        [sys.executable, "-m", "nemoflow.cli", "build", "ray_fanout.py", "-j", "2"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        running: list[str] = []
        while len(running) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
            running = [j for j in _ledger_ids(tmp_path) if ray_api.job_info(cluster, j)["status"] == "RUNNING"]
        assert len(running) == 2, "both Ray steps should be running"
        os.killpg(build.pid, signal.SIGINT)  # Ctrl-C at a terminal signals the whole foreground group
        build.communicate(timeout=120)
    finally:
        if build.poll() is None:
            build.kill()
            build.communicate()
    assert build.returncode != 0
    deadline = time.monotonic() + 30  # Ray moves a stopped job to STOPPED once its driver is gone
    while time.monotonic() < deadline and any(ray_api.job_info(cluster, j)["status"] != "STOPPED" for j in running):
        time.sleep(0.5)
    assert {ray_api.job_info(cluster, j)["status"] for j in running} == {"STOPPED"}
    runs = runs_by_step(tmp_path)
    assert {runs[f"square-{i}"]["status"] for i in range(2)} == {"cancelled"}


def _ledger_ids(folder: Path) -> list[str]:
    try:
        return [r["job_id"] for r in runs_by_step(folder).values() if r.get("job_id") and r["executor"] == "ray"]
    except Exception:  # the ledger is not there yet
        return []


def test_a_ray_worker_takes_exactly_the_ray_steps_that_luigid_hands_out(cluster: str, tmp_path: Path) -> None:
    """A real luigid, `nemoflow worker --executor ray` and `--executor local`, and a registering build."""
    from nemoflow.luigi.luigid import LuigidSettings, luigid_command, luigid_env, write_config

    shutil.copy(PIPELINE, tmp_path / "ray_fanout.py")
    state = tmp_path / "luigid"
    config = write_config(state, LuigidSettings(worker_disconnect_delay=3.0, retry_delay=1))
    url = f"http://127.0.0.1:{_free_port()}"
    env = {k: v for k, v in os.environ.items() if k != "NEMOFLOW_STORE"}
    env.update({"NF_RAY_ADDRESS": cluster, "NF_FANOUT": "4", "COLUMNS": "200"})
    started: dict[str, subprocess.Popen[str]] = {}

    def start(name: str, *args: str, cwd: Path = tmp_path, extra: dict[str, str] | None = None) -> None:
        out = (tmp_path / f"{name}.out").open("w")
        started[name] = subprocess.Popen(
            args, cwd=cwd, env={**env, **(extra or {})}, stdout=out, stderr=subprocess.STDOUT, text=True
        )

    start(
        "luigid", *luigid_command(state, "127.0.0.1", int(url.rsplit(":", 1)[1])), cwd=state, extra=luigid_env(config)
    )
    try:
        cli = [sys.executable, "-m", "nemoflow.cli"]
        deadline = time.monotonic() + 30
        while not _answers(url):
            assert time.monotonic() < deadline, "luigid did not answer"
            time.sleep(0.2)
        for executor in ("ray", "local"):
            start(
                executor,
                *cli,
                "worker",
                "ray_fanout.py",
                "--executor",
                executor,
                "--scheduler",
                url,
                "--json",
                "--timeout",
                "120",
            )
        start("build", *cli, "build", "ray_fanout.py", "--scheduler", url, "--no-run", "--timeout", "120", "--json")
        for name in ("build", "ray", "local"):
            code = started[name].wait(timeout=300)
            assert code == 0, f"{name} exited {code}:\n{(tmp_path / f'{name}.out').read_text()}"
    finally:
        for proc in started.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=20)
    runs = runs_by_step(tmp_path)
    ray_pid, local_pid = started["ray"].pid, started["local"].pid
    for step, run in runs.items():
        assert run["status"] == "succeeded", run
        wanted = ray_pid if step.startswith("square-") else local_pid
        assert run["worker"].endswith(f":{wanted}"), f"{step} ran on {run['worker']}"
    assert {r["job_id"] for s, r in runs.items() if s.startswith("square-")} <= _ray_jobs(cluster)


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/api/task_list?data=%7B%7D", timeout=2):
            return True
    except OSError:
        return False
