"""A stand-in Kubernetes API server for the KubeRay backend's tests.

No Kubernetes API server can run on this machine, so this stub, an HTTP server on 127.0.0.1 in a thread,
speaks the documented REST protocol for what the backend calls: custom objects (create, get, get status,
delete; 409 AlreadyExists and 404 NotFound answered as ``Status`` objects, as the API server does), the CRDs
(``apiextensions.k8s.io/v1``), and pod list / pod log. Objects live in memory; a test plays the KubeRay
operator by setting an object's ``.status`` (:meth:`KubeStub.set_status`) and adding pods.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

CRD_DIR = Path(__file__).parent / "crds"
TOKEN = "stub-token"
_CUSTOM = re.compile(r"^/apis/ray\.io/v1/namespaces/([^/]+)/(rayclusters|rayjobs)(?:/([^/]+))?(/status)?$")
_CRD = re.compile(r"^/apis/apiextensions\.k8s\.io/v1/customresourcedefinitions/([^/]+)$")
_PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+)/(log))?$")
_KINDS = {"rayclusters": "RayCluster", "rayjobs": "RayJob"}


class KubeStub(ThreadingHTTPServer):
    """The objects it holds, every request it saw (method, path), and errors a test asks it to answer with."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.objects: dict[tuple[str, str, str], dict] = {}  # (plural, namespace, name) -> object
        self.pods: dict[tuple[str, str], dict] = {}  # (namespace, name) -> Pod
        self.logs: dict[tuple[str, str], str] = {}
        self.requests: list[tuple[str, str]] = []
        self.errors: dict[tuple[str, str], int] = {}  # (method, plural or "pods") -> HTTP status to answer
        self.lock = threading.Lock()
        self._crds: dict[str, dict] = {}
        self._version = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def calls(self, method: str, plural: str = "") -> list[str]:
        return [path for m, path in self.requests if m == method and plural in path]

    def set_status(self, plural: str, name: str, status: dict, namespace: str = "default") -> None:
        """What the KubeRay operator does: write the object's ``.status`` (the status subresource)."""
        with self.lock:
            self.objects[(plural, namespace, name)]["status"] = status

    def add_pod(self, name: str, labels: dict[str, str], phase: str = "Running", log: str = "") -> None:
        with self.lock:
            self._version += 1
            metadata = {"name": name, "namespace": "default", "labels": labels}
            metadata["creationTimestamp"] = f"2026-01-01T00:00:{self._version:02d}Z"
            self.pods[("default", name)] = {"metadata": metadata, "status": {"phase": phase}}
            self.logs[("default", name)] = log

    def crd(self, name: str) -> dict | None:
        if name not in self._crds:
            path = CRD_DIR / f"ray.io_{name.split('.')[0]}.yaml"
            if not path.exists():
                return None
            self._crds[name] = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        return self._crds[name]

    def next_version(self) -> str:
        self._version += 1
        return str(self._version)


def status_object(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    """A ``meta/v1`` Status, the body the API server sends with every error."""
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message}
    return {**body, "reason": reason, "details": details or {}, "code": code}


class _Handler(BaseHTTPRequestHandler):
    server: KubeStub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def _route(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        stub = self.server
        stub.requests.append((method, self.path))
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(401, status_object(401, "Unauthorized", "Unauthorized"))
        for (err_method, what), code in stub.errors.items():
            if err_method == method and f"/{what}" in url.path:
                reason = {403: "Forbidden", 500: "InternalError"}.get(code, "Unknown")
                message = f'{what} is forbidden: User "stub" cannot {method.lower()} resource "{what}"'
                return self._send(code, status_object(code, reason, message if code == 403 else "etcdserver: timeout"))
        if found := _CUSTOM.match(url.path):
            return self._custom(method, *found.groups(), body, query)
        if (found := _CRD.match(url.path)) and method == "GET":
            crd = stub.crd(found.group(1))
            if crd is None:
                return self._not_found("customresourcedefinitions.apiextensions.k8s.io", found.group(1))
            return self._send(200, crd)
        if (found := _PODS.match(url.path)) and method == "GET":
            return self._pods(found.group(1), found.group(2), query)
        return self._send(404, status_object(404, "NotFound", "the server could not find the requested resource"))

    def _custom(
        self, method: str, ns: str, plural: str, name: str | None, sub: str | None, body: Any, query: dict
    ) -> None:
        stub = self.server
        with stub.lock:
            if method == "POST" and name is None:
                name = body["metadata"]["name"]
                if body.get("kind") != _KINDS[plural] or body.get("apiVersion") != "ray.io/v1":
                    return self._send(400, status_object(400, "BadRequest", f"kind/apiVersion do not match {plural}"))
                if (plural, ns, name) in stub.objects:
                    message = f'{plural}.ray.io "{name}" already exists'
                    return self._send(409, status_object(409, "AlreadyExists", message, {"name": name, "kind": plural}))
                stored = json.loads(json.dumps(body))
                stored["metadata"] |= {"namespace": ns, "uid": f"uid-{name}", "resourceVersion": stub.next_version()}
                stored["metadata"] |= {"generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z"}
                stored.pop("status", None)  # the status subresource: a create never sets it
                stub.objects[(plural, ns, name)] = stored
                return self._send(201, stored)
            found = stub.objects.get((plural, ns, name or ""))
            if found is None or method == "POST":
                return self._not_found(f"{plural}.ray.io", name or "")
            if method == "GET":
                return self._send(200, found)
            if method == "DELETE" and sub is None:
                del stub.objects[(plural, ns, name)]
                details = {"name": name, "group": "ray.io", "kind": plural, "uid": found["metadata"]["uid"]}
                return self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "details": details})
        return self._send(405, status_object(405, "MethodNotAllowed", f"{method} is not supported here"))

    def _pods(self, ns: str, name: str | None, query: dict) -> None:
        stub = self.server
        if name is None:
            wanted = dict(part.split("=", 1) for part in query.get("labelSelector", "").split(",") if part)
            items = [
                pod
                for (pod_ns, _), pod in sorted(stub.pods.items())
                if pod_ns == ns and wanted.items() <= pod["metadata"]["labels"].items()
            ]
            return self._send(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})
        if (ns, name) not in stub.pods:
            return self._not_found("pods", name)
        text = stub.logs[(ns, name)]
        if "tailLines" in query:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(query["tailLines"]) :])
        return self._send(200, text.encode(), "text/plain")

    def _not_found(self, resource: str, name: str) -> None:
        message = f'{resource} "{name}" not found'
        kind = resource.split(".")[0]
        self._send(404, status_object(404, "NotFound", message, {"name": name, "kind": kind}))

    def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def write_kubeconfig(path: Path, server: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "stub", "cluster": {"server": server}}],
        "users": [{"name": "stub", "user": {"token": TOKEN}}],
        "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub", "namespace": "default"}}],
        "current-context": "stub",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The stub, serving in a thread, with ``$KUBECONFIG`` pointing the kubernetes client at it."""
    stub = KubeStub()
    thread = threading.Thread(target=stub.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", stub.url)))
    try:
        yield stub
    finally:
        stub.shutdown()
        stub.server_close()
