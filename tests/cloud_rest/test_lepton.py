"""LeptonExecutor against a stand-in of a Lepton workspace's REST API (rest_stubs.LeptonStub).

No Lepton service can run here: the stub speaks the documented protocol the leptonai SDK uses (node groups
and their nodes, jobs: create, status, replicas, a replica's log, delete) and, when a test moves a job to
running, runs its command on this machine; the mount is a folder of tmp_path that both see.
"""

from __future__ import annotations

import re
import sys
import textwrap
import time
from pathlib import Path

import pytest
from rest_stubs import SECRET, LeptonStub, secret_nowhere

import nemoflow as run
from nemoflow.errors import ExecutorError, UserError
from nemoflow.executors.base import Handle, Job, JobState
from nemoflow.executors.rest import CredentialError

from helpers import nemoflow, published_target, runs_by_step

STEPS = """
import os
import re
import sys
import time

import nemoflow


def greet(name: str) -> str:
    text = os.environ["GREETING"] + " " + name
    (nemoflow.output_dir() / "greeting.txt").write_text(text)
    print("hf token seen:", os.environ.get("HF_TOKEN") == "stub-hf-value")
    print("pre-launch ran:", os.path.exists(os.environ["PRE_MARK"]))
    return text


def fail(code: int) -> None:
    print("failing on purpose")
    sys.exit(code)
"""


def _executor_source(stub: LeptonStub, mount: Path, **fields: object) -> str:
    values = {
        "container_image": repr("nvcr.io/nvidia/nemo:25.02"),
        "resource_shape": repr("gpu.8xh100-80gb"),
        "node_group": repr("h100-pool"),
        "gpus_per_node": "8",
        "mounts": repr([{"path": "/shared", "mount_path": str(mount), "from": "node-nfs:lepton-shared-fs"}]),
        "env_vars": repr({"GREETING": "hi", "PRE_MARK": str(mount / "pre-launch-ran")}),
        "secret_vars": repr({"HF_TOKEN": "hf-token"}),
        "pre_launch_commands": repr([f"touch {mount / 'pre-launch-ran'}"]),
        "priority": repr("mid-4000"),
        "workspace_url": repr(stub.url),
        "workspace_token": 'os.environ.get("STUB_TOKEN")',  # set for the build, not on the job
        "nemoflow_dir": repr(str(mount / "nemoflow")),
        "python": repr(sys.executable),
        "poll_interval": "0.2",
        "backoff": "0.05",
        **{k: repr(v) for k, v in fields.items()},
    }
    return "\nex = nemoflow.LeptonExecutor(\n" + "".join(f"    {k}={v},\n" for k, v in values.items()) + ")\n"


def _pipeline(tmp_path: Path, stub: LeptonStub, body: str, **fields: object) -> Path:
    mount = tmp_path / "mount"
    (mount / "nemoflow").mkdir(parents=True, exist_ok=True)
    path = tmp_path / "lepton_pipeline.py"
    path.write_text(STEPS + _executor_source(stub, mount, **fields) + textwrap.dedent(body))
    return path


def _build(pipeline: Path, *args: str, check: bool = True):
    return nemoflow("build", str(pipeline), *args, cwd=pipeline.parent, check=check, env={"STUB_TOKEN": SECRET})


def _executor(stub: LeptonStub, tmp_path: Path, **fields: object) -> run.LeptonExecutor:
    values: dict[str, object] = {
        "container_image": "img",
        "resource_shape": "cpu.small",
        "node_group": "h100-pool",
        "mounts": [{"path": "/", "mount_path": str(tmp_path)}],
        "nemoflow_dir": str(tmp_path / "nemoflow"),
        "workspace_url": stub.url,
        "workspace_token": SECRET,
        "backoff": 0.2,
        **fields,
    }
    return run.LeptonExecutor(**values)


def test_a_build_runs_each_step_as_a_lepton_job(tmp_path: Path, lepton: LeptonStub) -> None:
    pipeline = _pipeline(
        tmp_path,
        lepton,
        """
        exp = nemoflow.Experiment("lepton_one")
        exp.add(nemoflow.Partial(greet, name="world"), name="greet", executor=ex)
        """,
    )
    lepton.start_each_created()
    proc = _build(pipeline)
    out = published_target(tmp_path, "greet")
    assert (out / "greeting.txt").read_text() == "hi world"
    log = (out / "nemoflow.log").read_text()
    assert "hf token seen: True" in log and "pre-launch ran: True" in log

    created = [r for r in lepton.requests if r.method == "POST" and r.path.endswith("/jobs")]
    assert len(created) == 1
    spec = created[0].body["spec"]
    assert spec["resource_shape"] == "gpu.8xh100-80gb" and spec["container"]["image"] == "nvcr.io/nvidia/nemo:25.02"
    assert spec["affinity"] == {
        "allowed_dedicated_node_groups": ["ng-1"],
        "allowed_nodes_in_node_group": ["node-a", "node-b"],
    }
    assert spec["completions"] == spec["parallelism"] == 1 and spec["queue_config"] == {"priority_class": "mid-4000"}
    assert {"name": "HF_TOKEN", "value_from": {"secret_name_ref": "hf-token"}} in spec["envs"]
    assert spec["mounts"][0]["from"] == "node-nfs:lepton-shared-fs"
    assert all(r.headers.get("Authorization") == f"Bearer {SECRET}" for r in lepton.requests)

    row = runs_by_step(tmp_path)["greet"]
    assert row["executor"] == "lepton" and row["status"] == "succeeded" and row["job_id"] in lepton.workloads
    ledger = (tmp_path / "targets" / "ledger.db").read_bytes()
    assert SECRET.encode() not in ledger and b"**********" in ledger  # recorded masked
    assert secret_nowhere(tmp_path) == [] and SECRET not in proc.stdout + proc.stderr


def test_a_failing_job_fails_the_step_with_its_exit_code(tmp_path: Path, lepton: LeptonStub) -> None:
    pipeline = _pipeline(
        tmp_path,
        lepton,
        """
        exp = nemoflow.Experiment("lepton_fail")
        exp.add(nemoflow.Partial(fail, code=4), name="bad", executor=ex)
        """,
    )
    lepton.start_each_created()
    proc = _build(pipeline, check=False)
    assert proc.returncode != 0
    row = runs_by_step(tmp_path)["bad"]
    assert row["status"] == "failed" and "Failed with exit code 4" in (row["error"] or "")


def test_status_logs_and_cancel_of_a_job(tmp_path: Path, lepton: LeptonStub) -> None:
    ex = _executor(lepton, tmp_path, nodes=2)
    client = ex.client()
    client.request(
        "POST",
        "jobs",
        json={
            "metadata": {"id": "probe", "name": "probe"},
            "spec": {"container": {"command": ["echo", "hello from replica 0"]}, "parallelism": 2},
        },
    )
    job = Job("s", "k" * 64, [], tmp_path, tmp_path / "log", str(tmp_path))
    handle = Handle(job, "probe")
    assert ex.status(handle) is JobState.PENDING  # Queueing
    assert ex.logs(handle) == ""  # no replica yet, nothing in the shared folder
    workload = lepton.workloads["probe"]
    lepton.start(workload)
    lepton.finish(workload)
    assert ex.status(handle) is JobState.SUCCEEDED
    assert ex.logs(handle) == "hello from replica 0\n"  # the first replica's log, from the API
    ex.cancel(handle)
    assert "probe" not in lepton.workloads and [r.method for r in lepton.requests][-1] == "DELETE"
    ex.cancel(handle)  # already gone: fine


def test_running_counts_only_when_every_replica_is_ready(tmp_path: Path, lepton: LeptonStub) -> None:
    from nemoflow.executors.lepton import _job_state

    assert _job_state({"state": "Running", "ready": 1, "active": 2}, False) is JobState.PENDING
    assert _job_state({"state": "Running", "ready": 2, "active": 2}, False) is JobState.RUNNING
    assert _job_state({"state": "Stopped"}, True) is JobState.CANCELLED


def test_a_malformed_field_is_caught_before_any_request(tmp_path: Path, lepton: LeptonStub) -> None:
    pipeline = _pipeline(
        tmp_path,
        lepton,
        """
        exp = nemoflow.Experiment("lepton_bad")
        exp.add(nemoflow.Partial(greet, name="x"), name="greet", executor=ex)
        """,
        priority="urgent",
    )
    proc = _build(pipeline, check=False)
    assert proc.returncode != 0 and "priority" in proc.stdout + proc.stderr
    assert lepton.requests == []
    with pytest.raises(ValueError, match="mount_path"):
        _executor(lepton, tmp_path, mounts=[{"path": "/shared"}])
    with pytest.raises(ValueError, match="under none of the mounts"):
        _executor(lepton, tmp_path, nemoflow_dir="/elsewhere/nemoflow")
    with pytest.raises(ValueError, match="not an http"):
        _executor(lepton, tmp_path, workspace_url="gateway/api/v2")
    assert lepton.requests == []


def test_a_rejected_token_is_one_error_naming_it(tmp_path: Path, lepton: LeptonStub) -> None:
    ex = _executor(lepton, tmp_path, workspace_token="wrong-token")
    with pytest.raises(CredentialError) as caught:
        ex.node_group_ids(ex.client())
    message = str(caught.value)
    assert "HTTP 401" in message and "workspace_token" in message and "LEPTON_WORKSPACE_TOKEN" in message
    assert "wrong-token" not in message and len(lepton.requests) == 1  # not retried


def test_the_token_and_url_can_come_from_the_environment(
    tmp_path: Path, lepton: LeptonStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEPTON_WORKSPACE_TOKEN", raising=False)
    ex = _executor(lepton, tmp_path, workspace_token=None, workspace_url=None)
    monkeypatch.setenv("LEPTON_WORKSPACE_URL", lepton.url)
    with pytest.raises(UserError, match="LEPTON_WORKSPACE_TOKEN"):
        ex.client()
    monkeypatch.setenv("LEPTON_WORKSPACE_TOKEN", SECRET)
    assert ex.node_group_ids(ex.client()) == ("ng-1", ["node-a", "node-b"])


def test_5xx_and_429_are_retried(tmp_path: Path, lepton: LeptonStub) -> None:
    ex = _executor(lepton, tmp_path, backoff=0.2)
    lepton.fail("GET", r"/dedicated-node-groups$", 503, times=2)
    lepton.fail("GET", r"/nodes$", 429, headers={"Retry-After": "1"})
    started = time.monotonic()
    assert ex.node_group_ids(ex.client())[0] == "ng-1"
    assert time.monotonic() - started >= 0.95
    assert len([r for r in lepton.requests if r.path.endswith("/dedicated-node-groups")]) == 3
    assert len([r for r in lepton.requests if r.path.endswith("/nodes")]) == 2

    bounded = _executor(lepton, tmp_path, retries=1, backoff=0.01)
    lepton.fail("GET", r"/dedicated-node-groups$", 502, times=100)
    with pytest.raises(ExecutorError, match="HTTP 502"):
        bounded.node_group_ids(bounded.client())


def test_an_unknown_node_group_is_named(tmp_path: Path, lepton: LeptonStub) -> None:
    ex = _executor(lepton, tmp_path, node_group="a100-pool")
    with pytest.raises(ExecutorError, match="no node group 'a100-pool' \\(known: h100-pool\\)"):
        ex.node_group_ids(ex.client())


def test_job_names_fit_the_service_and_stay_unique_when_cut() -> None:
    from nemoflow.executors.shared_dir import k8s_name

    first = k8s_name("Train_Big_Transformer_Model-8f3edc96c956-run00001")
    second = k8s_name("Train_Big_Transformer_Model-8f3edc96c956-run00002")
    assert first != second and len(first) <= 34 and len(second) <= 34
    assert re.fullmatch(r"[a-z][a-z0-9-]*[a-z0-9]", first) and first.startswith("train-big-transformer")
    assert k8s_name("greet-8f3edc96c956-abcdef12") == "greet-8f3edc96c956-abcdef12"


def test_dry_run_shows_the_job_without_a_request(tmp_path: Path, lepton: LeptonStub) -> None:
    pipeline = _pipeline(
        tmp_path,
        lepton,
        """
        exp = nemoflow.Experiment("lepton_dry")
        exp.add(nemoflow.Partial(greet, name="x"), name="greet", executor=ex)
        """,
    )
    proc = _build(pipeline, "--dry-run")
    assert f"POST {lepton.url}/jobs" in proc.stdout and '"resource_shape": "gpu.8xh100-80gb"' in proc.stdout
    assert lepton.requests == [] and list((tmp_path / "mount" / "nemoflow").iterdir()) == []
