"""LocalTunnel and SSHTunnel against this machine and the real sshd of `.ci/services.sh` (no mocks)."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nemoflow.errors import ExecutorError, UserError
from nemoflow.executors import tunnels
from nemoflow.executors.tunnels import HostKeyError, LocalTunnel, SSHTunnel, Tunnel

SSHD = "/usr/sbin/sshd"
PW_USER = "nftestpw"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ssh_tunnel(service, **changes) -> SSHTunnel:  # service: services.SshdService
    fields = dict(host=service.host, port=service.port, user=service.user, identity=service.identity)
    return SSHTunnel(**{**fields, "known_hosts": service.known_hosts, "job_dir": "~/jobs", **changes})


def client_port(tunnel: Tunnel) -> str:
    return tunnel.run("echo $SSH_CONNECTION").stdout.split()[1]


@pytest.fixture(autouse=True)
def fresh_pool() -> Iterator[None]:
    """Every test opens its own connections, and leaves none behind."""
    tunnels.close_all()
    yield
    tunnels.close_all()


@pytest.fixture(params=["local", "ssh"])
def tunnel(request: pytest.FixtureRequest, tmp_path: Path) -> Tunnel:
    if request.param == "local":
        return LocalTunnel(job_dir=str(tmp_path / "jobs"))
    return ssh_tunnel(request.getfixturevalue("sshd_service"))


@pytest.fixture
def far_dir(tunnel: Tunnel, tmp_path: Path) -> Iterator[str]:
    """A folder on the far side that does not exist yet (under the remote user's home over SSH)."""
    if isinstance(tunnel, LocalTunnel):
        yield str(tmp_path / "far" / "new")
        return
    base = f"~/nf-tunnel-tests/{uuid.uuid4().hex}"
    yield f"{base}/new"
    tunnel.run(f"rm -rf {base}", check=False)


# --- run -------------------------------------------------------------------------------------------------


def test_run_gives_stdout_and_stderr(tunnel: Tunnel) -> None:
    result = tunnel.run("echo hello; echo oops >&2")
    assert (result.stdout, result.stderr, result.exit_code, result.ok) == ("hello\n", "oops\n", 0, True)


def test_run_goes_through_bash(tunnel: Tunnel) -> None:
    assert tunnel.run("echo ${BASH_VERSION:+bash}; [[ a == a ]] && echo ok").stdout.split() == ["bash", "ok"]


def test_run_without_check_returns_the_exit_code(tunnel: Tunnel) -> None:
    result = tunnel.run("echo partial; exit 3", check=False)
    assert (result.exit_code, result.ok, result.stdout) == (3, False, "partial\n")


def test_run_with_check_raises_naming_host_command_and_stderr(tunnel: Tunnel) -> None:
    with pytest.raises(ExecutorError) as caught:
        tunnel.run("echo first >&2; echo the-reason >&2; exit 3")
    assert caught.value.exit_code == 3
    message = str(caught.value)
    assert tunnel.key in message and "exit 3" in message and "the-reason" in message
    assert "echo first >&2; echo the-reason >&2; exit 3" in message


def test_run_honours_env_and_cwd(tunnel: Tunnel, far_dir: str) -> None:
    tunnel.run(f"mkdir -p {far_dir}/with\\ space")
    env = {"NF_GREETING": "it's a $value with spaces", "NF_OTHER": "2"}
    result = tunnel.run('printf "%s|%s|" "$NF_GREETING" "$NF_OTHER"; pwd', env=env, cwd=f"{far_dir}/with space")
    text, where = result.stdout.split("|")[:2], result.stdout.split("|")[2].strip()
    assert text == ["it's a $value with spaces", "2"]
    assert where == tunnel.expand_path(f"{far_dir}/with space")


def test_run_refuses_a_bad_env_name(tunnel: Tunnel) -> None:
    with pytest.raises(UserError, match="environment variable"):
        tunnel.run("true", env={"NOT VALID": "x"})


def test_run_times_out(tunnel: Tunnel) -> None:
    with pytest.raises(ExecutorError, match="timed out"):
        tunnel.run("sleep 5", timeout=0.5)


# --- put / get -------------------------------------------------------------------------------------------


def test_put_get_round_trip_into_a_new_folder(tunnel: Tunnel, far_dir: str, tmp_path: Path) -> None:
    payload = bytes(range(256)) * 1000 + b"\x00\r\n\xff end"
    source = tmp_path / "source.bin"
    source.write_bytes(payload)
    tunnel.put(source, f"{far_dir}/deeper/data.bin")
    assert tunnel.run(f"wc -c < {far_dir}/deeper/data.bin").stdout.strip() == str(len(payload))
    back = tmp_path / "back" / "again" / "data.bin"
    tunnel.get(f"{far_dir}/deeper/data.bin", back)
    assert back.read_bytes() == payload


def test_get_of_a_missing_file_names_it(tunnel: Tunnel, far_dir: str, tmp_path: Path) -> None:
    with pytest.raises(ExecutorError, match=r"missing\.bin"):
        tunnel.get(f"{far_dir}/missing.bin", tmp_path / "x.bin")


# --- forward_local ---------------------------------------------------------------------------------------


@pytest.fixture
def http_port() -> Iterator[int]:
    """A tiny HTTP server on 127.0.0.1 that answers every GET with b'through the tunnel'."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"through the tunnel"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


def fetch(port: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as answer:
        return answer.read()


def test_forward_local_answers_right_after_entering(tunnel: Tunnel, http_port: int) -> None:
    local = free_port()
    with tunnel.forward_local(local, http_port):
        assert fetch(local) == b"through the tunnel"
        assert fetch(local) == b"through the tunnel"  # a second client through the same forward
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", local), timeout=2).close()


def test_forward_local_survives_a_refused_target(tunnel: Tunnel, http_port: int) -> None:
    local, dead = free_port(), free_port()
    with tunnel.forward_local(local, dead), pytest.raises((OSError, http.client.HTTPException)):
        fetch(local)  # the relay drops this client only
    with tunnel.forward_local(local, http_port):
        assert fetch(local) == b"through the tunnel"


def test_forward_local_of_the_same_local_port_is_a_no_op(http_port: int) -> None:
    with LocalTunnel().forward_local(http_port, http_port):
        assert fetch(http_port) == b"through the tunnel"


def test_forward_local_refuses_a_busy_port(tunnel: Tunnel, http_port: int) -> None:
    with pytest.raises(ExecutorError, match=str(http_port)), tunnel.forward_local(http_port, free_port()):
        pass


# --- host keys -------------------------------------------------------------------------------------------


def test_unknown_host_key_is_refused_naming_the_file(sshd_service, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    with pytest.raises(HostKeyError) as caught:
        ssh_tunnel(sshd_service, known_hosts=str(known)).connect()
    message = str(caught.value)
    assert str(known) in message and "ssh-keyscan -p" in message and "accept_new_host_key=True" in message
    assert known.read_text() == ""


def test_accept_new_host_key_saves_it_and_verifies_it_next_time(sshd_service, tmp_path: Path) -> None:
    known = tmp_path / "sub" / "known_hosts"
    ssh_tunnel(sshd_service, known_hosts=str(known), accept_new_host_key=True).run("true")
    saved = known.read_text()
    expected = Path(sshd_service.known_hosts).read_text().split()
    assert saved.split()[0] == f"[{sshd_service.host}]:{sshd_service.port}"
    assert saved.split()[2] in expected  # the server's own key, in base64
    assert oct(known.stat().st_mode & 0o777) == "0o600"
    tunnels.close_all()
    assert ssh_tunnel(sshd_service, known_hosts=str(known)).run("echo again").stdout == "again\n"
    assert known.read_text() == saved


def test_a_changed_host_key_is_refused_even_when_accepting_new_keys(sshd_service, tmp_path: Path) -> None:
    other = Ed25519PrivateKey.generate().public_key()
    line = other.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    known = tmp_path / "known_hosts"
    known.write_text(f"[{sshd_service.host}]:{sshd_service.port} {line}\n")
    with pytest.raises(HostKeyError, match="differs") as caught:
        ssh_tunnel(sshd_service, known_hosts=str(known), accept_new_host_key=True).connect()
    assert str(known) in str(caught.value)
    assert known.read_text().count("\n") == 1


# --- pooling and reconnection ----------------------------------------------------------------------------


def test_equal_tunnels_share_one_connection(sshd_service) -> None:
    first, second = ssh_tunnel(sshd_service), ssh_tunnel(sshd_service)
    assert first == second and first is not second
    port = client_port(first)
    pooled = tunnels._POOL[first.key]
    assert client_port(second) == port
    assert tunnels._POOL[second.key] is pooled
    first.connect()
    assert tunnels._POOL[first.key] is pooled


def test_model_dump_has_only_the_fields(sshd_service) -> None:
    tunnel = ssh_tunnel(sshd_service)
    tunnel.connect()
    data = tunnel.model_dump(mode="json")
    assert set(data) == set(SSHTunnel.model_fields)
    assert SSHTunnel.model_validate(tunnel.model_dump()) == tunnel


def _connection_process(service, client: int) -> int:
    """The per-connection sshd process (a child of the listener, for ``service.user``) holding the TCP
    connection that comes from local port ``client``."""
    listener = int(Path(service.pid_file).read_text().split()[0])
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == service.port and int(fields[2].split(":")[1], 16) == client:
            inodes.add(f"socket:[{fields[9]}]")
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError, IndexError):
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) if proc.name.isdigit() else 0
            mine = parent == listener and service.user in (proc / "cmdline").read_text()
            if mine and any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                return int(proc.name)
    raise AssertionError(f"no child of sshd {listener} holds the connection from port {client}")


def test_a_dropped_connection_is_reopened_and_the_run_retried(sshd_service) -> None:
    if not sshd_service.pid_file or not Path(sshd_service.pid_file).exists():
        pytest.skip("needs sshd (openssh-server) with a pid_file in services.json")
    tunnel = ssh_tunnel(sshd_service)
    before = client_port(tunnel)
    os.kill(_connection_process(sshd_service, int(before)), signal.SIGTERM)
    assert tunnel.run("echo alive").stdout == "alive\n"  # no pause: the retry path or the liveness check
    assert client_port(tunnel) != before


def test_a_refused_connection_names_the_host(tmp_path: Path) -> None:
    tunnel = SSHTunnel(host="127.0.0.1", user="nobody", port=free_port(), known_hosts=str(tmp_path / "kh"))
    with pytest.raises(ExecutorError, match=r"nobody@127\.0\.0\.1"):
        tunnel.run("true")


# --- password prompt (a second sshd) ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def password_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str, str]]:
    """(port, known_hosts, password) of a second sshd that accepts only passwords, for user nftestpw."""
    if not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None:
        pytest.skip(f"needs sshd (openssh-server): {SSHD} or ssh-keygen is missing")
    if os.geteuid() != 0:
        pytest.skip("needs root (to create the password test user)")
    folder = tmp_path_factory.mktemp("sshd-pw")
    password = secrets.token_urlsafe(16)
    if subprocess.run(["id", PW_USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", PW_USER], check=True)
    subprocess.run(["chpasswd"], input=f"{PW_USER}:{password}", text=True, check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", folder / "host"], check=True)
    port, pid_file = free_port(), folder / "sshd.pid"
    settings = f"""Port {port}\nListenAddress 127.0.0.1\nHostKey {folder}/host\nPidFile {pid_file}
PasswordAuthentication yes\nPubkeyAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no
PermitRootLogin no\nAllowUsers {PW_USER}\nSubsystem sftp internal-sftp\n"""
    (folder / "sshd_config").write_text(settings)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    subprocess.run([SSHD, "-f", folder / "sshd_config", "-E", folder / "sshd.log"], check=True)
    deadline = time.monotonic() + 10
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    host_key = (folder / "host.pub").read_text().split()
    (folder / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    try:
        yield port, str(folder / "known_hosts"), password
    finally:
        os.kill(pid, signal.SIGTERM)


def test_password_is_asked_once_per_connection(password_sshd, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    port, known, password = password_sshd
    asked: list[str] = []
    monkeypatch.setattr(tunnels, "prompt", lambda text: asked.append(text) or password)
    tunnel = SSHTunnel(host="127.0.0.1", user=PW_USER, port=port, known_hosts=known)
    assert tunnel.run("whoami").stdout == f"{PW_USER}\n"
    source = tmp_path / "note.txt"
    source.write_text("hi")
    tunnel.put(source, "~/pw-test/note.txt")
    assert SSHTunnel(host="127.0.0.1", user=PW_USER, port=port, known_hosts=known).run("cat ~/pw-test/note.txt").ok
    assert len(asked) == 1 and PW_USER in asked[0]
    tunnel.run("rm -rf ~/pw-test")


def test_a_wrong_password_is_a_clear_error(password_sshd, monkeypatch: pytest.MonkeyPatch) -> None:
    port, known, _ = password_sshd
    monkeypatch.setattr(tunnels, "prompt", lambda text: "not the password")
    with pytest.raises(UserError, match=f"cannot log in to {PW_USER}@127.0.0.1:{port}"):
        SSHTunnel(host="127.0.0.1", user=PW_USER, port=port, known_hosts=known).connect()


def test_without_a_terminal_no_password_is_asked(password_sshd) -> None:  # pytest: stdin is no tty
    port, known, _ = password_sshd
    with pytest.raises(UserError, match=f"cannot log in to {PW_USER}@127.0.0.1:{port}"):
        SSHTunnel(host="127.0.0.1", user=PW_USER, port=port, known_hosts=known, connect_timeout=5).connect()
