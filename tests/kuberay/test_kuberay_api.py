"""The KubeRay backend against the Kubernetes API: RayCluster and RayJob resources created, followed and deleted
through the kubernetes client, talking to the stub API server of kube_stub.py (the documented protocol)."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip(
    "kubernetes", reason="needs the kubernetes client: pip install 'nemoflow[kubernetes]' (CI installs it)"
)
pytest.importorskip("jsonschema", reason="needs jsonschema: pip install 'nemoflow[kubernetes]' (CI installs it)")

from kube_stub import CRD_DIR, KubeStub, write_kubeconfig

import nemoflow
from nemoflow.errors import ExecutorError, UserError
from nemoflow.ray import RayCluster, RayJob
from nemoflow.ray.backend import close_forward

CLUSTERS, JOBS = "/rayclusters", "/rayjobs"


def executor(**extra: object) -> nemoflow.KubeRayExecutor:
    group = nemoflow.KubeRayWorkerGroup(group_name="workers", replicas=2, gpus_per_worker=1)
    return nemoflow.KubeRayExecutor(worker_groups=[group], crd_dir=str(CRD_DIR), poll_interval=0.05, **extra)


def test_cluster_start_status_reuse_stop(kube: KubeStub) -> None:
    """No Kubernetes API server can run on this machine; the stub speaks the documented protocol and the test
    plays the operator by writing the resource's .status."""
    cluster = RayCluster("Dev_Cluster", executor())
    assert cluster.status(display=False)["state"] == "NOT_FOUND"
    cluster.start(wait_until_ready=False)
    assert len(kube.calls("POST", CLUSTERS)) == 1
    stored = kube.objects[("rayclusters", "default", "dev-cluster")]
    assert stored["spec"]["workerGroupSpecs"][0]["replicas"] == 2
    assert cluster.status(display=False)["state"] == "PENDING"
    kube.set_status("rayclusters", "dev-cluster", {"state": "ready", "head": {"podName": "dev-cluster-head-x"}})
    found = cluster.status(display=False)
    assert (
        found["state"] == "RUNNING" and found["ready"] and found["details"]["head"]["podName"] == "dev-cluster-head-x"
    )
    cluster.start(wait_until_ready=True, timeout=5)  # a live cluster of the same name is reused
    RayCluster("Dev_Cluster", executor()).start(wait_until_ready=False)
    assert len(kube.calls("POST", CLUSTERS)) == 1
    cluster.stop()
    assert len(kube.calls("DELETE", CLUSTERS)) == 1
    assert ("rayclusters", "default", "dev-cluster") not in kube.objects
    assert cluster.status(display=False)["state"] == "NOT_FOUND"  # the API server answers 404 now
    cluster.stop()  # stopping a cluster that is gone is not an error


def test_cluster_start_waits_until_the_operator_says_ready(kube: KubeStub) -> None:
    """No Kubernetes API server can run on this machine; the stub (documented protocol) is made ready by a
    thread standing in for the KubeRay operator."""

    def operator() -> None:
        while ("rayclusters", "default", "waits") not in kube.objects:
            time.sleep(0.02)
        time.sleep(0.3)
        kube.set_status("rayclusters", "waits", {"state": "ready"})

    thread = threading.Thread(target=operator, daemon=True)
    thread.start()
    RayCluster("waits", executor()).start(timeout=10)
    thread.join()
    assert len(kube.calls("GET", "/rayclusters/waits")) >= 2
    with pytest.raises(ExecutorError, match=r"RayCluster default/slow is PENDING after 0.3 s"):
        RayCluster("slow", executor()).start(timeout=0.3)


def test_job_on_a_cluster_status_mapping_and_stop(kube: KubeStub) -> None:
    """No Kubernetes API server can run on this machine; the stub speaks the documented protocol and the test
    writes .status.jobStatus / .jobDeploymentStatus as the KubeRay operator does."""
    with pytest.raises(ExecutorError, match="no RayCluster default/dev"):
        RayJob("hello", executor(), cluster_name="dev").start("python hello.py")
    assert kube.calls("POST", JOBS) == []
    RayCluster("dev", executor()).start(wait_until_ready=False)
    job = RayJob("Hello", executor(env_vars={"MODE": "test"}), cluster_name="dev")
    job_id = job.start("python hello.py", runtime_env_yaml=None, pre_ray_start_commands=["pip list"])
    stored = kube.objects[("rayjobs", "default", "hello")]
    assert stored["spec"]["clusterSelector"] == {"ray.io/cluster": "dev"} and stored["spec"]["jobId"] == job_id
    assert stored["spec"]["entrypoint"] == "pip list && python hello.py"
    assert "MODE: test" in stored["spec"]["runtimeEnvYAML"]
    assert job.status(display=False)["state"] == "PENDING"
    for kuberay, ours in [
        ({"jobDeploymentStatus": "Initializing"}, "PENDING"),
        ({"jobStatus": "RUNNING", "jobDeploymentStatus": "Running", "jobId": job_id}, "RUNNING"),
        ({"jobStatus": "SUCCEEDED", "jobDeploymentStatus": "Complete", "jobId": job_id}, "SUCCEEDED"),
        ({"jobStatus": "FAILED", "jobDeploymentStatus": "Failed", "message": "exit 3"}, "FAILED"),
        ({"jobStatus": "RUNNING", "jobDeploymentStatus": "Failed", "reason": "DeadlineExceeded"}, "FAILED"),
        ({"jobDeploymentStatus": "ValidationFailed", "message": "bad spec"}, "FAILED"),
        ({"jobStatus": "STOPPED", "jobDeploymentStatus": "Complete"}, "STOPPED"),
        ({"jobDeploymentStatus": "Suspended"}, "STOPPED"),
    ]:
        kube.set_status("rayjobs", "hello", kuberay)
        found = job.status(display=False)
        assert found["state"] == ours, kuberay
        assert found["job_id"] == job_id
    assert found["backend"] == "kuberay"
    with pytest.raises(ExecutorError, match="already exists"):
        job.start("python hello.py")  # a RayJob runs once; stop() deletes it
    job.stop()
    assert len(kube.calls("DELETE", "/rayjobs/hello")) == 1
    assert job.status(display=False)["state"] == "NOT_FOUND"


def test_job_with_a_cluster_of_its_own(kube: KubeStub) -> None:
    """No Kubernetes API server can run on this machine; the stub (documented protocol) gets a RayJob that
    embeds its cluster, which KubeRay shuts down when the job finishes."""
    job = RayJob("solo", executor())
    with pytest.raises(UserError, match=r"copied into the first of KubeRayExecutor\.volume_mounts"):
        job.start("python train.py", workdir=".")  # a local folder needs a shared volume to be copied into
    with pytest.raises(UserError, match="not a folder"):
        job.start("python train.py", workdir="no/such/folder")
    job.start("python train.py", workdir="https://example.com/code.zip", pre_ray_start_commands=["pip install x"])
    spec = kube.objects[("rayjobs", "default", "solo")]["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and "clusterSelector" not in spec
    assert spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["args"] == ["pip install x"]
    assert (
        spec["entrypoint"] == "python train.py"
        and "working_dir: https://example.com/code.zip" in spec["runtimeEnvYAML"]
    )
    job.stop()
    assert kube.objects == {}


def test_start_waits_for_a_stopped_resource_of_its_name_to_be_gone(kube: KubeStub) -> None:
    """No Kubernetes API server can run on this machine; the stub (documented protocol) holds a resource with a
    deletionTimestamp, as the API server does while finalizers and dependent pods go, until a thread removes it."""
    RayCluster("again", executor()).start(wait_until_ready=False)
    RayJob("again", executor(), cluster_name="again").start("true")
    for plural in ("rayclusters", "rayjobs"):
        kube.objects[(plural, "default", "again")]["metadata"]["deletionTimestamp"] = "2026-01-01T00:01:00Z"

    def finalizers_done() -> None:
        time.sleep(0.3)
        with kube.lock:
            for plural in ("rayclusters", "rayjobs"):
                del kube.objects[(plural, "default", "again")]

    assert RayCluster("again", executor()).status(display=False)["state"] == "STOPPED"
    threading.Thread(target=finalizers_done, daemon=True).start()
    RayCluster("again", executor()).start(wait_until_ready=False, timeout=10)
    RayJob("again", executor(), cluster_name="again").start("true")
    assert len(kube.calls("POST", CLUSTERS)) == 2 and len(kube.calls("POST", JOBS)) == 2
    assert "deletionTimestamp" not in kube.objects[("rayclusters", "default", "again")]["metadata"]


def test_a_local_workdir_is_copied_into_the_first_volume_mount(kube: KubeStub, tmp_path: Path) -> None:
    """No Kubernetes API server can run on this machine; the stub speaks the documented protocol (pod create,
    read and delete, and the exec WebSocket, v4.channel.k8s.io) and plays kubelet and container: the copying
    pod's command runs here, so the volume's mountPath is a folder under tmp_path."""
    code = tmp_path / "code"
    (code / "pkg").mkdir(parents=True)
    (code / "train.py").write_text("print('train')\n")
    (code / "pkg" / "model.py").write_text("SIZE = 3\n")
    (code / ".git").mkdir()
    (code / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    pvc = tmp_path / "pvc"
    dest = pvc / "nemoflow-code" / "train"
    dest.mkdir(parents=True)
    (dest / "stale.py").write_text("")  # from an earlier run: replaced, not merged
    volume = {"name": "workspace", "persistentVolumeClaim": {"claimName": "team-workspace"}}
    mount = {"name": "workspace", "mountPath": str(pvc)}
    job = RayJob("train", executor(volumes=[volume], volume_mounts=[mount]))
    preview = job.start("python train.py", workdir=str(code), dryrun=True)
    assert preview.startswith(f"# workdir {code} is copied to {dest} (volume workspace) first\n")
    assert kube.requests == []
    job.start("python train.py", workdir=str(code))
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == ["pkg", "pkg/model.py", "train.py"]
    assert (dest / "pkg" / "model.py").read_text() == "SIZE = 3\n"
    spec = kube.objects[("rayjobs", "default", "train")]["spec"]
    assert spec["entrypoint"] == f"cd {dest} && python train.py" and "working_dir" not in spec.get("runtimeEnvYAML", "")
    (pod,) = kube.created_pods
    assert pod["spec"]["volumes"] == [volume] and pod["spec"]["containers"][0]["volumeMounts"] == [mount]
    assert kube.pods == {}  # the copying pod is deleted once it has copied
    writes = [(m, path.split("?")[0]) for m, path in kube.requests if m in ("POST", "DELETE")]
    assert [w[1].rsplit("/", 1)[-1] if w[0] == "POST" else "delete pod" for w in writes] == [
        "pods", "delete pod", "rayjobs",
    ]  # fmt: skip

    job.stop()
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    bad = RayJob("train", executor(volumes=[volume], volume_mounts=[{**mount, "mountPath": str(blocked)}]))
    with pytest.raises(ExecutorError, match=r"copying workdir .* failed with exit code [1-9]"):
        bad.start("python train.py", workdir=str(code))  # mkdir under a file fails in the pod
    assert kube.pods == {} and ("rayjobs", "default", "train") not in kube.objects


def test_job_logs_come_from_the_submitter_pod(kube: KubeStub) -> None:
    """No Kubernetes API server can run on this machine; the stub speaks the documented protocol (pod list by
    label selector, pod log with tailLines), and holds the submitter pod KubeRay's K8sJobMode would make."""
    job = RayJob("logged", executor())
    job.start("python train.py")
    with pytest.raises(ExecutorError, match="no submitter pod"):
        job.logs(lines=10)
    kube.add_pod("logged-old", {"job-name": "logged"}, "Failed", "old run\n")
    kube.add_pod("logged-new", {"job-name": "logged"}, "Running", "step 1\nstep 2\nstep 3\n")
    kube.add_pod("other", {"job-name": "other"}, "Running", "not mine\n")
    assert job.logs(lines=2) == "step 2\nstep 3\n"
    assert job.logs(follow=True, lines=0) == "step 1\nstep 2\nstep 3\n"
    later = RayJob("later", executor())
    later.start("python train.py")

    def submitter_starts() -> None:
        time.sleep(0.3)
        kube.add_pod("later-x", {"job-name": "later"}, "Pending")
        time.sleep(0.3)
        kube.add_pod("later-x", {"job-name": "later"}, "Running", "hello\n")

    threading.Thread(target=submitter_starts, daemon=True).start()
    assert later.logs(follow=True) == "hello\n"  # follow waits for the submitter pod to start
    kube.set_status("rayjobs", "later", {"jobStatus": "SUCCEEDED", "jobDeploymentStatus": "Complete"})
    kube.pods.clear()
    with pytest.raises(ExecutorError, match="no submitter pod"):
        later.logs(follow=True)  # the job has finished and its pod is gone: nothing to wait for


def test_crd_schema_is_read_from_the_api_server_without_crd_dir(kube: KubeStub) -> None:
    """No Kubernetes API server can run on this machine; the stub speaks the documented protocol and serves the
    KubeRay CRDs (apiextensions.k8s.io/v1) as an API server with KubeRay installed does: a bad field is refused
    before any create."""
    bad = nemoflow.KubeRayExecutor(volume_mounts=[{"name": "d", "mountPath": "/d", "subpath": "x"}])
    with pytest.raises(UserError, match=r"volumeMounts\[0\].*'subpath' was unexpected"):
        RayCluster("bad", bad).start(wait_until_ready=False)
    assert kube.calls("GET", "customresourcedefinitions/rayclusters.ray.io") and kube.calls("POST") == []
    RayCluster("good", nemoflow.KubeRayExecutor()).start(wait_until_ready=False)
    assert len(kube.calls("POST", CLUSTERS)) == 1


@pytest.mark.parametrize(("method", "code"), [("POST", 403), ("GET", 500)])
def test_api_errors_name_the_resource(kube: KubeStub, method: str, code: int) -> None:
    """No Kubernetes API server can run on this machine; the stub speaks the documented protocol and answers
    403 Forbidden / 500 with the Status body the API server sends."""
    kube.errors[(method, "rayclusters")] = code
    with pytest.raises(ExecutorError, match=rf"RayCluster default/denied: HTTP {code}") as caught:
        RayCluster("denied", executor()).start(wait_until_ready=False)
    if code == 403:
        assert "forbidden" in str(caught.value) and "RBAC" in str(caught.value)
    kube.errors[(method, "rayjobs")] = code
    with pytest.raises(ExecutorError, match=rf"RayJob default/denied: HTTP {code}"):
        RayJob("denied", executor()).start("true")


def test_no_crd_installed_and_no_api_server(kube: KubeStub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No Kubernetes API server can run on this machine; the stub (documented protocol) answers 404 for a CRD
    that is not installed, and a kubeconfig pointing at a closed port reaches no server at all."""
    kube._crds["rayclusters.ray.io"] = None  # type: ignore[assignment]
    with pytest.raises(ExecutorError, match="KubeRay operator installed"):
        RayCluster("x", nemoflow.KubeRayExecutor()).start(wait_until_ready=False)
    closed = KubeStub()
    url = closed.url
    closed.server_close()
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "closed", url)))
    with pytest.raises(ExecutorError, match=rf"RayCluster default/x: the Kubernetes API at {url} did not answer"):
        RayCluster("x", executor()).status(display=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ExecutorError, match="no Kubernetes cluster configured"):
        RayCluster("x", executor()).status(display=False)


def test_port_forward_reaches_the_head_pod_through_the_api_server(kube: KubeStub) -> None:
    """No Kubernetes API server can run on this machine; the stub speaks the documented protocol: pods listed by
    the labels KubeRay puts on a head (ray.io/cluster, ray.io/node-type=head), and the pod port-forward WebSocket
    (v4.channel.k8s.io), relayed to a local HTTP server standing in for the head's dashboard."""
    dashboard = ThreadingHTTPServer(("127.0.0.1", 0), _Dashboard)
    threading.Thread(target=dashboard.serve_forever, args=(0.05,), daemon=True).start()
    cluster = RayCluster("fwd", executor())
    cluster.start(wait_until_ready=False)
    kube.add_pod("fwd-head-abc", {"ray.io/cluster": "fwd", "ray.io/node-type": "head"}, "Pending")
    port = _free_port()
    with pytest.raises(ExecutorError, match=r"no running head pod \(ray.io/cluster=fwd,ray.io/node-type=head\)"):
        cluster.port_forward(port=port, target_port=8265)
    kube.add_pod("fwd-head-abc", {"ray.io/cluster": "fwd", "ray.io/node-type": "head"}, "Running")
    kube.add_pod("fwd-worker-x", {"ray.io/cluster": "fwd", "ray.io/node-type": "worker"}, "Running")
    kube.pod_ports[("fwd-head-abc", 8265)] = dashboard.server_address[:2]
    try:
        cluster.port_forward(port=port, target_port=8265)
        for _ in range(2):  # a stream per connection
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/version", timeout=10) as response:
                assert json.loads(response.read()) == {"ray_version": "stub", "path": "/api/version"}
        assert kube.forwards == 2
        cluster.port_forward(port=port, target_port=8265)  # forwarding the port again replaces the old forward
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/x", timeout=10) as response:
            assert json.loads(response.read())["path"] == "/x"
    finally:
        close_forward(port)
        dashboard.shutdown()
        dashboard.server_close()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/version", timeout=2)


class _Dashboard(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = json.dumps({"ray_version": "stub", "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
