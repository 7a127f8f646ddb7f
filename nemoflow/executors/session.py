"""One connection per host per build: forked luigi workers use the build process's SSH connections.

With ``-j N`` luigi runs each step in a forked process. Inside :func:`serving`, the build process listens on
a unix socket in a private folder (mode 700, ``multiprocessing.connection`` with a random authentication key),
one thread per worker connection. An ``SSHTunnel`` verb or a Slurm state query in a forked worker is sent
there (:func:`client`) and carried out on the build process's own pooled connection and poller: a password
or 2FA prompt comes from the build's terminal once, and one ``sacct``/``squeue`` per poll serves every job.
Exceptions come back as their own type and message; results (``CommandResult``, ``SlurmState``) as data.
"""

from __future__ import annotations

# The tunnels (fabric) and Slurm polling are imported only in the process that serves them.
import contextlib
import importlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

from nemoflow.errors import ExecutorError

#: Commands at once on one connection: OpenSSH allows 10 sessions per connection, one is the SFTP channel.
CHANNELS = 8

_SERVED: dict[str, Any] = {"address": None, "authkey": None, "owner": 0}
_CLIENTS: dict[int, Session] = {}


@contextlib.contextmanager
def serving() -> Iterator[None]:
    """Serve this process's tunnels to the processes it forks until the context ends (nested: a no-op)."""
    if _SERVED["address"] is not None:
        yield
        return
    folder = tempfile.mkdtemp(prefix="nemoflow-session-")  # mode 700: only this user reaches the socket
    authkey = os.urandom(32)
    listener = Listener(os.path.join(folder, "socket"), family="AF_UNIX", authkey=authkey)
    stop = threading.Event()
    accepting = threading.Thread(target=_accept, args=(listener, stop), name="nemoflow-session", daemon=True)
    accepting.start()
    _SERVED.update(address=listener.address, authkey=authkey, owner=os.getpid())
    try:
        yield
    finally:
        _SERVED.update(address=None, authkey=None, owner=0)
        stop.set()
        with contextlib.suppress(OSError, EOFError):  # wake the accepting thread, which then returns
            Client(listener.address, family="AF_UNIX", authkey=authkey).close()
        accepting.join(timeout=5)
        listener.close()
        shutil.rmtree(folder, ignore_errors=True)


def client() -> Session | None:
    """This forked worker's connection to the build's session; None in the serving process or without one."""
    address, owner = _SERVED["address"], _SERVED["owner"]
    if address is None or os.getpid() == owner:
        return None
    pid = os.getpid()
    session = _CLIENTS.get(pid)
    if session is None:
        _CLIENTS.clear()  # connections inherited from a forking parent are the parent's
        try:
            conn = Client(address, family="AF_UNIX", authkey=_SERVED["authkey"])
        except (OSError, EOFError) as exc:
            raise ExecutorError(f"cannot reach the build's SSH session at {address}: {exc}") from exc
        session = _CLIENTS[pid] = Session(conn)
    return session


class Session:
    """A worker's end of the build's session: the tunnel verbs, done by the build process."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()  # one request and its answer at a time

    def run(self, tunnel: Any, command: str, timeout: float | None, env: dict[str, str], cwd: str | None) -> Any:
        """The ``CommandResult`` of ``command`` (whatever its exit code) on the build's connection."""
        return self._call("run", tunnel, command, timeout, env, cwd)

    def put(self, tunnel: Any, local: str, remote: str) -> None:
        """Copy ``local`` (a path the build process can read) to ``remote``."""
        return self._call("put", tunnel, local, remote)

    def get(self, tunnel: Any, remote: str, local: str) -> None:
        """Copy ``remote`` to ``local`` (a path the build process can write)."""
        return self._call("get", tunnel, remote, local)

    def expand_path(self, tunnel: Any, path: str) -> str:
        """``path`` with a leading ``~`` replaced by the far side's home folder."""
        return self._call("expand_path", tunnel, path)

    def slurm_state(self, tunnel: Any, interval: float, job_id: str) -> Any:
        """The ``SlurmState`` (or None) of ``job_id`` from the build's one poller of the tunnel's cluster."""
        return self._call("slurm_state", tunnel, interval, job_id)

    def _call(self, operation: str, tunnel: Any, *args: Any) -> Any:
        """Send the request, wait for the answer; re-raise the build process's exception here."""
        data = {**tunnel.model_dump(mode="json"), "kind": tunnel.kind}
        try:
            with self._lock:
                self._conn.send((operation, data, args))
                ok, value = self._conn.recv()
        except (OSError, EOFError) as exc:
            raise ExecutorError(f"lost the build's SSH session during {operation} on {tunnel.key}: {exc!r}") from exc
        if ok:
            return value
        raise _rebuild(value)


def _accept(listener: Listener, stop: threading.Event) -> None:
    """Accept workers until ``stop``; each is served by its own thread."""
    while not stop.is_set():
        try:
            conn = listener.accept()
        except (OSError, EOFError):
            if stop.is_set():
                return
            continue  # a peer that failed authentication, or went away during it
        if stop.is_set():
            conn.close()
            return
        threading.Thread(target=_serve, args=(conn,), name="nemoflow-session-worker", daemon=True).start()


def _serve(conn: Connection) -> None:
    """Answer one worker's requests until it goes away."""
    with conn:
        while True:
            try:
                operation, data, args = conn.recv()
            except (OSError, EOFError):
                return
            try:
                reply = (True, _handle(operation, data, args))
            except Exception as exc:  # sent back to be raised in the worker
                reply = (False, _flatten(exc))
            try:
                conn.send(reply)
            except (OSError, EOFError):
                return


def _handle(operation: str, data: dict[str, Any], args: tuple[Any, ...]) -> Any:
    """Carry out one request on this process's tunnel (and poller), within the connection's limits."""
    from pydantic import TypeAdapter

    from nemoflow.executors.tunnels import AnyTunnel

    tunnel = TypeAdapter(AnyTunnel).validate_python(data)
    with _channels(tunnel.key):  # SFTP transfers take turns in tunnels.py (one SFTP client per connection)
        return _OPERATIONS[operation](tunnel, *args)


def _slurm_state(tunnel: Any, interval: float, job_id: str) -> Any:
    from nemoflow.executors.slurm_poll import job_state

    return job_state(tunnel, interval, job_id)  # this process has no client: its own poller


_OPERATIONS: dict[str, Callable[..., Any]] = {
    "run": lambda tunnel, command, timeout, env, cwd: tunnel._run(command, timeout, env, cwd),
    "put": lambda tunnel, local, remote: tunnel.put(local, remote),
    "get": lambda tunnel, remote, local: tunnel.get(remote, local),
    "expand_path": lambda tunnel, path: tunnel.expand_path(path),
    "slurm_state": _slurm_state,
}
_CHANNELS: dict[str, threading.BoundedSemaphore] = {}


def _channels(key: str) -> threading.BoundedSemaphore:
    """The channel slots of connection ``key`` (so many workers never exceed the server's MaxSessions)."""
    found = _CHANNELS.get(key)
    if found is None:
        found = _CHANNELS.setdefault(key, threading.BoundedSemaphore(CHANNELS))
    return found


def _flatten(exc: Exception) -> tuple[str, str, tuple[str, ...], dict[str, Any]]:
    """An exception as plain data: its class by import path, its args and its simple attributes."""
    state = {k: v for k, v in vars(exc).items() if isinstance(v, str | int | float | bool | None)}
    return type(exc).__module__, type(exc).__qualname__, tuple(str(a) for a in exc.args), state


def _rebuild(flat: tuple[str, str, tuple[str, ...], dict[str, Any]]) -> Exception:
    """The exception of :func:`_flatten` again, same type and message (an ExecutorError when it cannot be)."""
    module, name, args, state = flat
    try:
        cls = getattr(importlib.import_module(module), name)
        exc = cls.__new__(cls)
        Exception.__init__(exc, *args)
        exc.__dict__.update(state)
        str(exc)  # its __str__ works with what came back
        return exc
    except Exception:
        return ExecutorError(f"{module}.{name}: {' '.join(args)}")
