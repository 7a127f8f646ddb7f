"""Container options of a DockerExecutor as the docker SDK takes them: names, ports, ulimits."""

from __future__ import annotations

import re
from typing import Any


def container_name(name: str) -> str:
    """``name`` as a valid docker container name."""
    clean = re.sub(r"[^a-zA-Z0-9_.-]+", "-", name).strip("-.") or "step"
    return clean if clean[0].isalnum() else f"nf-{clean}"


def port_bindings(ports: list[int | str]) -> dict[str, Any]:
    """Docker's ``ports`` argument: ``"[ip:]host:container[/proto]"`` or one port number for both sides."""
    bindings: dict[str, Any] = {}
    for port in ports:
        spec, _, proto = str(port).partition("/")
        parts = spec.split(":")
        if len(parts) > 3 or not all(p.isdigit() for p in parts[-2:]):
            raise ValueError(f"bad port {port!r}: use 'host:container', 'ip:host:container' or a number")
        host: Any = int(parts[-2]) if len(parts) > 1 else int(parts[0])
        if len(parts) == 3:
            host = (parts[0], host)
        bindings[f"{parts[-1]}/{proto or 'tcp'}"] = host
    return bindings


def ulimit_specs(ulimits: list[str]) -> list[dict[str, Any]]:
    """Docker's ``ulimits`` from NeMo Run's ``"name:soft[:hard]"`` (or ``"name=soft[:hard]"``) strings."""
    specs = []
    for text in ulimits:
        name, sep, limits = text.replace("=", ":", 1).partition(":")
        soft, _, hard = limits.partition(":")
        if not name or not sep or not soft.lstrip("-").isdigit() or (hard and not hard.lstrip("-").isdigit()):
            raise ValueError(f"bad ulimit {text!r}: use 'name:soft' or 'name:soft:hard', e.g. 'nofile:1024:2048'")
        specs.append({"name": name, "soft": int(soft), "hard": int(hard or soft)})
    return specs
