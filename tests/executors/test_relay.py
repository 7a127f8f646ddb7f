"""A forwarded port: serves clients, and never keeps its process from ending."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import threading

from nemoflow.executors.relay import relay


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_relay_pipes_clients_to_the_far_side_and_closes() -> None:
    with socket.create_server(("127.0.0.1", 0)) as far:
        far_port = far.getsockname()[1]

        def echo() -> None:
            conn, _ = far.accept()
            with conn:
                conn.sendall(conn.recv(100).upper())

        threading.Thread(target=echo, daemon=True).start()
        port = _free_port()
        opener = lambda _: socket.create_connection(("127.0.0.1", far_port))  # noqa: E731
        with relay(port, opener, "a test relay"), socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(b"ping")
            assert client.recv(100) == b"PING"
        with socket.socket() as again:
            assert again.connect_ex(("127.0.0.1", port)) != 0, "the port is closed with the relay"


def test_a_process_that_leaves_a_forward_open_still_exits() -> None:
    """RayCluster.port_forward keeps its relay open in the process; the interpreter's exit must not hang on it."""
    code = textwrap.dedent(
        f"""
        import socket
        from nemoflow.executors.relay import relay
        from nemoflow.ray.backend import open_forward
        open_forward({_free_port()}, relay({_free_port()}, lambda _: socket.create_connection(("127.0.0.1", 9)), "t"))
        forgotten = relay({_free_port()}, lambda _: None, "t")
        forgotten.__enter__()  # never exited: closed by the garbage collector at the end
        print("done")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr
