"""A Ray cluster on this machine: a real head (``ray start --head``) bound to 127.0.0.1, with its own temp dir.

``ray start`` runs in a session of its own, and every process the head spawns (GCS, raylet, dashboard, its
agents, idle workers) stays in that session, so ``stop`` ends exactly them: never ``ray stop``, which ends
every Ray process of the machine. Processes naming the cluster's temp dir are ended too (a session id can be
lost when the state file is).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from nemoflow.errors import ExecutorError
from nemoflow.executors.relay import relay
from nemoflow.ray import state
from nemoflow.ray.backend import ClusterBackend, ClusterStatus, close_forward, open_forward
from nemoflow.ray.jobs import DashboardJobBackend

KIND = "clusters"
# Ray ignores --node-ip-address=127.0.0.1 and binds the machine's outward address unless this is 0.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


class LocalClusterBackend(ClusterBackend):
    """``RayCluster(name, RayExecutor(address="http://127.0.0.1:PORT", cluster_num_cpus=...))``: the head's
    dashboard on that port; ``num_cpus``/``num_gpus``/``memory`` stay what each job's entrypoint reserves."""

    kind = "local"

    @property
    def dashboard_port(self) -> int:
        return urllib.parse.urlparse(self.executor.address).port or 8265

    @property
    def temp_dir(self) -> str:
        # Short and fixed per name: Ray's unix sockets live under it (a path may have at most 107 bytes).
        digest = hashlib.sha256(f"{state.state_dir()}\0{self.name}".encode()).hexdigest()[:10]
        return f"/tmp/nf-ray-{digest}"

    def start(
        self, *, wait_until_ready: bool, timeout: float, dryrun: bool, pre_ray_start_commands: list[str]
    ) -> str | None:
        argv = self._command()
        if dryrun:
            return "\n".join([*pre_ray_start_commands, _env_line() + shlex.join(argv)])
        current = self.status()
        if current.state == "RUNNING":
            return None  # a live cluster of this name: reuse it
        if _answers(self.executor.address):
            raise ExecutorError(
                f"cannot start Ray cluster {self.name!r}: another Ray dashboard already answers at {self.executor.address}"
                " (give RayExecutor(address=...) a free port, or stop that cluster)"
            )
        for command in pre_ray_start_commands:
            subprocess.run(["bash", "-c", command], check=True, timeout=timeout)
        env = {**os.environ, **LOOPBACK_ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        starter = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )  # fmt: skip
        session = starter.pid
        try:
            output, _ = starter.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self._kill(self._pids(session))
            raise ExecutorError(f"Ray head {self.name!r} did not start within {timeout:g} s") from exc
        if starter.returncode != 0:
            self._kill(self._pids(session))
            tail = "\n".join(output.strip().splitlines()[-15:])
            raise ExecutorError(f"`ray start --head` for cluster {self.name!r} failed (exit {starter.returncode}):\n{tail}")
        record = {"backend": self.kind, "dashboard": self.executor.address, "temp_dir": self.temp_dir}
        state.save(KIND, self.name, {**record, "session": session, "pids": self._pids(session)})
        if wait_until_ready:
            _wait_for_dashboard(self.executor.address, timeout, self.name)
        return None

    def status(self) -> ClusterStatus:
        known = state.load(KIND, self.name)
        if known is None:
            return ClusterStatus(self.name, self.kind, "NOT_FOUND")
        alive = [pid for pid in known["pids"] if _alive(pid)]
        if not alive:
            return ClusterStatus(self.name, self.kind, "STOPPED", details=known)
        ready = _answers(known["dashboard"])
        return ClusterStatus(
            self.name, self.kind, "RUNNING" if ready else "STARTING", ready, known["dashboard"], {**known, "pids": alive}
        )

    def port_forward(self, port: int, target_port: int) -> None:
        if port == target_port:
            close_forward(port)
            return  # the head is on this machine: its port is already here
        open_forward(port, relay(port, lambda _: socket.create_connection(("127.0.0.1", target_port)), "a local relay"))

    def stop(self) -> None:
        known = state.load(KIND, self.name) or {}
        pids = sorted({*known.get("pids", []), *self._pids(known.get("session"))})
        for _ in range(3):  # a worker the raylet forked while it was being stopped is found on the next pass
            if not pids:
                break
            self._kill(pids)
            pids = self._pids(known.get("session"))
        state.remove(KIND, self.name)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    # ---- parts ----------------------------------------------------------------------------------
    def _command(self) -> list[str]:
        executor = self.executor
        ray = str(Path(sys.executable).parent / "ray")
        argv = [ray if os.path.exists(ray) else "ray", "start", "--head", "--node-ip-address=127.0.0.1"]
        argv += ["--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}", f"--temp-dir={self.temp_dir}"]
        argv += ["--disable-usage-stats", f"--port={_free_port()}", f"--ray-client-server-port={_free_port()}"]
        argv += [f"--dashboard-agent-listen-port={_free_port()}", f"--metrics-export-port={_free_port()}"]
        if executor.cluster_num_cpus is not None:
            argv.append(f"--num-cpus={executor.cluster_num_cpus}")
        if executor.cluster_num_gpus is not None:
            argv.append(f"--num-gpus={executor.cluster_num_gpus}")
        if executor.entrypoint_resources:  # a step that asks for a custom resource must find it on the head
            argv.append(f"--resources={json.dumps(executor.entrypoint_resources)}")
        return argv

    def _pids(self, session: int | None = None) -> list[int]:
        """The live processes of the head's session, and those whose command line names its temp dir."""
        marker = self.temp_dir.encode()
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                if fields[0] == "Z":
                    continue
                if (session is not None and int(fields[3]) == session) or marker in Path(
                    f"/proc/{entry}/cmdline"
                ).read_bytes():
                    found.append(int(entry))
        return sorted(found)

    def _kill(self, pids: list[int], grace: float = 10.0) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)
        for pid in pids:
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)


class LocalJobBackend(DashboardJobBackend):
    """``RayJob(name, RayExecutor(...), cluster_name=None)``: on the named local cluster, else at ``address``."""

    kind = "local"

    def address(self) -> str:
        if self.cluster_name:
            known = state.load(KIND, self.cluster_name)
            if known is None:
                raise ExecutorError(f"no Ray cluster named {self.cluster_name!r} was started here (RayCluster.start)")
            return known["dashboard"]
        return self.executor.address


def _env_line() -> str:
    return " ".join(f"{k}={v}" for k, v in LOOPBACK_ENV.items()) + " "


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except (OSError, IndexError):
        return False


def _answers(address: str, timeout: float = 2.0) -> bool:
    """Whether a Ray dashboard answers at ``address``."""
    try:
        with urllib.request.urlopen(f"{address}/api/version", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _wait_for_dashboard(address: str, timeout: float, name: str) -> None:
    deadline = time.monotonic() + timeout
    while not _answers(address):
        if time.monotonic() > deadline:
            raise ExecutorError(f"Ray cluster {name!r} started, but its dashboard at {address} did not answer in {timeout:g} s")
        time.sleep(0.2)


def info(address: str) -> dict[str, Any]:
    """The dashboard's /api/version answer (Ray's version, the cluster's session)."""
    with urllib.request.urlopen(f"{address}/api/version", timeout=5) as response:
        return json.loads(response.read())
