"""SlurmExecutor against the real single-node Slurm of .ci/services.sh, over the real loopback sshd as the
non-root user ``nftest`` (outputs synced back through the tunnel), and on the login node (LocalTunnel,
shared filesystem). Everything is real: sbatch, squeue, sacct (slurmdbd), scancel, SSH.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from helpers import background_build, nemoflow, published_target, runs_by_step

STEPS = """
import os
import sys
import time

import nemoflow


def make(n: int) -> int:
    (nemoflow.output_dir() / "data.txt").write_text("x" * n)
    print("made", n, "as", os.environ.get("USER"), "in Slurm job", os.environ.get("SLURM_JOB_ID"))
    return n


def count(data: str) -> int:
    n = len(open(data).read())
    (nemoflow.output_dir() / "count.txt").write_text(str(n))
    return n


def fail(code: int) -> None:
    print("failing on purpose")
    sys.exit(code)


def stage(i: int, prev: str | None = None, pause: float = 1.0) -> int:
    time.sleep(pause)
    before = open(prev).read() if prev else ""
    (nemoflow.output_dir() / "chain.txt").write_text(before + f"{i} {time.time():.3f} {os.environ.get('SLURM_JOB_ID')}\\n")
    return i


def sleepy(seconds: float) -> None:
    print("sleeping", flush=True)
    time.sleep(seconds)
"""


def _ssh_executor(sshd: Any, slurm: Any, job_dir: str) -> str:
    return textwrap.dedent(
        f"""
        tunnel = nemoflow.SSHTunnel(
            host={sshd.host!r}, user={sshd.user!r}, port={sshd.port}, identity={sshd.identity!r},
            known_hosts={sshd.known_hosts!r}, job_dir={job_dir!r},
        )
        ex = nemoflow.SlurmExecutor(
            partition={slurm.partition!r}, time="00:05:00", poll_interval=0.3, tunnel=tunnel, python={slurm.remote_python!r},
        )
        """
    )


def _pipeline(tmp_path: Path, executor: str, body: str) -> Path:
    path = tmp_path / "slurm_pipeline.py"
    path.write_text(STEPS + textwrap.dedent(executor) + textwrap.dedent(body))
    return path


def _sacct(job_id: str) -> tuple[str, str]:
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "State,ExitCode", "-j", job_id], capture_output=True, text=True, check=True
    ).stdout.splitlines()[0]
    state, code = out.split("|")
    return state.split()[0], code  # "CANCELLED by 0" -> CANCELLED


@pytest.fixture
def job_dir(sshd_service: Any) -> str:
    return f"/home/{sshd_service.user}/nemoflow-tests/{uuid.uuid4().hex[:10]}"


def test_slurm_step_over_ssh_runs_publishes_and_is_not_rerun(tmp_path, sshd_service, slurm_service, job_dir):
    pipeline = _pipeline(
        tmp_path,
        _ssh_executor(sshd_service, slurm_service, job_dir),
        """
        exp = nemoflow.Experiment("slurm_ssh")
        a = exp.add(nemoflow.Partial(make, n=7), name="make", executor=ex)
        exp.add(nemoflow.Partial(count, data=a.output("data.txt")), name="count", executor=ex)
        """,
    )
    nemoflow("build", str(pipeline), "--json", cwd=tmp_path, check=True)

    make_dir, count_dir = published_target(tmp_path, "make"), published_target(tmp_path, "count")
    assert (make_dir / "data.txt").read_text() == "x" * 7
    assert (count_dir / "count.txt").read_text() == "7"
    manifest = json.loads((make_dir / "nemoflow.json").read_text())
    listed = {f["path"]: f for f in manifest["files"]}
    assert "data.txt" in listed and len(listed["data.txt"]["sha256"]) == 64
    assert f"as {sshd_service.user} in Slurm job" in (make_dir / "nemoflow.log").read_text()
    assert "#SBATCH --partition=debug" in (make_dir / "nemoflow-sbatch.sh").read_text()

    runs = runs_by_step(tmp_path)
    for step in ("make", "count"):
        run = runs[step]
        assert run["executor"] == "slurm" and run["status"] == "succeeded"
        assert run["job_id"].isdigit()
        assert run["backend_state"] == "COMPLETED"
        assert _sacct(run["job_id"]) == ("COMPLETED", "0:0")  # what the cluster itself says

    audit = nemoflow("audit", str(count_dir / "count.txt"), "--json", cwd=tmp_path, check=True)
    assert "make" in audit.stdout  # the provenance chain reaches the upstream Slurm step
    again = nemoflow("build", str(pipeline), "--json", cwd=tmp_path, check=True)
    assert json.loads(again.stdout.strip().splitlines()[-1])["ran"] == []


def test_failing_slurm_step_is_failed_with_its_exit_code_and_blocks_dependents(
    tmp_path, sshd_service, slurm_service, job_dir
):
    pipeline = _pipeline(
        tmp_path,
        _ssh_executor(sshd_service, slurm_service, job_dir),
        """
        exp = nemoflow.Experiment("slurm_fail")
        bad = exp.add(nemoflow.Partial(fail, code=3), name="bad", executor=ex)
        exp.add(nemoflow.Partial(count, data=bad.output("x")), name="after", executor=ex)
        """,
    )
    proc = nemoflow("build", str(pipeline), cwd=tmp_path)
    assert proc.returncode == 1
    assert "exit code 3" in proc.stderr and "not run: upstream bad failed" in proc.stderr
    runs = runs_by_step(tmp_path)
    assert runs["bad"]["status"] == "failed" and runs["bad"]["exit_code"] == 3
    assert runs["bad"]["backend_state"] == "FAILED"
    assert _sacct(runs["bad"]["job_id"]) == ("FAILED", "3:0")
    assert "after" not in runs  # never submitted
    assert not list((tmp_path / "targets").glob("bad/*/nemoflow.json"))
    kept = list((tmp_path / "targets" / ".failed" / "bad").glob("*/nemoflow.log"))
    assert kept and "failing on purpose" in kept[0].read_text()


def test_detach_submits_a_chain_that_slurm_runs_in_order_and_status_collects(
    tmp_path, sshd_service, slurm_service, job_dir
):
    pipeline = _pipeline(
        tmp_path,
        _ssh_executor(sshd_service, slurm_service, job_dir),
        """
        exp = nemoflow.Experiment("slurm_detach")
        s1 = exp.add(nemoflow.Partial(stage, i=1, pause=2.0), name="s1", executor=ex)
        s2 = exp.add(nemoflow.Partial(stage, i=2, prev=s1.output("chain.txt")), name="s2", executor=ex)
        exp.add(nemoflow.Partial(stage, i=3, prev=s2.output("chain.txt")), name="s3", executor=ex)
        """,
    )
    started = time.monotonic()
    proc = nemoflow("build", str(pipeline), "--detach", "--json", cwd=tmp_path, check=True)
    assert time.monotonic() - started < 15  # it returns without waiting for the 3 jobs (each pauses)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {o["name"] for o in result["submitted"]} == {"s1", "s2", "s3"} and result["ran"] == []
    runs = runs_by_step(tmp_path)
    assert {r["status"] for r in runs.values()} == {"submitted"}
    assert not (tmp_path / "targets" / "s1").exists()  # nothing published yet

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = nemoflow("status", str(pipeline), "--json", cwd=tmp_path, check=True)
        states = {row["name"]: row["state"] for row in json.loads(status.stdout)}
        if set(states.values()) == {"done"}:
            break
        assert set(states.values()) <= {"submitted", "done"}, states
        time.sleep(1)
    assert set(states.values()) == {"done"}, states

    lines = (published_target(tmp_path, "s3") / "chain.txt").read_text().splitlines()
    order = [int(line.split()[0]) for line in lines]
    times = [float(line.split()[1]) for line in lines]
    job_ids = [line.split()[2] for line in lines]
    assert order == [1, 2, 3] and times == sorted(times)  # Slurm ran them in order, each after the last
    runs = runs_by_step(tmp_path)
    assert job_ids == [runs[s]["job_id"] for s in ("s1", "s2", "s3")]
    assert all(r["status"] == "succeeded" and r["backend_state"] == "COMPLETED" for r in runs.values())

    again = nemoflow("build", str(pipeline), "--json", cwd=tmp_path, check=True)
    assert json.loads(again.stdout.strip().splitlines()[-1])["ran"] == []
    assert len(runs_by_step(tmp_path)) == 3  # nothing submitted again


def test_build_after_detach_waits_for_live_jobs_instead_of_resubmitting(tmp_path, sshd_service, slurm_service, job_dir):
    pipeline = _pipeline(
        tmp_path,
        _ssh_executor(sshd_service, slurm_service, job_dir),
        """
        exp = nemoflow.Experiment("slurm_adopt")
        s1 = exp.add(nemoflow.Partial(stage, i=1, pause=3.0), name="s1", executor=ex)
        exp.add(nemoflow.Partial(stage, i=2, prev=s1.output("chain.txt")), name="s2", executor=ex)
        """,
    )
    nemoflow("build", str(pipeline), "--detach", cwd=tmp_path, check=True)
    submitted = {step: run["job_id"] for step, run in runs_by_step(tmp_path).items()}
    nemoflow("build", str(pipeline), cwd=tmp_path, check=True)  # while s1 still runs
    runs = runs_by_step(tmp_path)
    assert {step: run["job_id"] for step, run in runs.items()} == submitted  # the same jobs, no new ones
    assert all(r["status"] == "succeeded" for r in runs.values())
    assert (published_target(tmp_path, "s2") / "chain.txt").read_text().count("\n") == 2


def test_login_node_slurm_step_with_shared_filesystem(tmp_path, slurm_service):
    """LocalTunnel: sbatch on this machine; the job writes straight into the store (no copies)."""
    pipeline = _pipeline(
        tmp_path,
        f"""
        ex = nemoflow.SlurmExecutor(partition={slurm_service.partition!r}, time="00:05:00", poll_interval=0.3,
                                    tunnel=nemoflow.LocalTunnel(job_dir={str(tmp_path / "jobs")!r}))
        """,
        """
        exp = nemoflow.Experiment("slurm_local")
        a = exp.add(nemoflow.Partial(make, n=3), name="make", executor=ex)
        exp.add(nemoflow.Partial(count, data=a.output("data.txt")), name="count", executor=ex)
        """,
    )
    nemoflow("build", str(pipeline), cwd=tmp_path, check=True)
    assert (published_target(tmp_path, "count") / "count.txt").read_text() == "3"
    runs = runs_by_step(tmp_path)
    details = json.loads(runs["make"]["details"])
    assert details["shared"] is True and details["output_dir"].startswith(str(tmp_path / "targets" / ".tmp"))


def test_ctrl_c_cancels_the_slurm_job_and_says_so(tmp_path, sshd_service, slurm_service, job_dir):
    pipeline = _pipeline(
        tmp_path,
        _ssh_executor(sshd_service, slurm_service, job_dir),
        """
        exp = nemoflow.Experiment("slurm_cancel")
        exp.add(nemoflow.Partial(sleepy, seconds=120), name="sleepy", executor=ex)
        """,
    )
    with background_build(pipeline, tmp_path) as build:
        job_id = _wait_for_running_job(tmp_path, "sleepy")
        build.send_signal(signal.SIGINT)
        _, err = build.communicate(timeout=30)
    assert build.returncode != 0
    assert f"cancelled Slurm job {job_id}" in err
    deadline = time.monotonic() + 30
    while _sacct(job_id)[0] not in ("CANCELLED", "CANCELLED+") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _sacct(job_id)[0].startswith("CANCELLED")


@pytest.mark.parametrize("whom", ["process group", "build only"])
def test_an_interrupt_of_a_j2_build_cancels_both_slurm_jobs_and_closes_their_runs(
    tmp_path, sshd_service, slurm_service, job_dir, whom
):
    """A terminal's Ctrl-C reaches the whole process group; `kill -INT` (timeout -s INT, supervisors) only the build."""
    pipeline = _pipeline(
        tmp_path,
        _ssh_executor(sshd_service, slurm_service, job_dir),
        """
        exp = nemoflow.Experiment("slurm_cancel_two")
        exp.add(nemoflow.Partial(sleepy, seconds=120), name="one", executor=ex)
        exp.add(nemoflow.Partial(sleepy, seconds=121), name="two", executor=ex)
        """,
    )
    with background_build(pipeline, tmp_path, "-j", "2") as build:
        jobs = {step: _wait_for_running_job(tmp_path, step) for step in ("one", "two")}
        if whom == "process group":
            os.killpg(build.pid, signal.SIGINT)
        else:
            build.send_signal(signal.SIGINT)
        _, err = build.communicate(timeout=60)
    assert build.returncode == 130, err
    for job_id in jobs.values():
        assert f"cancelled Slurm job {job_id}" in err
    deadline = time.monotonic() + 30
    while not all(_sacct(j)[0].startswith("CANCELLED") for j in jobs.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert all(_sacct(j)[0].startswith("CANCELLED") for j in jobs.values()), [_sacct(j) for j in jobs.values()]
    runs = runs_by_step(tmp_path)
    assert {runs[s]["status"] for s in ("one", "two")} <= {"interrupted", "cancelled"}, runs


def _wait_for_running_job(tmp_path: Path, step: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (tmp_path / "targets" / "ledger.db").exists():
            try:
                run = runs_by_step(tmp_path).get(step)
            except sqlite3.OperationalError:  # the build is still making the ledger's tables
                run = None
            if run and run.get("job_id"):
                state = subprocess.run(
                    ["squeue", "-h", "-o", "%T", "-j", run["job_id"]], capture_output=True, text=True
                ).stdout.strip()
                if state == "RUNNING":
                    return run["job_id"]
        time.sleep(0.3)
    raise AssertionError(f"step {step} never ran on Slurm")


def _detached_sleepy(tmp_path: Path, sshd_service, slurm_service, job_dir, name: str) -> Path:
    """A one-step pipeline whose step sleeps 120 s on Slurm over SSH, built with --detach; its file."""
    pipeline = _pipeline(
        tmp_path,
        _ssh_executor(sshd_service, slurm_service, job_dir),
        f"""
        exp = nemoflow.Experiment("{name}")
        exp.add(nemoflow.Partial(sleepy, seconds=120), name="sleepy", executor=ex)
        """,
    )
    nemoflow("build", str(pipeline), "--detach", cwd=tmp_path, check=True)
    return pipeline


def test_cancel_scancels_a_detached_job(tmp_path, sshd_service, slurm_service, job_dir):
    pipeline = _detached_sleepy(tmp_path, sshd_service, slurm_service, job_dir, "slurm_detached_cancel")
    job_id = runs_by_step(tmp_path)["sleepy"]["job_id"]
    proc = nemoflow("cancel", "slurm_detached_cancel", cwd=tmp_path, check=True)
    assert "sleepy" in proc.stdout
    deadline = time.monotonic() + 30
    while not _sacct(job_id)[0].startswith("CANCELLED") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _sacct(job_id)[0].startswith("CANCELLED")
    assert runs_by_step(tmp_path)["sleepy"]["status"] == "cancelled"
    status = nemoflow("status", str(pipeline), "--json", cwd=tmp_path, check=True)
    assert json.loads(status.stdout)[0]["state"] == "cancelled"  # not done, would run again


def test_logs_of_a_running_job_over_ssh_are_read_from_the_cluster(tmp_path, sshd_service, slurm_service, job_dir):
    _detached_sleepy(tmp_path, sshd_service, slurm_service, job_dir, "slurm_remote_logs")
    try:
        deadline = time.monotonic() + 60
        text = ""
        while "sleeping" not in text and time.monotonic() < deadline:
            text = nemoflow("logs", "slurm_remote_logs", "sleepy", cwd=tmp_path, check=True).stdout
            time.sleep(0.5)
        assert "sleeping" in text  # printed by the step, still on the cluster only
    finally:
        nemoflow("cancel", "slurm_remote_logs", cwd=tmp_path)
