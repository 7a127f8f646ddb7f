"""NeMo Run's RayCluster / RayJob with a ``SlurmExecutor``, for real: the single-node Slurm of .ci/services.sh,
reached over the real sshd on 127.0.0.1 as user nftest, with Ray from /opt/nemoflow-ray.

The node has 2 CPUs: each cluster is one head and no separate worker (the worker lines of the script run on
multi-node allocations only).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import textwrap
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from services import SlurmService, SshdService

import nemoflow
from nemoflow.ray import RayCluster, RayJob

from helpers import nemoflow as run_nemoflow

pytestmark = pytest.mark.usefixtures("ray_python")


@pytest.fixture(scope="module")
def ray_python(slurm_service: SlurmService) -> str:
    path = slurm_service.ray_python
    if not path or not os.access(path, os.X_OK):
        pytest.skip("needs Ray for the Slurm user (/opt/nemoflow-ray): run `sudo bash .ci/services.sh`")
    return path


@pytest.fixture
def executor(sshd_service: SshdService, slurm_service: SlurmService, ray_python: str) -> nemoflow.SlurmExecutor:
    tunnel = nemoflow.SSHTunnel(
        host=sshd_service.host,
        user=sshd_service.user,
        port=sshd_service.port,
        identity=sshd_service.identity,
        known_hosts=sshd_service.known_hosts,
        job_dir=f"~/nf-ray-tests/{uuid.uuid4().hex[:8]}",
    )
    return nemoflow.SlurmExecutor(
        partition=slurm_service.partition, time="00:10:00", poll_interval=0.5, tunnel=tunnel, python=ray_python
    )


@pytest.fixture(autouse=True)
def _ray_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEMOFLOW_RAY_STATE", str(tmp_path / "ray-state"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _version(port: int, attempts: int = 3) -> dict:
    """The dashboard's version through the forward (a loaded machine may drop a first connection)."""
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/version", timeout=10) as response:
                return json.loads(response.read())
        except (OSError, http.client.HTTPException):
            if attempt == attempts - 1:
                raise
            time.sleep(1)
    raise AssertionError("unreachable")


def _queued(job_name: str) -> list[str]:
    return subprocess.run(
        ["squeue", "-h", "-o", "%i %T", "--name", job_name], capture_output=True, text=True, check=True
    ).stdout.split("\n")[:-1]


def _sacct_state(job_id: str) -> str:
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "State", "-j", job_id], capture_output=True, text=True, check=True
    ).stdout
    return out.strip().split()[0] if out.strip() else ""


def _nftest_ray_processes(temp_dir: str) -> list[str]:
    found = subprocess.run(["pgrep", "-u", "nftest", "-a", "-f", temp_dir], capture_output=True, text=True)
    return found.stdout.splitlines()


def test_cluster_starts_in_sbatch_serves_a_job_and_scancel_stops_it(
    executor: nemoflow.SlurmExecutor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"nf-ci-{uuid.uuid4().hex[:6]}"
    cluster = RayCluster(name, executor)
    job_name = cluster.backend.job_name

    preview = cluster.start(dryrun=True)
    assert "#SBATCH --dependency=singleton" in preview and "start --head --block" in preview
    assert not _queued(job_name), "a dry run submits nothing"

    try:
        cluster.start(timeout=240)
        found = cluster.status(display=True)
        assert found["state"] == "RUNNING" and found["ready"], found
        assert "RUNNING (ready)" in capsys.readouterr().out
        job_id, head = found["details"]["job_id"], found["details"]["head"]
        assert _queued(job_name) == [f"{job_id} RUNNING"]
        assert head["host"] == "127.0.0.1" and head["nodes"] == 1

        # another process that lost the local state finds the live cluster by its job name and reuses it
        (tmp_path / "ray-state" / "clusters").rename(tmp_path / "forgotten")
        again = RayCluster(name, executor)
        again.start(timeout=60)
        assert again.status(display=False)["details"]["job_id"] == job_id
        assert _queued(job_name) == [f"{job_id} RUNNING"], "no second cluster was submitted"

        forwarded = _free_port()
        cluster.port_forward(port=forwarded, target_port=8265)  # 8265: the dashboard, wherever it listens
        assert _version(forwarded)["ray_version"]
        cluster.port_forward(port=forwarded, target_port=8265)  # re-forwarding replaces the old forward
        assert _version(forwarded)["ray_version"]

        workdir = tmp_path / "code"
        workdir.mkdir()
        (workdir / "squares.py").write_text(
            "import ray\nray.init()\n"
            "print('total', sum(ray.get([ray.remote(lambda x: x * x).remote(i) for i in range(5)])))\n"
        )
        job = RayJob("squares", executor, cluster_name=name)
        ray_job_id = job.start("python squares.py", workdir=str(workdir))
        text = job.logs(follow=True)
        assert "total 30" in text
        status = job.status(display=False)
        assert status["state"] == "SUCCEEDED" and status["exit_code"] == 0 and status["job_id"] == ray_job_id
    finally:
        cluster.stop()
    assert not _queued(job_name)
    assert _sacct_state(job_id) == "CANCELLED"
    assert cluster.status(display=False)["state"] in ("NOT_FOUND", "STOPPED")
    assert not _nftest_ray_processes(head["temp_dir"]), "every Ray process of the cluster ended with its job"
    with pytest.raises(OSError):
        _version(forwarded, attempts=1)  # the forward is closed with the cluster


def test_a_job_without_a_cluster_brings_its_own_and_ends_with_it(
    executor: nemoflow.SlurmExecutor, tmp_path: Path
) -> None:
    workdir = tmp_path / "code"
    workdir.mkdir()
    (workdir / "count.py").write_text(
        "import ray, sys\nray.init()\nprint('nodes', len(ray.nodes()), 'cpus', int(ray.cluster_resources()['CPU']))\n"
        "sys.exit(int(sys.argv[1]))\n"
    )
    job = RayJob(f"own-{uuid.uuid4().hex[:6]}", executor)
    assert "python count.py 0" in job.start("python count.py 0", workdir=str(workdir), dryrun=True)
    job_id = job.start("python count.py 0", workdir=str(workdir))
    text = job.logs(follow=True)
    assert "nodes 1 cpus" in text and "ready on 1 node(s)" in text
    status = job.status(display=False)
    assert status["state"] == "SUCCEEDED" and status["job_id"] == job_id and status["exit_code"] == 0, status

    failing = RayJob(f"fails-{uuid.uuid4().hex[:6]}", executor)
    failing.start("python count.py 3", workdir=str(workdir))
    failing.logs(follow=True)
    status = failing.status(display=False)
    assert status["state"] == "FAILED" and status["exit_code"] == 3, status


PIPELINE = """
import nemoflow


def squares(n: int) -> int:
    import ray

    ray.init()  # RAY_ADDRESS: the cluster the step's job started
    total = sum(ray.get([ray.remote(lambda x: x * x).remote(i) for i in range(n)]))
    (nemoflow.output_dir() / "total.txt").write_text(str(total))
    return total


tunnel = nemoflow.SSHTunnel(
    host={sshd.host!r}, user={sshd.user!r}, port={sshd.port}, identity={sshd.identity!r},
    known_hosts={sshd.known_hosts!r}, job_dir={job_dir!r},
)
ex = nemoflow.SlurmExecutor(
    partition={slurm.partition!r}, time="00:10:00", poll_interval=0.5, tunnel=tunnel, python={python!r},
    ray_cluster=True,
)
exp = nemoflow.Experiment("ray-on-slurm")
exp.add(nemoflow.Partial(squares, n=6), name="squares", executor=ex)
"""


def test_a_pipeline_step_runs_on_a_ray_cluster_made_for_it(
    sshd_service: SshdService, slurm_service: SlurmService, ray_python: str, tmp_path: Path
) -> None:
    pipeline = tmp_path / "pipeline.py"
    job_dir = f"~/nf-ray-tests/{uuid.uuid4().hex[:8]}"
    pipeline.write_text(
        textwrap.dedent(PIPELINE).format(sshd=sshd_service, slurm=slurm_service, job_dir=job_dir, python=ray_python)
    )
    dry = run_nemoflow("build", str(pipeline), "--dry-run", cwd=tmp_path, check=True)
    assert "start --head --block" in dry.stdout and "RAY_ADDRESS" in dry.stdout, dry.stdout
    built = run_nemoflow("build", str(pipeline), cwd=tmp_path, check=False)
    assert built.returncode == 0, built.stdout + built.stderr
    total = list((tmp_path / "targets" / "squares").glob("*/total.txt"))
    assert [p.read_text() for p in total] == ["55"]
    log = run_nemoflow("logs", "ray-on-slurm", "squares", cwd=tmp_path, check=True).stdout
    assert "Ray cluster squares ready on 1 node(s)" in log, log
    assert not _nftest_ray_processes("/tmp/nf-ray-"), "the step's cluster ended with its job"
    again = run_nemoflow("build", str(pipeline), cwd=tmp_path)
    assert "up to date" in again.stdout.lower() or "0 ran" in again.stdout.lower(), again.stdout
