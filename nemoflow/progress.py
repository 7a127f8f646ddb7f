"""Build progress, read from the ledger by a background thread (works across worker processes)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from nemoflow.ledger import Ledger


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
    ledger_path: Path, experiment_id: str, total: int, report: Reporter | None, *, interval: float = 0.5
) -> Iterator[None]:
    """While the block runs, call ``report`` every ``interval`` seconds (and once at the end).

    One query of the ledger per report, whatever the number of steps.
    """
    if report is None:
        yield
        return
    started = time.time()
    stop = threading.Event()

    def poll() -> None:
        ledger = Ledger(ledger_path)  # its own connection: SQLite connections stay in their thread
        try:
            while True:
                report(_read(ledger, experiment_id, total, started))
                if stop.wait(interval):
                    report(_read(ledger, experiment_id, total, started))
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
