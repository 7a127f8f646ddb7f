"""The state of Slurm jobs, asked in one command per poll for every job a build follows on a cluster."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from nemoflow.executors import session
from nemoflow.executors.base import JobState
from nemoflow.executors.tunnels import Tunnel

# sacct/squeue state -> ours; anything else (REQUEUED, SUSPENDED, ...) is still in progress
_STATES = {
    "PENDING": JobState.PENDING,
    "CONFIGURING": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,
    "COMPLETED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "TIMEOUT": JobState.FAILED,
    "OUT_OF_MEMORY": JobState.FAILED,
    "NODE_FAIL": JobState.FAILED,
    "BOOT_FAIL": JobState.FAILED,
    "DEADLINE": JobState.FAILED,
    "PREEMPTED": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
}


@dataclass(frozen=True)
class SlurmState:
    """One job's state as the cluster reports it: Slurm's own word and exit code, and ours."""

    slurm: str
    state: JobState
    exit_code: int | None = None
    signal: int | None = None


def parse_state(word: str, exit_code: str = "") -> SlurmState:
    """A state from sacct's ``State`` and ``ExitCode`` columns (``CANCELLED by 0``, ``3:0``)."""
    slurm = word.split()[0].rstrip("+") if word else "UNKNOWN"
    code = sig = None
    if ":" in exit_code:
        left, _, right = exit_code.partition(":")
        code, sig = int(left), int(right)
    state = _STATES.get(slurm, JobState.RUNNING)
    if state is JobState.SUCCEEDED and code:
        state = JobState.FAILED
    return SlurmState(slurm, state, code, sig or None)


def query_command(job_ids: list[str]) -> str:
    """One shell command that reports every job in ``job_ids``: sacct for all, squeue as a fallback."""
    ids = ",".join(job_ids)
    return (
        f"sacct -X -n -P -o JobIDRaw,State,ExitCode -j {ids} 2>/dev/null; echo '#squeue'; "
        f"squeue -h -o '%i|%T' -j {ids} 2>/dev/null; true"
    )


def parse_report(text: str) -> dict[str, SlurmState]:
    """Job id -> state from :func:`query_command`'s output (sacct wins; array tasks are combined)."""
    sacct, _, squeue = text.partition("#squeue")  # sacct gives exit codes; squeue the live states
    tasks: dict[str, list[SlurmState]] = {}
    for line in sacct.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 3 and parts[0]:
            tasks.setdefault(parts[0].split("_")[0], []).append(parse_state(parts[1], parts[2]))
    found = {job_id: _combine(states) for job_id, states in tasks.items()}
    for line in squeue.splitlines():  # the controller knows live jobs first (accounting lags behind it)
        parts = line.strip().split("|")
        if len(parts) >= 2:
            state = parse_state(parts[1])
            job_id = parts[0].split("_")[0]
            if not state.state.finished or job_id not in found:
                found[job_id] = state
    return found


def _combine(states: list[SlurmState]) -> SlurmState:
    """An array job is done when all its tasks are, and failed when one failed."""
    if len(states) == 1:
        return states[0]
    unfinished = [s for s in states if not s.state.finished]
    if unfinished:
        return unfinished[0]
    failed = [s for s in states if s.state is not JobState.SUCCEEDED]
    return failed[0] if failed else states[0]


class Poller:
    """Follows jobs on one cluster; ``state`` answers from a report at most ``interval`` seconds old."""

    def __init__(self, tunnel: Tunnel, interval: float) -> None:
        self.tunnel, self.interval = tunnel, interval
        self.watched: set[str] = set()
        self.report: dict[str, SlurmState] = {}
        self.asked = 0.0
        self.calls = 0
        self._lock = threading.Lock()

    def state(self, job_id: str) -> SlurmState | None:
        with self._lock:
            self.watched.add(job_id)
            if job_id not in self.report or time.monotonic() - self.asked >= self.interval:
                self.refresh()
            return self.report.get(job_id)

    def refresh(self) -> None:
        ids = sorted(self.watched)
        self.report = parse_report(self.tunnel.run(query_command(ids), check=False).stdout)
        self.asked = time.monotonic()
        self.calls += 1
        self.watched -= {i for i, s in self.report.items() if s.state.finished}

    def states(self, job_ids: list[str]) -> dict[str, SlurmState]:
        """The state of each of ``job_ids`` that the cluster knows, asked now in one query."""
        with self._lock:
            self.watched.update(job_ids)
            self.refresh()
            return {job_id: self.report[job_id] for job_id in job_ids if job_id in self.report}

    def forget(self, job_id: str) -> None:
        with self._lock:
            self.watched.discard(job_id)


def job_state(tunnel: Tunnel, interval: float, job_id: str) -> SlurmState | None:
    """A job's state from the build's poller (through the build process when this is a forked worker)."""
    if (shared := session.client()) is not None:
        return shared.slurm_state(tunnel, interval, job_id)
    poller = poller_for(tunnel, interval)
    state = poller.state(job_id)
    if state is not None and state.state.finished:
        poller.forget(job_id)
    return state


_POLLERS: dict[str, Poller] = {}


def poller_for(tunnel: Tunnel, interval: float) -> Poller:
    """This process's poller for the tunnel's cluster (shared by all the jobs it follows)."""
    poller = _POLLERS.get(tunnel.key)
    if poller is None:
        poller = _POLLERS.setdefault(tunnel.key, Poller(tunnel, interval))  # threads of a build's session
    return poller
