"""DGXCloudExecutor against a stand-in of the Run:ai REST API that DGX Cloud exposes (rest_stubs.DGXStub).

No DGX Cloud service can run here: the stub speaks the documented protocol (token from client credentials,
projects, training and distributed workloads: create, status, delete) and, when a test moves a workload to
running, runs its command on this machine; the "PVC" is a folder of tmp_path that both see.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import textwrap
import time
from pathlib import Path

import pytest
from rest_stubs import SECRET, TOKEN, DGXStub, secret_nowhere

import nemoflow as run
from nemoflow.errors import ExecutorError, UserError
from nemoflow.executors import executor_to_data
from nemoflow.executors.rest import CredentialError

from helpers import nemoflow, published_target, runs_by_step

STEPS = """
import os
import sys
import time

import nemoflow


def greet(name: str) -> str:
    text = os.environ["GREETING"] + " " + name
    (nemoflow.output_dir() / "greeting.txt").write_text(text)
    print("greeting written on the workload")
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
"""


def _executor_source(stub: DGXStub, pvc: Path, **fields: object) -> str:
    values = {
        "base_url": repr(stub.url),
        "app_id": repr("nemoflow-app"),
        "app_secret": 'os.environ.get("STUB_APP_SECRET")',  # set for the build, not on the workload
        "project_name": repr("team-a"),
        "container_image": repr("nvcr.io/nvidia/pytorch:24.05-py3"),
        "gpus_per_node": "8",
        "env_vars": repr({"GREETING": "hi"}),
        "pvcs": repr([{"claimName": "team-a-data", "path": str(pvc)}]),
        "pvc_nemoflow_dir": repr(str(pvc / "nemoflow")),
        "python": repr(sys.executable),
        "poll_interval": "0.2",
        "backoff": "0.05",
        **{k: repr(v) for k, v in fields.items()},
    }
    return "\nex = nemoflow.DGXCloudExecutor(\n" + "".join(f"    {k}={v},\n" for k, v in values.items()) + ")\n"


def _pipeline(tmp_path: Path, stub: DGXStub, body: str, **fields: object) -> Path:
    pvc = tmp_path / "pvc"
    (pvc / "nemoflow").mkdir(parents=True, exist_ok=True)
    path = tmp_path / "dgx_pipeline.py"
    path.write_text(STEPS + _executor_source(stub, pvc, **fields) + textwrap.dedent(body))
    return path


def _build(pipeline: Path, *args: str, check: bool = True):
    return nemoflow("build", str(pipeline), *args, cwd=pipeline.parent, check=check, env={"STUB_APP_SECRET": SECRET})


def _executor(stub: DGXStub, tmp_path: Path, **fields: object) -> run.DGXCloudExecutor:
    values: dict[str, object] = {
        "base_url": stub.url,
        "app_id": "nemoflow-app",
        "app_secret": SECRET,
        "project_name": "team-a",
        "container_image": "img",
        "pvcs": [{"claimName": "c", "path": str(tmp_path)}],
        "pvc_nemoflow_dir": str(tmp_path / "nemoflow"),
        "backoff": 0.2,
        **fields,
    }
    return run.DGXCloudExecutor(**values)


def test_a_build_runs_each_step_as_a_training_workload_and_records_the_secret_masked(
    tmp_path: Path, dgx: DGXStub
) -> None:
    pipeline = _pipeline(
        tmp_path,
        dgx,
        """
        exp = nemoflow.Experiment("dgx_chain")
        g = exp.add(nemoflow.Partial(greet, name="world"), name="greet", executor=ex)
        exp.add(nemoflow.Partial(shout, src=g.output("greeting.txt")), name="shout", executor=ex)
        """,
    )
    dgx.start_each_created()
    proc = _build(pipeline)
    assert (published_target(tmp_path, "greet") / "greeting.txt").read_text() == "hi world"
    assert (published_target(tmp_path, "shout") / "shout.txt").read_text() == "HI WORLD"  # upstream reached it
    assert "greeting written on the workload" in (published_target(tmp_path, "greet") / "nemoflow.log").read_text()

    token_requests = [r for r in dgx.requests if r.path == "/api/v1/token"]
    assert token_requests and token_requests[0].body["clientId"] == "nemoflow-app"
    created = [r for r in dgx.requests if r.method == "POST" and r.path == "/api/v1/workloads/trainings"]
    assert len(created) == 2
    body = created[0].body
    assert body["projectId"] == "17" and body["clusterId"] == "cluster-1" and body["useGivenNameAsPrefix"]
    assert body["spec"]["image"] == "nvcr.io/nvidia/pytorch:24.05-py3"
    assert body["spec"]["compute"]["gpuDevicesRequest"] == 8
    assert body["spec"]["storage"]["pvc"][0]["claimName"] == "team-a-data"
    assert {"name": "GREETING", "value": "hi"} in body["spec"]["environmentVariables"]
    assert all(r.headers.get("Authorization") == f"Bearer {TOKEN}" for r in created)

    runs = runs_by_step(tmp_path)
    for step in ("greet", "shout"):
        assert runs[step]["executor"] == "dgxcloud" and runs[step]["status"] == "succeeded"
        assert runs[step]["job_id"] in dgx.workloads  # the workload id the service gave
    ledger = (tmp_path / "targets" / "ledger.db").read_bytes()
    assert SECRET.encode() not in ledger and TOKEN.encode() not in ledger
    conn = sqlite3.connect(tmp_path / "targets" / "ledger.db")
    details = [json.loads(d) for (d,) in conn.execute("select details from runs") if d]
    conn.close()
    recorded = [d["executor"]["fields"] for d in details if "executor" in d]
    assert recorded and all(f["app_secret"] == "**********" for f in recorded)  # masked, not dropped
    assert secret_nowhere(tmp_path) == []  # the store, the logs, the PVC folder
    assert SECRET not in proc.stdout + proc.stderr

    again = _build(pipeline, "--json")
    assert json.loads(again.stdout.strip().splitlines()[-1])["ran"] == []  # incremental: nothing re-runs


def test_a_failing_workload_fails_the_step_with_its_exit_code(tmp_path: Path, dgx: DGXStub) -> None:
    pipeline = _pipeline(
        tmp_path,
        dgx,
        """
        exp = nemoflow.Experiment("dgx_fail")
        exp.add(nemoflow.Partial(fail, code=3), name="bad", executor=ex)
        """,
    )
    dgx.start_each_created()
    proc = _build(pipeline, check=False)
    assert proc.returncode != 0
    run_row = runs_by_step(tmp_path)["bad"]
    assert run_row["status"] == "failed" and "Failed with exit code 3" in (run_row["error"] or "")
    assert "failing on purpose" in proc.stdout + proc.stderr + _logs(tmp_path)


def test_nodes_above_one_make_a_distributed_workload(tmp_path: Path, dgx: DGXStub) -> None:
    pipeline = _pipeline(
        tmp_path,
        dgx,
        """
        exp = nemoflow.Experiment("dgx_multi")
        exp.add(nemoflow.Partial(greet, name="nodes"), name="greet", executor=ex)
        """,
        nodes=2,
    )
    dgx.start_each_created()
    _build(pipeline)
    created = [r for r in dgx.requests if r.method == "POST" and "/workloads/" in r.path]
    assert [r.path for r in created] == ["/api/v1/workloads/distributed"]
    spec = created[0].body["spec"]
    assert (spec["distributedFramework"], spec["minReplicas"], spec["maxReplicas"], spec["numWorkers"]) == (
        "PyTorch",
        2,
        2,
        2,
    )
    assert any(r.method == "GET" and r.path.startswith("/api/v1/workloads/distributed/") for r in dgx.requests)


def test_a_step_timeout_deletes_the_workload(tmp_path: Path, dgx: DGXStub) -> None:
    pipeline = _pipeline(
        tmp_path,
        dgx,
        """
        exp = nemoflow.Experiment("dgx_cancel")
        exp.add(nemoflow.Partial(sleepy, seconds=120), name="sleepy", executor=ex)
        """,
        timeout=3,
    )
    dgx.start_each_created()
    started = time.monotonic()
    proc = _build(pipeline, check=False)
    assert proc.returncode != 0 and time.monotonic() - started < 60
    deletes = [r for r in dgx.requests if r.method == "DELETE"]
    assert len(deletes) >= 1 and deletes[0].path.startswith("/api/v1/workloads/trainings/")
    assert dgx.workloads == {}  # deleted on the service, its process ended
    assert runs_by_step(tmp_path)["sleepy"]["status"] in ("timeout", "cancelled")


def test_a_malformed_field_is_caught_before_any_request(tmp_path: Path, dgx: DGXStub) -> None:
    pipeline = _pipeline(
        tmp_path,
        dgx,
        """
        exp = nemoflow.Experiment("dgx_bad")
        exp.add(nemoflow.Partial(greet, name="x"), name="greet", executor=ex)
        """,
        pvcs=[{"claimName": "elsewhere", "path": "/mnt/other"}],
    )
    proc = _build(pipeline, check=False)
    assert proc.returncode != 0 and "pvc_nemoflow_dir" in proc.stdout + proc.stderr
    assert dgx.requests == []
    with pytest.raises(ValueError, match="not an http"):
        _executor(dgx, tmp_path, base_url="dgx.example.com/api/v1")
    with pytest.raises(ValueError, match="claimName"):
        _executor(dgx, tmp_path, pvcs=[{"path": str(tmp_path)}])
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        _executor(dgx, tmp_path, nodes=0)
    assert dgx.requests == []


def test_a_rejected_secret_is_one_error_naming_the_credential(tmp_path: Path, dgx: DGXStub) -> None:
    ex = _executor(dgx, tmp_path, app_secret="not-the-secret")
    with pytest.raises(CredentialError) as caught:
        ex.project_and_cluster(ex.client())
    message = str(caught.value)
    assert "HTTP 401" in message and "app_id / app_secret" in message and "DGXCLOUD_APP_SECRET" in message
    assert "not-the-secret" not in message
    assert isinstance(caught.value, UserError) and isinstance(caught.value, PermissionError)
    assert {r.path for r in dgx.requests} == {"/api/v1/token"}  # a 401 is not retried
    assert len(dgx.requests) <= 2  # the token asked once, then once more as a renewal


def test_the_secret_can_come_from_the_environment_only(
    tmp_path: Path, dgx: DGXStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DGXCLOUD_APP_SECRET", raising=False)
    ex = _executor(dgx, tmp_path, app_secret=None)
    with pytest.raises(UserError, match="DGXCLOUD_APP_SECRET"):
        ex.token()
    assert dgx.requests == []
    monkeypatch.setenv("DGXCLOUD_APP_SECRET", SECRET)
    assert ex.token() == TOKEN
    assert "app_secret" not in executor_to_data(ex)["fields"]


def test_5xx_is_retried_with_growing_backoff_and_bounded(tmp_path: Path, dgx: DGXStub) -> None:
    ex = _executor(dgx, tmp_path, backoff=0.2)
    dgx.fail("GET", r"/org-unit/projects$", 502, times=2)
    assert ex.project_and_cluster(ex.client()) == ("17", "cluster-1")
    tries = [r.at for r in dgx.requests if r.path.endswith("/org-unit/projects")]
    assert len(tries) == 3
    assert tries[2] - tries[1] >= 0.35 and tries[2] - tries[1] > tries[1] - tries[0]  # the backoff doubles

    bounded = _executor(dgx, tmp_path, retries=2, backoff=0.01)
    dgx.fail("GET", r"/org-unit/projects$", 500, times=100)
    with pytest.raises(ExecutorError, match="HTTP 500"):
        bounded.project_and_cluster(bounded.client())
    assert len([r for r in dgx.requests if r.path.endswith("/org-unit/projects")]) == 3 + 3


def test_429_waits_for_retry_after(tmp_path: Path, dgx: DGXStub) -> None:
    ex = _executor(dgx, tmp_path, backoff=0.0)
    dgx.fail("GET", r"/org-unit/projects$", 429, headers={"Retry-After": "1"})
    started = time.monotonic()
    assert ex.project_and_cluster(ex.client()) == ("17", "cluster-1")
    assert time.monotonic() - started >= 0.95
    tries = [r.at for r in dgx.requests if r.path.endswith("/org-unit/projects")]
    assert len(tries) == 2 and tries[1] - tries[0] >= 0.95


def test_connection_errors_are_retried_then_named(tmp_path: Path, dgx: DGXStub) -> None:
    dgx.close()  # nothing listens on the port any more
    ex = _executor(dgx, tmp_path, retries=2, backoff=0.01)
    with pytest.raises(ExecutorError, match=r"DGX Cloud: .*(cannot reach|kept failing)"):
        ex.token()


def test_status_and_delete_of_a_workload(tmp_path: Path, dgx: DGXStub) -> None:
    ex = _executor(dgx, tmp_path)
    client = ex.client()
    answer = client.request(
        "POST",
        "workloads/trainings",
        json={"name": "probe", "projectId": "17", "clusterId": "cluster-1", "spec": {"command": "true"}},
    )
    workload = dgx.workloads[answer["workloadId"]]
    assert ex.phase(workload.id) == "Creating" and ex._state("Creating", False) is run_state("pending")
    dgx.start(workload)
    dgx.finish(workload)
    assert ex.phase(workload.id) == "Completed"
    ex.delete(workload.id)
    assert ex.phase(workload.id) == "Deleted" and ex._state("Deleted", True) is run_state("cancelled")
    ex.delete(workload.id)  # already gone: fine


def run_state(word: str):
    from nemoflow.executors.base import JobState

    return JobState(word)


def _logs(folder: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in (folder / "targets").rglob("nemoflow.log"))


def test_dry_run_shows_the_workload_without_a_request(tmp_path: Path, dgx: DGXStub) -> None:
    pipeline = _pipeline(
        tmp_path,
        dgx,
        """
        exp = nemoflow.Experiment("dgx_dry")
        exp.add(nemoflow.Partial(greet, name="x"), name="greet", executor=ex)
        """,
        nodes=2,
    )
    proc = _build(pipeline, "--dry-run")
    assert f"POST {dgx.url}/workloads/distributed" in proc.stdout
    assert (
        '"distributedFramework": "PyTorch"' in proc.stdout
        and '"image": "nvcr.io/nvidia/pytorch:24.05-py3"' in proc.stdout
    )
    assert dgx.requests == [] and list((tmp_path / "pvc" / "nemoflow").iterdir()) == []
