"""A local TCP port relayed, client by client, to whatever an opener connects it to (a socket, an SSH channel)."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from typing import Any

from nemoflow.errors import ExecutorError


@contextlib.contextmanager
def relay(local_port: int, opener: Callable[[tuple[str, int]], Any], what: str) -> Iterator[None]:
    """Serve 127.0.0.1:``local_port`` in a thread, piping each client to ``opener(client address)``."""
    try:
        server = _RelayServer(("127.0.0.1", local_port), socketserver.BaseRequestHandler)
    except OSError as exc:
        raise ExecutorError(f"cannot forward 127.0.0.1:{local_port} through {what}: {exc}") from exc
    server.opener = opener
    server.timeout = 0.1
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            server.handle_request()  # returns after ``timeout`` without a client

    # Not serve_forever/shutdown: shutdown() waits for the serving thread for ever, and at interpreter exit
    # (a forward closed by the garbage collector) that daemon thread is gone, so the process would hang.
    thread = threading.Thread(target=serve, name=f"forward-{local_port}", daemon=True)
    with server:
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=2)


class _RelayServer(socketserver.ThreadingTCPServer):
    allow_reuse_address, daemon_threads = True, True
    opener: Callable[[tuple[str, int]], Any]

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Copy bytes both ways between the client and what ``opener`` gives for it (in its own thread)."""
        try:
            upstream = self.opener(client_address)
        except Exception:  # refused or unreachable: drop this client only
            return
        with upstream:
            upstream.settimeout(None)
            back = threading.Thread(target=_pump, args=(upstream, request), daemon=True)
            back.start()
            _pump(request, upstream)
            back.join()


def _pump(source: Any, target: Any) -> None:
    with contextlib.suppress(OSError, EOFError):
        while data := source.recv(65536):
            target.sendall(data)
        target.shutdown(socket.SHUT_WR)
