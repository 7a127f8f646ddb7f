"""Group commit for the ledger: writes queued by the build, committed by a thread in batches.

Steps that run in this process one after another take tens of microseconds each; a commit per
step would cost as much as the step. The writer commits whatever queued up since its last commit,
then waits up to ``interval`` for more, so a write reaches the file within about ``interval``
seconds and a fast build makes a handful of commits instead of thousands. The build's thread only
appends to a queue (the writer's sleeps release the GIL, so it does not slow the build down).

What a SIGKILL loses is at most the last ``interval`` of writes; targets published in that window
still carry their run in their manifest, and :mod:`nemoflow.engine.recovery` puts it back.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from nemoflow.errors import LedgerError

_STOP = "stop"


class WriteBehind:
    """One writer thread with its own connection to ``path``; ``put`` never touches SQLite."""

    def __init__(self, path: str, *, interval: float = 0.05) -> None:
        self.path, self.interval = path, interval
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="nemoflow-ledger-writer", daemon=True)
        self._thread.start()

    def put(self, sql: str, params: Sequence[Any] | Iterable[Sequence[Any]], *, many: bool = False) -> None:
        """Queue one statement (``many``: ``executemany`` over ``params``).

        Raises:
            LedgerError: an earlier batch could not be written.
        """
        self._raise_error()
        self._queue.put((sql, params, many))

    def flush(self) -> None:
        """Return once everything queued so far is committed.

        Raises:
            LedgerError: it could not be written.
        """
        done = threading.Event()
        self._queue.put(done)
        self._wake.set()
        while not done.wait(0.5):
            if not self._thread.is_alive():
                break
        self._raise_error()

    def close(self) -> None:
        """Commit what is queued and stop the thread.

        Raises:
            LedgerError: some of it could not be written.
        """
        self._queue.put(_STOP)
        self._wake.set()
        self._thread.join()
        self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise LedgerError(f"could not write to the ledger {self.path}: {self._error}") from self._error

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA synchronous = NORMAL")
            while self._commit_batch(conn):
                self._wake.wait(self.interval)
                self._wake.clear()
        finally:
            conn.close()

    def _commit_batch(self, conn: sqlite3.Connection) -> bool:
        """Commit everything queued (waiting for the first item); False once told to stop."""
        batch = [self._queue.get()]
        while True:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        flushed = [item for item in batch if isinstance(item, threading.Event)]
        statements = [item for item in batch if isinstance(item, tuple)]
        try:
            if statements and self._error is None:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for sql, params, many in statements:
                        (conn.executemany if many else conn.execute)(sql, params)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except Exception as exc:  # kept for the build's thread, which raises it at its next call
            self._error = exc
        finally:
            for done in flushed:
                done.set()
        return _STOP not in batch
