"""Builds through the real ``nemoflow`` command with a step on KubernetesExecutor, against the stub API server.

No Kubernetes API server can run on this machine: the stub (job_stub.py) speaks the documented batch/v1 Jobs
and core/v1 pods protocol, and each test plays the Job controller and kubelet by setting the Job's
conditions and its pod's container state. No container can run here either, so where a pod is to run its
step, the stub runs the pod's own command (``python -m nemoflow.run_step <job file>``, with the pod's env and
workingDir) on this machine; the store sits under the "volume"'s mountPath, as it would on a shared PVC.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("kubernetes", reason="needs the kubernetes client: pip install 'nemoflow[kubernetes]'")
pytest.importorskip("kubernetes_validate", reason="needs kubernetes-validate: pip install 'nemoflow[kubernetes]'")

from job_stub import JobStub, kube_fixture  # noqa: F401 - kube_fixture: the `kube` fixture

from helpers import last_json, nemoflow, published_target, runs_by_step

PIPELINE = Path(__file__).with_name("kube_pipeline.py")


def _build(folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    shutil.copy(PIPELINE, folder / "kube_pipeline.py")
    return nemoflow("build", "kube_pipeline.py", "--json", cwd=folder, env={"NF_KUBE_MOUNT": str(folder), **env})


def _runs_the_pod(stub: JobStub, job: dict[str, Any]) -> None:
    name = job["metadata"]["name"]
    stub.finish(name, stub.run_pod(name))


def _train_error(proc: subprocess.CompletedProcess[str]) -> str:
    failed = {e["name"]: e for e in last_json(proc.stdout)["failed"]}
    return failed["train"]["error"]


def test_a_step_succeeds_as_a_kubernetes_job(kube: JobStub, tmp_path: Path) -> None:
    """No Kubernetes API server can run on this machine; the stub speaks the documented protocol, and runs the
    pod's command here when the test's kubelet starts the pod."""
    kube.on_create = _runs_the_pod
    proc = _build(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    model = json.loads((published_target(tmp_path, "train") / "model.json").read_text())
    assert model["total"] == 45
    runs = runs_by_step(tmp_path)
    train = runs["train"]
    assert train["status"] == "succeeded" and train["executor"] == "kubernetes"
    assert runs["prepare"]["executor"] == "local"
    [job] = kube.created_jobs
    assert train["job_id"] == job["metadata"]["name"]  # the ledger's job id is the Job's name
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["ttlSecondsAfterFinished"] == 3600
    assert job["spec"]["activeDeadlineSeconds"] == 600
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:3] == [sys.executable, "-m", "nemoflow.run_step"]
    assert container["resources"]["limits"] == {"cpu": "500m", "memory": "1Gi"}
    assert container["volumeMounts"] == [{"name": "store", "mountPath": str(tmp_path)}]
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}} in container["env"]
    assert job["spec"]["template"]["metadata"]["labels"]["team"] == "research"
    assert job["spec"]["template"]["spec"]["securityContext"] == {"runAsUser": os.getuid(), "runAsGroup": os.getgid()}
    logs = nemoflow("logs", "kube-train", "train", cwd=tmp_path)
    assert "training on 10 numbers" in logs.stdout  # the pod's log, read through the API
    # the kubeconfig's token is a secret: it is nowhere in the ledger, the store or the logs
    for path in (tmp_path / "targets").rglob("*"):
        if path.is_file():
            assert b"stub-token" not in path.read_bytes(), path
    # a rebuild runs nothing and asks the API server nothing
    before = len(kube.requests)
    again = _build(tmp_path)
    assert again.returncode == 0 and last_json(again.stdout)["ran"] == []
    assert len(kube.requests) == before


def test_a_failing_step_fails_with_its_exit_code(kube: JobStub, tmp_path: Path) -> None:
    """No Kubernetes API server can run on this machine; the stub speaks the documented protocol and runs the
    pod's command here; it exits 3, and the stub's Job controller marks the Job Failed (BackoffLimitExceeded)."""
    kube.on_create = _runs_the_pod
    proc = _build(tmp_path, NF_EXIT="3")
    assert proc.returncode != 0
    train = runs_by_step(tmp_path)["train"]
    assert train["status"] == "failed" and train["exit_code"] == 3, train
    error = _train_error(proc)
    assert "failed: exit code 3" in error and "SystemExit: 3" in error, error  # the log's last line
    assert "train was told to fail" in nemoflow("logs", "kube-train", "train", cwd=tmp_path).stdout


def test_an_oomkilled_pod_is_named(kube: JobStub, tmp_path: Path) -> None:
    """No Kubernetes API server can run on this machine; the stub speaks the documented protocol; the test's
    kubelet reports the container terminated with reason OOMKilled (exit code 137)."""

    def oom(stub: JobStub, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        stub.set_pod(name, "Running", {"running": {}})
        time.sleep(0.2)
        stub.finish(name, 137, "OOMKilled")

    kube.on_create = oom
    proc = _build(tmp_path)
    assert proc.returncode != 0
    train = runs_by_step(tmp_path)["train"]
    assert train["status"] == "failed" and train["exit_code"] == 137
    assert "OOMKilled" in train["error"] and "memory limit 1Gi" in train["error"], train["error"]


def test_a_deadline_exceeded_job_is_a_timeout(kube: JobStub, tmp_path: Path) -> None:
    """No Kubernetes API server can run on this machine; the stub speaks the documented protocol; its Job
    controller fails the Job with reason DeadlineExceeded (activeDeadlineSeconds passed) and kills the pod."""

    def deadline(stub: JobStub, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        stub.set_pod(name, "Running", {"running": {}})
        time.sleep(0.2)
        stub.set_pod(name, "Failed", {"terminated": {"exitCode": 143, "reason": "Error"}}, reason="DeadlineExceeded")
        stub.set_condition(name, "Failed", "DeadlineExceeded", "Job was active longer than specified deadline")

    kube.on_create = deadline
    proc = _build(tmp_path)
    assert proc.returncode != 0
    train = runs_by_step(tmp_path)["train"]
    assert train["status"] == "timeout", train
    assert "DeadlineExceeded (active_deadline_seconds=600)" in train["error"], train["error"]


def test_an_image_pull_error_fails_the_step_and_deletes_the_job(kube: JobStub, tmp_path: Path) -> None:
    """No Kubernetes API server can run on this machine; the stub speaks the documented protocol; the test's
    kubelet leaves the pod waiting in ImagePullBackOff, where a real one would wait for ever."""

    def no_image(stub: JobStub, job: dict[str, Any]) -> None:
        message = 'Back-off pulling image "python:3.12-slim"'
        stub.set_pod(
            job["metadata"]["name"], "Pending", {"waiting": {"reason": "ImagePullBackOff", "message": message}}
        )

    kube.on_create = no_image
    proc = _build(tmp_path)
    assert proc.returncode != 0
    train = runs_by_step(tmp_path)["train"]
    assert train["status"] == "failed"
    assert "ImagePullBackOff" in train["error"] and "'python:3.12-slim'" in train["error"], train["error"]
    assert kube.deletes == [(train["job_id"], "Foreground")] and not kube.jobs


def test_ctrl_c_deletes_the_job_in_the_foreground(kube: JobStub, tmp_path: Path) -> None:
    """No Kubernetes API server can run on this machine; the stub speaks the documented protocol; the pod is
    left Running, and Ctrl-C at the build must delete its Job with propagationPolicy=Foreground."""
    kube.on_create = lambda stub, job: stub.set_pod(job["metadata"]["name"], "Running", {"running": {}})
    shutil.copy(PIPELINE, tmp_path / "kube_pipeline.py")
    env = {k: v for k, v in os.environ.items() if k != "NEMOFLOW_STORE"} | {"NF_KUBE_MOUNT": str(tmp_path)}
    build = subprocess.Popen(
        [sys.executable, "-m", "nemoflow.cli", "build", "kube_pipeline.py"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (kube.jobs and len(kube.calls("GET", "/jobs/")) >= 3):
            assert time.monotonic() < deadline and build.poll() is None, "the build never followed its Job"
            time.sleep(0.05)
        os.killpg(build.pid, signal.SIGINT)  # Ctrl-C at a terminal signals the whole foreground group
        _, err = build.communicate(timeout=60)
    finally:
        if build.poll() is None:
            build.kill()
            build.communicate()
    assert build.returncode != 0
    [(name, policy)] = kube.deletes
    assert policy == "Foreground" and not kube.jobs and not kube.pods
    assert runs_by_step(tmp_path)["train"]["status"] == "cancelled"
    assert f"deleted Kubernetes Job default/{name}" in err


def test_a_500_is_retried(kube: JobStub, tmp_path: Path) -> None:
    """No Kubernetes API server can run on this machine; the stub speaks the documented protocol and answers
    the first create and the first read of the Job with 500/503, as an API server under load does."""
    kube.on_create = _runs_the_pod
    kube.fail_next = [("POST", "jobs", 500), ("GET", "jobs", 503)]
    proc = _build(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(kube.calls("POST", "/jobs")) == 2 and not kube.fail_next
    assert len(kube.created_jobs) == 1
    assert runs_by_step(tmp_path)["train"]["status"] == "succeeded"


def test_a_403_is_one_error_naming_the_credential(kube: JobStub, tmp_path: Path) -> None:
    """No Kubernetes API server can run on this machine; the stub speaks the documented protocol and forbids
    creating Jobs (RBAC), as an API server does for a user without the right Role."""
    kube.errors[("POST", "jobs")] = 403
    proc = _build(tmp_path)
    assert proc.returncode != 0
    assert len(kube.calls("POST", "/jobs")) == 1  # a 403 is not retried
    error = runs_by_step(tmp_path)["train"]["error"]
    assert f"kubeconfig {tmp_path / 'kubeconfig'}, context 'stub' (user 'stub')" in error, error
    assert "forbidden" in error and "RBAC" in error and "kubectl --context stub auth can-i create jobs" in error
    assert "stub-token" not in error + proc.stdout + proc.stderr


def test_a_store_on_no_shared_volume_is_refused_before_any_request(kube: JobStub, tmp_path: Path) -> None:
    """No Kubernetes API server can run on this machine; the stub speaks the documented protocol and must see
    no request at all: without a volume holding the store, submit refuses."""
    proc = _build(tmp_path, NF_NO_VOLUME="1")
    assert proc.returncode != 0
    error = runs_by_step(tmp_path)["train"]["error"]
    assert "needs the step's output folder" in error and "on a volume the pod mounts at the same path" in error
    assert not kube.calls("POST") and not kube.created_jobs


def test_nemoflow_cancel_from_another_terminal_deletes_the_job(kube: JobStub, tmp_path: Path) -> None:
    """No Kubernetes API server can run on this machine; the stub speaks the documented protocol; the pod is
    left Running, and `nemoflow cancel` (another process, with only the ledger) deletes its Job."""
    kube.on_create = lambda stub, job: stub.set_pod(job["metadata"]["name"], "Running", {"running": {}})
    shutil.copy(PIPELINE, tmp_path / "kube_pipeline.py")
    env = {k: v for k, v in os.environ.items() if k != "NEMOFLOW_STORE"} | {"NF_KUBE_MOUNT": str(tmp_path)}
    build = subprocess.Popen(
        [sys.executable, "-m", "nemoflow.cli", "build", "kube_pipeline.py", "--json"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (kube.jobs and len(kube.calls("GET", "/jobs/")) >= 3):
            assert time.monotonic() < deadline and build.poll() is None, "the build never followed its Job"
            time.sleep(0.05)
        cancel = nemoflow("cancel", "kube-train", "train", cwd=tmp_path, env={"NF_KUBE_MOUNT": str(tmp_path)})
        assert cancel.returncode == 0, cancel.stdout + cancel.stderr
        build.communicate(timeout=60)
    finally:
        if build.poll() is None:
            build.kill()
            build.communicate()
    assert build.returncode != 0
    [(name, policy)] = kube.deletes
    assert policy == "Foreground" and not kube.jobs
    train = runs_by_step(tmp_path)["train"]
    assert train["status"] == "cancelled" and train["job_id"] == name, train


def test_a_packager_ships_code_that_is_on_no_shared_volume(kube: JobStub, tmp_path: Path) -> None:
    """No Kubernetes API server can run on this machine; the stub speaks the documented protocol and runs the
    pod's command here. Only the store is on the volume; the pipeline's folder is not, so its code travels as
    the packager's archive, unpacked in the store's .stage folder, and the pod starts there."""
    kube.on_create = _runs_the_pod
    volume, code = tmp_path / "volume", tmp_path / "code"
    volume.mkdir()
    code.mkdir()
    shutil.copy(PIPELINE, code / "kube_pipeline.py")
    env = {"NF_KUBE_MOUNT": str(volume), "NEMOFLOW_STORE": str(volume / "targets")}
    unshared = nemoflow("build", "kube_pipeline.py", cwd=code, env=env)
    assert unshared.returncode != 0
    assert "the pipeline's folder (no packager ships it)" in runs_by_step(volume)["train"]["error"]
    proc = nemoflow("build", "kube_pipeline.py", "--json", cwd=code, env={**env, "NF_PACKAGER": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads((published_target(volume, "train") / "model.json").read_text())["total"] == 45
    workdir = Path(kube.created_jobs[-1]["spec"]["template"]["spec"]["containers"][0]["workingDir"])
    assert workdir.parent == volume / "targets" / ".stage" and (workdir / "kube_pipeline.py").is_file()
    assert runs_by_step(volume)["train"]["status"] == "succeeded"
