"""A stand-in Kubernetes API server for the KubeRay backend's tests.

No Kubernetes API server can run on this machine, so this stub, an HTTP server on 127.0.0.1 in a thread,
speaks the documented REST protocol for what the backend calls: custom objects (create, get, get status,
delete; 409 AlreadyExists and 404 NotFound answered as ``Status`` objects, as the API server does), the CRDs
(``apiextensions.k8s.io/v1``), pods (create, read, delete, list, log), pod port-forward (a WebSocket speaking
``v4.channel.k8s.io``: per port a data and an error channel, each opened by a frame naming the port, then
data frames prefixed by their channel byte) and pod exec (the same protocol: stdin 0, stdout 1, stderr 2, and
the exit Status on 3). A created pod is Running at once, and exec runs its command on this machine: the
stub plays kubelet and container, so a test gives the pod's volume a mountPath under its tmp_path. Objects
live in memory; a test plays the KubeRay operator by setting an object's ``.status``
(:meth:`KubeStub.set_status`) and adding pods.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import socket
import struct
import subprocess
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
_PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+)(?:/(log|portforward|exec))?)?$")
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455
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
        self.pod_ports: dict[tuple[str, int], tuple[str, int]] = {}  # (pod, port) -> where that port really is
        self.forwards = 0  # port-forward streams opened
        self.created_pods: list[dict] = []  # every Pod a client created, as sent
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
        if (found := _PODS.match(url.path)) and method == "GET" and found.group(3) == "portforward":
            return self._port_forward(found.group(2), int(query["ports"]))
        if (found := _PODS.match(url.path)) and method == "GET" and found.group(3) == "exec":
            return self._exec(found.group(2), urllib.parse.parse_qs(url.query).get("command", []))
        if (found := _PODS.match(url.path)) and found.group(3) is None and method in ("POST", "DELETE"):
            return self._pod_write(method, found.group(1), found.group(2), body)
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

    def _pod_write(self, method: str, ns: str, name: str | None, body: Any) -> None:
        stub = self.server
        with stub.lock:
            if method == "POST" and name is None:
                name = body["metadata"]["name"]
                if (ns, name) in stub.pods:
                    return self._send(409, status_object(409, "AlreadyExists", f'pods "{name}" already exists'))
                stub.created_pods.append(json.loads(json.dumps(body)))
                stored = {**body, "metadata": {**body["metadata"], "namespace": ns}, "status": {"phase": "Running"}}
                stored["metadata"].setdefault("labels", {})
                stored["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
                stub.pods[(ns, name)], stub.logs[(ns, name)] = stored, ""
                return self._send(201, stored)
            if method == "DELETE" and name is not None and (ns, name) in stub.pods:
                return self._send(200, stub.pods.pop((ns, name)))
        return self._not_found("pods", name or "")

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
        if not self.path.split("?")[0].endswith("/log"):
            return self._send(200, stub.pods[(ns, name)])
        text = stub.logs[(ns, name)]
        if "tailLines" in query:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(query["tailLines"]) :])
        return self._send(200, text.encode(), "text/plain")

    def _port_forward(self, pod: str, port: int) -> None:
        """Upgrade to a WebSocket, then relay channel 0 to the TCP address standing in for the pod's port."""
        stub = self.server
        if ("default", pod) not in stub.pods or (pod, port) not in stub.pod_ports:
            return self._not_found("pods", pod)
        send = self._upgrade()
        if send is None:
            return None
        stub.forwards += 1
        upstream = socket.create_connection(stub.pod_ports[(pod, port)])
        opening = struct.pack("<H", port)

        def pod_to_client() -> None:
            while data := upstream.recv(65536):
                send(0x2, b"\x00" + data)
            send(0x8, struct.pack("!H", 1000))  # the pod's side closed: close the stream

        send(0x2, b"\x00" + opening)  # data channel, then error channel, each opened with the port number
        send(0x2, b"\x01" + opening)
        threading.Thread(target=pod_to_client, daemon=True).start()
        try:
            while (frame := self._read_frame()) is not None:
                opcode, payload = frame
                if opcode == 0x8:
                    break
                if opcode == 0x2 and payload[:1] == b"\x00":
                    upstream.sendall(payload[1:])
        finally:
            upstream.close()
            self.close_connection = True

    def _exec(self, pod: str, command: list[str]) -> None:
        """Run ``command`` here (the stub is the container), its stdin, stdout and stderr on channels 0, 1, 2."""
        if ("default", pod) not in self.server.pods:
            return self._not_found("pods", pod)
        send = self._upgrade()
        if send is None:
            return None
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        def pipe(stream: Any, channel: bytes) -> None:
            while data := stream.read1(65536):
                send(0x2, channel + data)

        readers = [threading.Thread(target=pipe, args=(process.stdout, b"\x01"), daemon=True)]
        readers.append(threading.Thread(target=pipe, args=(process.stderr, b"\x02"), daemon=True))
        for reader in readers:
            reader.start()

        def feed() -> None:
            with contextlib.suppress(OSError):
                while (frame := self._read_frame()) is not None and frame[0] != 0x8:
                    if frame[1][:1] == b"\x00" and process.poll() is None:
                        process.stdin.write(frame[1][1:])  # type: ignore[union-attr]
                        process.stdin.flush()  # type: ignore[union-attr]

        threading.Thread(target=feed, daemon=True).start()
        code = process.wait()
        for reader in readers:
            reader.join()
        if code == 0:
            status: dict = {"metadata": {}, "status": "Success"}
        else:
            status = status_object(500, "NonZeroExitCode", f"command terminated with non-zero exit code: {code}")
            status["details"] = {"causes": [{"reason": "ExitCode", "message": str(code)}]}
        send(0x2, b"\x03" + json.dumps(status).encode())
        send(0x8, struct.pack("!H", 1000))
        self.close_connection = True

    def _upgrade(self) -> Any:
        """Answer 101 Switching Protocols (v4.channel.k8s.io); a function sending one frame, or None if refused."""
        protocols = [p.strip() for p in self.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        if "v4.channel.k8s.io" not in protocols:
            self._send(400, status_object(400, "BadRequest", "streaming needs the v4.channel.k8s.io protocol"))
            return None
        accept = base64.b64encode(hashlib.sha1((self.headers["Sec-WebSocket-Key"] + _WS_GUID).encode()).digest())
        self.send_response(101)
        for key, value in [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", accept.decode()),
        ]:
            self.send_header(key, value)
        self.send_header("Sec-WebSocket-Protocol", "v4.channel.k8s.io")
        self.end_headers()
        lock = threading.Lock()

        def send(opcode: int, payload: bytes) -> None:
            size = len(payload)
            if size < 126:
                head = struct.pack("!BB", 0x80 | opcode, size)
            elif size < 1 << 16:
                head = struct.pack("!BBH", 0x80 | opcode, 126, size)
            else:
                head = struct.pack("!BBQ", 0x80 | opcode, 127, size)
            with lock, contextlib.suppress(OSError):
                self.wfile.write(head + payload)

        return send

    def _read_frame(self) -> tuple[int, bytes] | None:
        """One client frame (masked, as RFC 6455 requires of clients), or None at the end of the stream."""
        head = self.rfile.read(2)
        if len(head) < 2:
            return None
        size = head[1] & 0x7F
        if size == 126:
            size = struct.unpack("!H", self.rfile.read(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", self.rfile.read(8))[0]
        mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
        data = self.rfile.read(size)
        return head[0] & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(data))

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
