"""Build progress, read from the ledger by a background thread (works across worker processes)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from nemoflow.record.ledger import REUSED, Ledger


@dataclass(frozen=True)
class Progress:
    """How far a build is: steps done, running and failed of ``total``, and seconds since it began."""

    total: int
    done: int
    running: int
    failed: int
    elapsed: float

    @property
    def left(self) -> int:
        return max(0, self.total - self.done - self.running - self.failed)


Reporter = Callable[[Progress], None]


@contextlib.contextmanager
def reporting(
    ledger_path: Path,
    experiment_id: str,
    total: int,
    report: Reporter | None,
    *,
    interval: float = 0.5,
    keys: list[str] | None = None,
) -> Iterator[None]:
    """While the block runs, call ``report`` every ``interval`` seconds (and once at the end).

    One query of the ledger per report, whatever the number of steps. With ``keys`` (a build
    whose steps other processes run, on luigi's central scheduler), the latest run of each key
    since the block began counts, whichever process ran it.
    """
    if report is None:
        yield
        return
    started = time.time()
    stop = threading.Event()

    def read(ledger: Ledger) -> Progress:
        if keys is None:
            return _read(ledger, experiment_id, total, started)
        return _read_keys(ledger, keys, started)

    def poll() -> None:
        ledger = Ledger(ledger_path)  # its own connection: SQLite connections stay in their thread
        try:
            while True:
                report(read(ledger))
                if stop.wait(interval):
                    report(read(ledger))
                    return
        finally:
            ledger.close()

    thread = threading.Thread(target=poll, name="nemoflow-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _read(ledger: Ledger, experiment_id: str, total: int, started: float) -> Progress:
    counts = {
        row["status"]: row["n"]
        for row in ledger.rows(
            "select status, count(distinct step) as n from runs where experiment_id = ? group by status",
            [experiment_id],
        )
    }
    failed = sum(n for status, n in counts.items() if status not in ("succeeded", "running"))
    return Progress(total, counts.get("succeeded", 0), counts.get("running", 0), failed, time.time() - started)


def latest_statuses(ledger: Ledger, keys: list[str], since: float) -> dict[str, dict[str, object]]:
    """The latest run (since ``since``) of each of ``keys`` that has one, by key."""
    found: dict[str, dict[str, object]] = {}
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        marks = ",".join("?" * len(chunk))
        for row in ledger.rows(
            f"select key, status, error, exit_code, started, ended from runs "
            f"where key in ({marks}) and started >= ? order by started",
            [*chunk, since],
        ):
            found[row["key"]] = row
    return found


def _read_keys(ledger: Ledger, keys: list[str], started: float) -> Progress:
    statuses = [row["status"] for row in latest_statuses(ledger, keys, started).values()]
    done = statuses.count("succeeded") + statuses.count(REUSED)
    running = statuses.count("running")
    return Progress(len(keys), done, running, len(statuses) - done - running, time.time() - started)
