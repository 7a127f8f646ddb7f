"""Opening one SSH connection (fabric/paramiko): host key checks, key or password/2FA login, compression."""

from __future__ import annotations

import getpass
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nemoflow.errors import ExecutorError, UserError

if TYPE_CHECKING:
    from nemoflow.executors.tunnels import SSHTunnel


class HostKeyError(UserError):
    """The server's host key is unknown (and not accepted) or differs from the one on file."""


def open_connection(tunnel: SSHTunnel, connection: Callable[..., Any]) -> Any:
    """A new, authenticated fabric Connection (``connection``: fabric's class) with its host key checked."""
    import paramiko

    agent = tunnel.identity is None  # with an identity, only that key is tried (like IdentitiesOnly)
    auth: dict[str, Any] = {"allow_agent": agent, "look_for_keys": agent}
    if tunnel.identity:
        auth["key_filename"] = os.path.expanduser(tunnel.identity)
    wait = tunnel.connect_timeout
    conn = connection(
        tunnel.host,
        user=tunnel.user,
        port=tunnel.port,
        connect_timeout=math.ceil(wait),
        connect_kwargs={**auth, "banner_timeout": wait, "auth_timeout": wait, "compress": tunnel.compression},
    )
    known = os.path.expanduser(tunnel.known_hosts or "~/.ssh/known_hosts")
    conn.client.set_missing_host_key_policy(_host_key_policy(tunnel, known))
    if os.path.exists(known):
        conn.client.load_host_keys(known)
    try:
        try:
            conn.open()
        except paramiko.SSHException as exc:  # a changed host key, or no key was accepted
            _after_refusal(tunnel, conn, exc, known)
    except (paramiko.SSHException, EOFError, OSError, UserError) as exc:
        conn.close()
        if isinstance(exc, UserError):
            raise
        raise ExecutorError(f"cannot connect to {tunnel.key}: {exc}") from exc
    conn.transport.set_keepalive(tunnel.keepalive_interval)
    return conn


def _after_refusal(tunnel: SSHTunnel, conn: Any, exc: Exception, known: str) -> None:
    """Refuse a changed host key; after key auth failed, answer password or keyboard-interactive prompts."""
    import paramiko

    if isinstance(exc, paramiko.BadHostKeyException):
        label = tunnel.host if tunnel.port == 22 else f"[{tunnel.host}]:{tunnel.port}"
        raise HostKeyError(
            f"host key of {label} differs from the one in {known}: refused",
            hint=f"if the server's key changed on purpose: ssh-keygen -R '{label}' -f {known}",
        ) from exc
    transport = conn.client.get_transport()
    from nemoflow.executors import tunnels  # its ``prompt`` as it is now (tests and GUIs set it)

    prompt = tunnels.prompt
    ask = prompt if prompt is not None else (getpass.getpass if sys.stdin and sys.stdin.isatty() else None)
    if transport is None or not transport.is_active():
        raise exc
    if ask is None or transport.is_authenticated():
        raise UserError(f"cannot log in to {tunnel.key}: {exc}", hint="check identity= or the ssh agent") from exc
    try:
        try:
            transport.auth_interactive(tunnel.user, lambda _title, _text, prompts: [ask(p) for p, _echo in prompts])
        except paramiko.BadAuthenticationType as bad:
            if "password" not in bad.allowed_types:
                raise
            transport.auth_password(tunnel.user, ask(f"{tunnel.key}'s password: "), fallback=False)
    except paramiko.AuthenticationException as failed:
        raise UserError(f"cannot log in to {tunnel.key}: {failed}", hint="check identity= or the ssh agent") from failed
    conn.transport = transport


def _host_key_policy(tunnel: SSHTunnel, known: str) -> Any:
    """Refuse an unknown host key or, when opted in, append it to ``known`` (never rewrite the file)."""
    import paramiko

    class Policy(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            if not tunnel.accept_new_host_key:
                raise HostKeyError(
                    f"host key of {hostname} is not in {known}: refused",
                    hint=f"check it, then: ssh-keyscan -p {tunnel.port} {tunnel.host} >> {known}, "
                    "or pass accept_new_host_key=True",
                )
            Path(known).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(os.open(known, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a", encoding="utf-8") as file:
                file.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")

    return Policy()
