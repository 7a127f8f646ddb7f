"""Run commands and copy files here or over SSH with one verb set: run, put, get, forward_local.

``SSHTunnel`` uses fabric (the extra ``nemoflow[ssh]``, imported inside functions only). Its connections are
pooled, one per ``user@host:port`` per process, shared by equal tunnels and closed by :func:`close_all`; a build's
forked workers use the build process's connections instead (see ``session.py``).
A dropped connection is re-opened and run/put/get retried once: ``run`` repeats a command only when the first
attempt failed before it started (SSHException, EOFError, socket error); a connection lost while it ran is
reported, never retried.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import functools
import os
import re
import shlex
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import pydantic

from nemoflow.errors import ExecutorError, UserError
from nemoflow.executors import session
from nemoflow.executors.relay import relay
from nemoflow.executors.ssh_open import HostKeyError, open_connection

__all__ = ["AnyTunnel", "CommandResult", "HostKeyError", "LocalTunnel", "SSHTunnel", "Tunnel", "close_all"]

T = TypeVar("T")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: Answers password / keyboard-interactive prompts; None means ``getpass.getpass`` when stdin is a terminal,
#: else no prompting. Tests (or a GUI) may set it. It is asked once per new connection.
prompt: Callable[[str], str] | None = None


@dataclass(frozen=True)
class CommandResult:
    """What a command printed and how it exited."""

    stdout: str
    stderr: str
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class Tunnel(pydantic.BaseModel, abc.ABC):
    """Where jobs run: the verbs every backend uses, the same on this machine and over SSH."""

    model_config = pydantic.ConfigDict(extra="forbid", validate_assignment=True)

    job_dir: str

    @property
    @abc.abstractmethod
    def key(self) -> str:
        """Pool identity: ``"local"`` or ``"user@host:port"``."""

    def connect(self) -> None:
        """Open (or reuse) the connection; idempotent."""

    def close(self) -> None:
        """Close the connection."""

    @abc.abstractmethod
    def expand_path(self, path: str) -> str:
        """``path`` with a leading ``~`` replaced by the far side's home folder."""

    def run(
        self,
        command: str,
        *,
        check: bool = True,
        timeout: float | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> CommandResult:
        """Run ``command`` through bash on the far side, with ``env`` exported, in ``cwd``.

        Raises ExecutorError with ``check`` and a non-zero exit (naming host, command and stderr's last lines;
        ``.exit_code`` set), on a timeout, or when the connection fails."""
        for name in env or {}:
            if not _ENV_NAME.match(name):
                raise UserError(f"bad environment variable name {name!r}", hint="use letters, digits and _")
        result = self._run(command, timeout, dict(env or {}), cwd)
        if check and not result.ok:
            tail = "\n".join(result.stderr.strip().splitlines()[-10:])
            raise ExecutorError(
                f"command failed on {self.key} (exit {result.exit_code}): {_short(command)}"
                + (f"\nstderr:\n{tail}" if tail else ""),
                exit_code=result.exit_code,
            )
        return result

    @abc.abstractmethod
    def _run(self, command: str, timeout: float | None, env: dict[str, str], cwd: str | None) -> CommandResult:
        """The command's result, whatever its exit code."""

    @abc.abstractmethod
    def put(self, local: str | os.PathLike[str], remote: str) -> None:
        """Copy one file to the far side, creating its parent folder."""

    @abc.abstractmethod
    def get(self, remote: str, local: str | os.PathLike[str]) -> None:
        """Copy one file from the far side, creating its local parent folder."""

    @abc.abstractmethod
    def forward_local(
        self, local_port: int, remote_port: int, remote_host: str = "127.0.0.1"
    ) -> contextlib.AbstractContextManager[None]:
        """In the context, 127.0.0.1:``local_port`` accepts connections to the far side's ``remote_host:remote_port``."""


class LocalTunnel(Tunnel):
    """This machine: ``bash -c`` through subprocess, file copies, and a small TCP relay."""

    kind: Literal["local"] = "local"
    job_dir: str = "~/.nemoflow/jobs"

    @property
    def key(self) -> str:
        return "local"

    def expand_path(self, path: str) -> str:
        return os.path.expanduser(path)

    def _run(self, command: str, timeout: float | None, env: dict[str, str], cwd: str | None) -> CommandResult:
        where = self.expand_path(cwd) if cwd else None
        try:
            done = subprocess.run(
                ["bash", "-c", command],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=os.environ | env,
                cwd=where,
            )
        except subprocess.TimeoutExpired as exc:
            raise ExecutorError(f"command timed out on local after {timeout}s: {_short(command)}") from exc
        except OSError as exc:  # a missing cwd, or no bash
            raise ExecutorError(f"cannot run on local: {_short(command)}: {exc}") from exc
        return CommandResult(done.stdout, done.stderr, done.returncode)

    def put(self, local: str | os.PathLike[str], remote: str) -> None:
        _copy(Path(local), Path(self.expand_path(remote)))

    def get(self, remote: str, local: str | os.PathLike[str]) -> None:
        _copy(Path(self.expand_path(remote)), Path(local))

    @contextlib.contextmanager
    def forward_local(self, local_port: int, remote_port: int, remote_host: str = "127.0.0.1") -> Iterator[None]:
        """A no-op when the ports are equal and the host is local; else a threaded relay on 127.0.0.1."""
        if local_port == remote_port and remote_host in LOCAL_HOSTS:
            yield
            return
        with relay(local_port, lambda _: socket.create_connection((remote_host, remote_port), timeout=10), "local"):
            yield


class SSHTunnel(Tunnel):
    """A machine reached over SSH; host keys are checked against ``known_hosts`` (see :meth:`_retrying`).

    ``timeout=`` is another name of ``connect_timeout`` (seconds to connect, read the banner and log in);
    ``compression=True`` compresses the connection (paramiko's ``compress``; one pooled connection per
    ``user@host:port``, so the first tunnel to connect decides). ``port=None`` is port 22.
    """

    kind: Literal["ssh"] = "ssh"
    host: str = pydantic.Field(min_length=1)
    user: str = pydantic.Field(min_length=1)
    identity: str | None = None
    port: Annotated[int, pydantic.BeforeValidator(lambda v: 22 if v is None else v)] = pydantic.Field(
        default=22, ge=1, le=65535
    )
    job_dir: str = "~/.nemoflow/jobs"
    connect_timeout: float = pydantic.Field(
        default=30, gt=0, validation_alias=pydantic.AliasChoices("connect_timeout", "timeout")
    )
    keepalive_interval: int = pydantic.Field(default=30, ge=0)
    known_hosts: str | None = None
    accept_new_host_key: bool = False
    compression: bool = False
    pre_command: str | None = None  # run before every command, which runs only when it succeeds

    @property
    def timeout(self) -> float:
        """The connect timeout in seconds (``connect_timeout``)."""
        return self.connect_timeout

    @timeout.setter
    def timeout(self, value: float) -> None:
        self.connect_timeout = value

    @property
    def key(self) -> str:
        return f"{self.user}@{f'[{self.host}]' if ':' in self.host else self.host}:{self.port}"

    def connect(self) -> None:
        self._conn()

    def close(self) -> None:
        """Close the pooled connection of this tunnel's key (so: of every equal tunnel)."""
        with _POOL_LOCK:
            entry = _POOL.pop(self.key, None)
        if entry is not None:
            entry.close()

    def expand_path(self, path: str) -> str:
        if path != "~" and not path.startswith("~/"):
            return path
        if (shared := session.client()) is not None:  # a forked worker: the build's connection
            return shared.expand_path(self, path)
        entry = self._conn()
        if entry.home is None:
            entry.home = self._retrying("echo $HOME", lambda e: self._fabric_run(e, "echo $HOME", None)).stdout.strip()
        return entry.home + path[1:]

    def _run(self, command: str, timeout: float | None, env: dict[str, str], cwd: str | None) -> CommandResult:
        if (shared := session.client()) is not None:
            return shared.run(self, command, timeout, env, cwd)
        if self.pre_command:  # NeMo Run's: e.g. "module load slurm" before every command
            command = f"{self.pre_command} && {command}"
        script = _script(command, env, cwd)
        return self._retrying(f"run {_short(command)}", lambda entry: self._fabric_run(entry, script, timeout))

    def put(self, local: str | os.PathLike[str], remote: str) -> None:
        if (shared := session.client()) is not None:
            return shared.put(self, os.fspath(local), remote)
        target = self.expand_path(remote)
        self.run(f"mkdir -p {_quote_path(os.path.dirname(target) or '.')}")
        self._retrying(f"put {local} -> {target}", lambda entry: _sftp(entry, entry.conn.put, os.fspath(local), target))

    def get(self, remote: str, local: str | os.PathLike[str]) -> None:
        if (shared := session.client()) is not None:
            return shared.get(self, remote, os.fspath(local))
        source = self.expand_path(remote)
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        self._retrying(f"get {source}", lambda entry: _sftp(entry, entry.conn.get, source, os.fspath(local)))

    @contextlib.contextmanager
    def forward_local(self, local_port: int, remote_port: int, remote_host: str = "127.0.0.1") -> Iterator[None]:
        """A relay on 127.0.0.1, listening before the context is entered, that opens one direct-tcpip
        channel per client (fabric's own forward_local binds in a thread and dies on a refused channel)."""
        channel = self._conn().conn.transport.open_channel
        opener = functools.partial(channel, "direct-tcpip", (remote_host, remote_port), timeout=self.connect_timeout)
        with relay(local_port, opener, self.key):
            yield

    def _conn(self) -> _Connection:
        """The pooled, live connection of this key; opened when missing or dropped."""
        with _POOL_LOCK:
            if _POOL_PID[0] != os.getpid():  # a forked child: the sockets are the parent's; drop, never close
                _POOL.clear()
                _POOL_PID[0] = os.getpid()
            entry = _POOL.get(self.key)
            if entry is None or not entry.alive():
                if entry is not None:
                    entry.close()
                _POOL[self.key] = entry = _Connection(_open(self))
            return entry

    def _retrying(self, what: str, operation: Callable[[_Connection], T]) -> T:
        """``operation`` on the pooled connection, re-opened and retried once when the connection dropped."""
        _, paramiko = _ssh()
        for attempt in (1, 2):
            entry = self._conn()
            try:
                return operation(entry)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                dropped = isinstance(exc, paramiko.SSHException | EOFError | ConnectionError) or not entry.alive()
                if not dropped:  # a missing file, a denied path...: the connection is fine
                    raise ExecutorError(f"{what} failed on {self.key}: {exc}") from exc
                self.close()
                if attempt == 2:
                    raise ExecutorError(f"{what} failed on {self.key}: connection lost twice ({exc!r})") from exc
        raise AssertionError("unreachable")

    def _fabric_run(self, entry: _Connection, script: str, timeout: float | None) -> CommandResult:
        from invoke.exceptions import CommandTimedOut

        began = time.monotonic()
        try:
            res = entry.conn.run(
                f"bash -c {shlex.quote(script)}", hide=True, warn=True, in_stream=False, timeout=timeout
            )
        except CommandTimedOut as exc:
            raise ExecutorError(f"command timed out on {self.key} after {timeout}s: {_short(script)}") from exc
        if res.exited == -1 and timeout is not None and time.monotonic() - began >= timeout:
            # invoke's timer sometimes loses the race with the closed channel: it is still a timeout
            raise ExecutorError(f"command timed out on {self.key} after {timeout}s: {_short(script)}")
        if res.exited == -1 and not entry.alive():  # the channel died without an exit status
            raise ExecutorError(f"connection to {self.key} lost while running (not retried): {_short(script)}")
        return CommandResult(res.stdout, res.stderr, res.exited)


def _tunnel_kind(value: Any) -> str:
    """The kind of a tunnel, also from data without ``kind`` (dumped with ``exclude_defaults``)."""
    if not isinstance(value, dict):
        return getattr(value, "kind", "")
    return value.get("kind") or ("ssh" if "host" in value else "local")


AnyTunnel = Annotated[
    Annotated[LocalTunnel, pydantic.Tag("local")] | Annotated[SSHTunnel, pydantic.Tag("ssh")],
    pydantic.Discriminator(_tunnel_kind),
]


@dataclass
class _Connection:
    """One pooled fabric Connection; ``home`` is the far side's $HOME, looked up once when first needed."""

    conn: Any
    home: str | None = None
    sftp_lock: threading.Lock = field(default_factory=threading.Lock)  # one SFTP client: one call at a time

    def alive(self) -> bool:
        return self.conn.transport is not None and self.conn.transport.is_active()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


def _sftp(entry: _Connection, operation: Callable[..., Any], *args: Any) -> Any:
    """A transfer on the connection's one SFTP client, which answers one request at a time (threads wait)."""
    with entry.sftp_lock:
        return operation(*args)


_POOL: dict[str, _Connection] = {}
_POOL_LOCK = threading.RLock()
_POOL_PID = [os.getpid()]


def close_all() -> None:
    """Close every pooled SSH connection of this process."""
    with _POOL_LOCK:
        while _POOL:
            _POOL.popitem()[1].close()


atexit.register(close_all)


def _ssh() -> tuple[Any, Any]:
    """The fabric and paramiko modules (the optional extra ``nemoflow[ssh]``)."""
    try:
        import fabric
        import paramiko
    except ImportError as exc:
        raise UserError("SSHTunnel needs fabric", hint="pip install 'nemoflow[ssh]'") from exc
    return fabric, paramiko


def _open(tunnel: SSHTunnel) -> Any:
    """A new, authenticated connection of ``tunnel`` (see :mod:`nemoflow.executors.ssh_open`)."""
    fabric, _ = _ssh()
    return open_connection(tunnel, fabric.Connection)


def _script(command: str, env: dict[str, str], cwd: str | None) -> str:
    """The bash script that exports ``env``, enters ``cwd`` and runs ``command``."""
    lines = [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
    if cwd:
        lines.append(f"cd {_quote_path(cwd)} || exit 1")
    return "\n".join([*lines, command])


def _quote_path(path: str) -> str:
    """A shell-quoted path whose leading ``~`` still expands."""
    if path == "~" or path.startswith("~/"):
        return "~/" + shlex.quote(path[2:]) if path[2:] else "~"
    return shlex.quote(path)


def _short(command: str) -> str:
    return command if len(command) <= 200 else command[:197] + "..."


def _copy(source: Path, target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    except OSError as exc:
        raise ExecutorError(f"cannot copy {source} to {target} (local): {exc}") from exc
