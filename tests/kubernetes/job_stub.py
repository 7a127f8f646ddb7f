"""A stand-in Kubernetes API server for the KubernetesExecutor's tests: batch/v1 Jobs on top of the KubeRay
tests' stub (tests/kuberay/kube_stub.py), which already speaks pods, pod logs and the error ``Status`` objects.

No Kubernetes API server can run on this machine, so this stub, an HTTP server on 127.0.0.1 in a thread,
speaks the documented REST protocol of what the executor calls: ``POST/GET/DELETE
/apis/batch/v1/namespaces/{ns}/jobs[/{name}]`` (409 AlreadyExists and 404 NotFound as ``Status`` objects; a
delete's ``propagationPolicy`` is recorded, from the query or the ``DeleteOptions`` body) and the pod calls of
the KubeRay stub (list by label selector, read, log). It plays the Job controller: a created Job gets one pod
labelled ``job-name``, Pending; a test then plays the kubelet through :meth:`JobStub.run_pod` (which, since no
container can start here, runs the pod's command on this machine, in the pod's working directory with the
pod's environment, so the store must be on a "volume" whose mountPath is a folder of this machine) and
:meth:`JobStub.finish` (the container's terminated state and the Job's condition).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import kubernetes_validate
import pytest

_spec = importlib.util.spec_from_file_location("kuberay_stub", Path(__file__).parent.parent / "kuberay" / "kube_stub.py")
kuberay_stub = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(kuberay_stub)  # type: ignore[union-attr]
status_object, write_kubeconfig, TOKEN = kuberay_stub.status_object, kuberay_stub.write_kubeconfig, kuberay_stub.TOKEN

VALIDATE_FOR = kubernetes_validate.latest_version()  # the newest Kubernetes the stub stands for
_JOBS = re.compile(r"^/apis/batch/v1/namespaces/([^/]+)/jobs(?:/([^/]+))?$")


class JobStub(kuberay_stub.KubeStub):
    """The KubeRay stub plus Jobs: ``jobs`` by (namespace, name), ``deletes`` (name, propagationPolicy),
    ``fail_next`` (method, resource, HTTP status) answered once each, and ``on_create`` called in a thread with
    each new Job (the test's controller/kubelet)."""

    def __init__(self) -> None:
        super().__init__()
        self.RequestHandlerClass = _JobHandler
        self.jobs: dict[tuple[str, str], dict] = {}
        self.created_jobs: list[dict] = []
        self.deletes: list[tuple[str, str | None]] = []
        self.fail_next: list[tuple[str, str, int]] = []
        self.on_create: Callable[[JobStub, dict], None] | None = None

    # ---- what the Job controller and kubelet do, for a test to call ---------------------------------
    def pod_of(self, job: str, namespace: str = "default") -> dict:
        with self.lock:
            return next(
                p
                for (ns, _), p in self.pods.items()
                if ns == namespace and p["metadata"]["labels"].get("job-name") == job
            )

    def set_pod(self, job: str, phase: str, container_state: dict, reason: str | None = None) -> None:
        pod = self.pod_of(job)
        with self.lock:
            pod["status"] = {"phase": phase, "containerStatuses": [{"name": "step", "state": container_state}]}
            if reason:
                pod["status"]["reason"] = reason

    def run_pod(self, job: str) -> int:
        """Play kubelet and container: Running, then the pod's command run here with its env and workingDir;
        its output becomes the pod's log. The exit code."""
        pod = self.pod_of(job)
        container = pod["spec"]["containers"][0]
        self.set_pod(job, "Running", {"running": {"startedAt": "2026-01-01T00:00:01Z"}})
        env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/")}
        env.update({e["name"]: e.get("value", "") for e in container.get("env", []) if "value" in e})
        done = subprocess.run(
            container["command"], cwd=container["workingDir"], env=env, capture_output=True, text=True, timeout=120
        )
        with self.lock:
            self.logs[("default", pod["metadata"]["name"])] = done.stdout + done.stderr
        return done.returncode

    def finish(self, job: str, exit_code: int, reason: str | None = None) -> None:
        """The container terminated with ``exit_code`` (``reason``: Completed, Error, OOMKilled) and the Job
        controller's condition: Complete, or Failed with BackoffLimitExceeded (backoffLimit 0)."""
        reason = reason or ("Completed" if exit_code == 0 else "Error")
        terminated = {"terminated": {"exitCode": exit_code, "reason": reason}}
        self.set_pod(job, "Succeeded" if exit_code == 0 else "Failed", terminated)
        if exit_code == 0:
            self.set_condition(job, "Complete", "", "")
        else:
            self.set_condition(job, "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")

    def set_condition(self, job: str, kind: str, reason: str, message: str, namespace: str = "default") -> None:
        with self.lock:
            status = self.jobs[(namespace, job)].setdefault("status", {})
            condition = {"type": kind, "status": "True", "reason": reason, "message": message}
            status["conditions"] = [*status.get("conditions", []), condition]
            status["succeeded" if kind == "Complete" else "failed"] = 1


class _JobHandler(kuberay_stub._Handler):
    server: JobStub

    def _route(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        found = _JOBS.match(url.path)
        if found is None:
            return super()._route(method)
        stub = self.server
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        stub.requests.append((method, self.path))
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(401, status_object(401, "Unauthorized", "Unauthorized"))
        for code in [c for m, what, c in stub.fail_next if m == method and what == "jobs"][:1]:
            stub.fail_next.remove((method, "jobs", code))
            return self._send(code, status_object(code, "InternalError", "etcdserver: request timed out"))
        if (method, "jobs") in stub.errors:
            code = stub.errors[(method, "jobs")]
            verb = {"POST": "create", "GET": "get", "DELETE": "delete"}[method]
            message = f'jobs.batch is forbidden: User "stub" cannot {verb} resource "jobs" in API group "batch"'
            return self._send(code, status_object(code, "Forbidden", message))
        ns, name = found.groups()
        query = dict(urllib.parse.parse_qsl(url.query))
        if method == "POST" and name is None:
            return self._create(ns, body)
        with stub.lock:
            job = stub.jobs.get((ns, name or ""))
        if job is None:
            return self._not_found("jobs.batch", name or "")
        if method == "GET":
            return self._send(200, job)
        if method == "DELETE":
            policy = query.get("propagationPolicy") or (body or {}).get("propagationPolicy")
            with stub.lock:
                stub.deletes.append((name, policy))
                del stub.jobs[(ns, name)]
                for key in [k for k, p in stub.pods.items() if p["metadata"]["labels"].get("job-name") == name]:
                    del stub.pods[key]
            return self._send(
                200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "details": {"name": name}}
            )
        return self._send(405, status_object(405, "MethodNotAllowed", f"{method} is not supported here"))

    def _create(self, ns: str, body: dict) -> None:
        stub = self.server
        name = body["metadata"]["name"]
        if body.get("kind") != "Job" or body.get("apiVersion") != "batch/v1":
            return self._send(400, status_object(400, "BadRequest", "kind/apiVersion are not batch/v1 Job"))
        try:  # what the API server's schema check (fieldValidation=Strict) does, with the published schema
            kubernetes_validate.validate(body, VALIDATE_FOR, strict=True)
        except kubernetes_validate.ValidationError as exc:
            return self._send(422, status_object(422, "Invalid", f'Job.batch "{name}" is invalid: {exc.message}'))
        with stub.lock:
            if (ns, name) in stub.jobs:
                message = f'jobs.batch "{name}" already exists'
                return self._send(409, status_object(409, "AlreadyExists", message, {"name": name, "kind": "jobs"}))
            stub.created_jobs.append(json.loads(json.dumps(body)))
            stored = json.loads(json.dumps(body))
            stored["metadata"] |= {"namespace": ns, "uid": f"uid-{name}", "creationTimestamp": "2026-01-01T00:00:00Z"}
            stored["status"] = {}
            stub.jobs[(ns, name)] = stored
            template = stored["spec"]["template"]
            labels = {**template["metadata"].get("labels", {}), "job-name": name, "controller-uid": f"uid-{name}"}
            pod_name = f"{name[:57]}-x7k2p"
            metadata = {"name": pod_name, "namespace": ns, "labels": labels}
            metadata["creationTimestamp"] = "2026-01-01T00:00:01Z"
            waiting = {"waiting": {"reason": "ContainerCreating"}}
            status = {"phase": "Pending", "containerStatuses": [{"name": "step", "state": waiting}]}
            stub.pods[(ns, pod_name)] = {"metadata": metadata, "spec": template["spec"], "status": status}
            stub.logs[(ns, pod_name)] = ""
        if stub.on_create is not None:
            threading.Thread(target=stub.on_create, args=(stub, stored), daemon=True).start()
        return self._send(201, stored)


@pytest.fixture(name="kube")
def kube_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[JobStub]:
    """The stub, serving in a thread, with ``$KUBECONFIG`` pointing the kubernetes client (and every
    ``nemoflow`` command a test runs) at it. A test module imports it to use it."""
    stub = JobStub()
    thread = threading.Thread(target=stub.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", stub.url)))
    try:
        yield stub
    finally:
        stub.shutdown()
        stub.server_close()
