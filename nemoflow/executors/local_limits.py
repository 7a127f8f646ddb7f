"""Resource limits of a local step: CPU affinity, a hard memory limit (a cgroup, else RLIMIT_AS), GPU selection."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_V1_ROOT = Path("/sys/fs/cgroup/memory")
_V2_ROOT = Path("/sys/fs/cgroup")


def parse_memory(value: int | str) -> int:
    """Bytes from ``4g``, ``512m``, ``2GiB``, ``1.5g`` or a plain number of bytes."""
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"memory must be positive, got {value}")
        return value
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"bad memory size {value!r}: use bytes or a number with k, m, g or t (e.g. '4g')")
    size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size <= 0:
        raise ValueError(f"memory must be positive, got {value!r}")
    return size


def cpu_set(cpus: int | list[int]) -> set[int]:
    """The CPU ids to pin a step to: ``cpus`` ids as given, or the first ``cpus`` of those this process may use."""
    allowed = sorted(os.sched_getaffinity(0))
    if isinstance(cpus, int):
        if cpus > len(allowed):
            raise ValueError(f"cpus={cpus} but this process may use only {len(allowed)} CPU(s): {allowed}")
        return set(allowed[:cpus])
    missing = sorted(set(cpus) - set(allowed))
    if missing:
        raise ValueError(f"cpus {missing} are not among the CPUs this process may use: {allowed}")
    return set(cpus)


def visible_devices(gpus: int | list[int]) -> str:
    """``CUDA_VISIBLE_DEVICES`` for ``gpus``: the first N devices, or the ids listed."""
    ids = list(range(gpus)) if isinstance(gpus, int) else gpus
    return ",".join(str(i) for i in ids)


@dataclass
class MemoryLimit:
    """A hard memory limit for one step: its own cgroup when one can be made here, else RLIMIT_AS."""

    limit: int
    cgroup: Path | None = None
    version: int = 0

    @classmethod
    def make(cls, limit: int, name: str) -> MemoryLimit:
        """A cgroup of its own for the step (v1 memory controller or v2), or the RLIMIT_AS fallback."""
        folder = f"nemoflow-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}-{uuid.uuid4().hex[:8]}"
        with contextlib.suppress(OSError):
            if (_V1_ROOT / "memory.limit_in_bytes").exists():
                path = _V1_ROOT / folder
                path.mkdir()
                try:
                    (path / "memory.limit_in_bytes").write_text(str(limit))
                    if (path / "memory.memsw.limit_in_bytes").exists():  # no escape into swap
                        with contextlib.suppress(OSError):
                            (path / "memory.memsw.limit_in_bytes").write_text(str(limit))
                except OSError:
                    path.rmdir()
                    raise
                return cls(limit, path, 1)
            if "memory" in (_V2_ROOT / "cgroup.controllers").read_text().split():
                path = _V2_ROOT / folder
                path.mkdir()
                try:
                    (path / "memory.max").write_text(str(limit))
                    with contextlib.suppress(OSError):
                        (path / "memory.swap.max").write_text("0")
                except OSError:
                    path.rmdir()
                    raise
                return cls(limit, path, 2)
        return cls(limit)

    @property
    def how(self) -> str:
        return f"cgroup {self.cgroup}" if self.cgroup else "RLIMIT_AS (no writable memory cgroup here)"

    def enter(self) -> None:  # pragma: no cover - runs in the child, before exec
        """Put the calling (child) process under the limit."""
        if self.cgroup is not None:
            (self.cgroup / "cgroup.procs").write_text(str(os.getpid()))
        else:
            resource.setrlimit(resource.RLIMIT_AS, (self.limit, self.limit))

    def out_of_memory(self, log_tail: str) -> bool:
        """True when the step was killed (or failed) for going over the limit."""
        if self.cgroup is None:
            return "MemoryError" in log_tail
        events = self.cgroup / ("memory.oom_control" if self.version == 1 else "memory.events")
        with contextlib.suppress(OSError):
            for line in events.read_text().splitlines():
                name, _, count = line.partition(" ")
                if name == "oom_kill" and count.strip() not in ("", "0"):
                    return True
        return False

    def remove(self) -> None:
        """Delete the step's cgroup (once its processes are gone)."""
        if self.cgroup is not None:
            with contextlib.suppress(OSError):
                self.cgroup.rmdir()


def preexec(steps: list[Callable[[], None]]) -> Callable[[], None] | None:
    """One ``preexec_fn`` running ``steps`` in order, or None when there are none."""
    if not steps:
        return None

    def run() -> None:  # pragma: no cover - runs in the child
        for step in steps:
            step()

    return run
