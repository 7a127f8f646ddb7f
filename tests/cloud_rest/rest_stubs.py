"""Stand-in DGX Cloud (Run:ai) and Lepton REST services for the cloud executors' tests.

No DGX Cloud or Lepton service can run on this machine, so each stub, an HTTP server on 127.0.0.1 in a
thread (a free port), speaks the documented REST protocol for what the executors call. Run:ai: ``POST
/token`` (client credentials), ``GET /org-unit/projects``, ``POST/GET/DELETE /workloads/trainings`` and
``/workloads/distributed``. Lepton's workspace API: ``GET /dedicated-node-groups`` and ``.../<id>/nodes``,
``POST /jobs``, ``GET/DELETE /jobs/<id>``, ``GET /jobs/<id>/replicas`` and ``.../replicas/<id>/log``.
A created workload waits (pending) until a test moves it to running (:meth:`Stub.start`): then the stub,
playing the cluster, runs the workload's command on this machine in a subprocess with the workload's
environment; the "PVC" is a folder both see, as a mounted volume would be. Every request is recorded
(:attr:`Stub.requests`) and :meth:`Stub.fail` makes the next matching requests answer an error status.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

SECRET = "stub-secret-7f3a9c"  # the credential the stubs accept; tests assert it is never written anywhere
TOKEN = "stub-token-51d0"  # the bearer token the DGX stub hands out
WORKSPACE_SECRETS = {"hf-token": "stub-hf-value"}  # Lepton workspace secrets by name


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float


@dataclass
class Workload:
    id: str
    name: str
    kind: str
    command: list[str]
    env: dict[str, str]
    body: dict[str, Any]
    phase: str
    proc: subprocess.Popen[bytes] | None = None
    output: bytearray = field(default_factory=bytearray)


class Stub:
    """A JSON REST service on 127.0.0.1; subclasses route requests (``route``)."""

    prefix = ""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.workloads: dict[str, Workload] = {}
        self.faults: list[tuple[str, re.Pattern[str], int, dict[str, str], list[int]]] = []
        self.lock = threading.Lock()
        self.closed = False
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                path = self.path.split("?")[0]
                with stub.lock:
                    stub.requests.append(Request(self.command, path, dict(self.headers), body, time.monotonic()))
                status, headers, answer = stub.answer(self.command, path, dict(self.headers), body)
                data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PATCH = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{self.prefix}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def fail(
        self, method: str, path: str, status: int, *, times: int = 1, headers: dict[str, str] | None = None
    ) -> None:
        """The next ``times`` requests ``method`` whose path matches the regex ``path`` answer ``status``."""
        self.faults.append((method, re.compile(path), status, headers or {}, [times]))

    def answer(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, dict[str, str], Any]:
        for fault_method, pattern, status, fault_headers, left in self.faults:
            if left[0] > 0 and fault_method == method and pattern.search(path):
                left[0] -= 1
                return status, fault_headers, {"message": f"stub fault {status}"}
        if not path.startswith(self.prefix):
            return 404, {}, {"message": "no such path"}
        return self.route(method, path[len(self.prefix) :], headers, body)

    def route(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, dict[str, str], Any]:
        raise NotImplementedError

    # ---- the cluster side, played by the test -----------------------------------------------------
    def wait_for_workload(self, timeout: float = 60) -> Workload:
        """The first workload created (waiting for it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.workloads:
                return next(iter(self.workloads.values()))
            time.sleep(0.05)
        raise AssertionError(f"no workload was created; requests: {[(r.method, r.path) for r in self.requests]}")

    def start(self, workload: Workload) -> None:
        """Move ``workload`` to running: run its command here, as its container would, then to its end phase."""
        env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **workload.env}
        workload.proc = subprocess.Popen(workload.command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        workload.phase = self.running_phase

        def follow() -> None:
            assert workload.proc is not None and workload.proc.stdout is not None
            for chunk in iter(lambda: workload.proc.stdout.read1(4096), b""):  # type: ignore[union-attr]
                workload.output.extend(chunk)
            code = workload.proc.wait()
            if workload.phase == self.running_phase:
                workload.phase = self.done_phase if code == 0 else self.failed_phase

        threading.Thread(target=follow, daemon=True).start()

    def start_each_created(self) -> None:
        """From now on, in the background: start every workload as soon as it is created (builds through the CLI)."""

        def loop() -> None:
            while not self.closed:
                for workload in list(self.workloads.values()):
                    if workload.proc is None:
                        self.start(workload)
                time.sleep(0.05)

        threading.Thread(target=loop, daemon=True).start()

    def finish(self, workload: Workload, timeout: float = 60) -> None:
        assert workload.proc is not None
        workload.proc.wait(timeout)
        deadline = time.monotonic() + 5
        while workload.phase == self.running_phase and time.monotonic() < deadline:
            time.sleep(0.02)

    def kill(self, workload: Workload) -> None:
        if workload.proc is not None and workload.proc.poll() is None:
            workload.proc.kill()
            workload.proc.wait()

    def close(self) -> None:
        self.closed = True
        for workload in self.workloads.values():
            self.kill(workload)
        self.server.shutdown()
        self.server.server_close()

    running_phase = "Running"
    done_phase = "Completed"
    failed_phase = "Failed"


def _bearer(headers: dict[str, str]) -> str:
    return headers.get("Authorization", "").removeprefix("Bearer ")


class DGXStub(Stub):
    """Run:ai's REST API as DGX Cloud exposes it, under ``/api/v1``."""

    prefix = "/api/v1"
    app_id = "nemoflow-app"

    def route(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, dict[str, str], Any]:
        if method == "POST" and path == "/token":
            if body.get("grantType") != "client_credentials":
                return 400, {}, {"message": "unsupported grantType"}
            if body.get("clientId") != self.app_id or body.get("clientSecret") != SECRET:
                return 401, {}, {"message": "invalid client credentials"}
            return 200, {}, {"accessToken": TOKEN}
        if _bearer(headers) != TOKEN:
            return 401, {}, {"message": "invalid or expired token"}
        if method == "GET" and path == "/org-unit/projects":
            return 200, {}, {"projects": [{"name": "team-a", "id": "17", "clusterId": "cluster-1"}]}
        match = re.fullmatch(r"/workloads/(trainings|distributed)(?:/([\w-]+))?", path)
        if not match:
            return 404, {}, {"message": f"no route {method} {path}"}
        kind, workload_id = match.groups()
        if method == "POST" and workload_id is None:
            spec = body["spec"]
            command = shlex.split(f"{spec['command']} {spec.get('args', '')}")
            env = {e["name"]: e["value"] for e in spec.get("environmentVariables", [])}
            workload = Workload(str(uuid.uuid4()), body["name"], kind, command, env, body, "Creating")
            self.workloads[workload.id] = workload
            return 202, {}, {"workloadId": workload.id, "name": workload.name, "actualPhase": "Creating"}
        workload = self.workloads.get(workload_id or "")
        if workload is None or workload.kind != kind:
            return 404, {}, {"message": f"workload {workload_id} not found"}
        if method == "GET":
            return 200, {}, {"workloadId": workload.id, "name": workload.name, "actualPhase": workload.phase}
        if method == "DELETE":
            self.kill(workload)
            del self.workloads[workload.id]
            return 202, {}, {"workloadId": workload.id}
        return 405, {}, {"message": "method not allowed"}


class LeptonStub(Stub):
    """A Lepton workspace's REST API, under ``/api/v2/workspaces/ws1``."""

    prefix = "/api/v2/workspaces/ws1"
    running_phase = "Running"
    done_phase = "Completed"
    failed_phase = "Failed"

    def route(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, dict[str, str], Any]:
        if _bearer(headers) != SECRET:
            return 401, {}, {"code": "Unauthorized", "message": "invalid workspace token"}
        if method == "GET" and path == "/dedicated-node-groups":
            return 200, {}, [{"metadata": {"id": "ng-1", "name": "h100-pool"}}]
        if method == "GET" and path == "/dedicated-node-groups/ng-1/nodes":
            return 200, {}, [{"metadata": {"id": "node-a"}}, {"metadata": {"id": "node-b"}}]
        if method == "POST" and path == "/jobs":
            spec = body["spec"]
            env = {}
            for e in spec.get("envs", []):
                ref = (e.get("value_from") or {}).get("secret_name_ref")
                env[e["name"]] = WORKSPACE_SECRETS[ref] if ref else e["value"]
            job_id = body["metadata"]["id"]
            workload = Workload(
                job_id, body["metadata"]["name"], "job", spec["container"]["command"], env, body, "Queueing"
            )
            self.workloads[job_id] = workload
            return 200, {}, {"metadata": body["metadata"], "spec": spec, "status": {"state": "Queueing"}}
        match = re.fullmatch(r"/jobs/([\w-]+)(/replicas(?:/([\w-]+)/log)?)?", path)
        workload = self.workloads.get(match.group(1)) if match else None
        if workload is None:
            return 404, {}, {"code": "NotFound", "message": f"no route or job for {path}"}
        replicas = match.group(2) if match else None
        if method == "GET" and replicas and match and match.group(3):
            return 200, {"Content-Type": "text/plain"}, bytes(workload.output)
        if method == "GET" and replicas:
            started = workload.proc is not None
            return 200, {}, [{"metadata": {"id": f"{workload.id}-0-abcde"}}] if started else []
        if method == "GET":
            n = workload.body["spec"].get("parallelism", 1)
            ready = n if workload.phase == "Running" else 0
            return (
                200,
                {},
                {"metadata": {"id": workload.id}, "status": {"state": workload.phase, "ready": ready, "active": n}},
            )
        if method == "DELETE":
            self.kill(workload)
            del self.workloads[workload.id]
            return 200, {}, b""
        return 405, {}, {"message": "method not allowed"}


@pytest.fixture
def dgx() -> Iterator[DGXStub]:
    stub = DGXStub()
    yield stub
    stub.close()


@pytest.fixture
def lepton() -> Iterator[LeptonStub]:
    stub = LeptonStub()
    yield stub
    stub.close()


@pytest.fixture(autouse=True)
def _fresh_tokens() -> Iterator[None]:
    """Each test gets its own DGX token (the executor caches one per process)."""
    from nemoflow.executors import dgxcloud

    dgxcloud._tokens.clear()
    yield
    dgxcloud._tokens.clear()


def secret_nowhere(folder: Path) -> list[str]:
    """The files under ``folder`` whose bytes contain the stub's secret (or its token)."""
    found = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if SECRET.encode() in data or TOKEN.encode() in data:
                found.append(str(path))
    return found
