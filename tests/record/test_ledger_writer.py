"""Runs of steps built one after another are committed in batches by a writer thread, soon and surely."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from nemoflow.errors import LedgerError
from nemoflow.record.ledger import Ledger


def _run(i: int) -> dict[str, object]:
    return {"id": f"run-{i}", "experiment_id": "exp", "key": f"k{i}", "step": f"s{i}", "reason": "new config"}


def _committed(path: Path) -> dict[str, str]:
    """What another process reading the ledger sees."""
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("select id, status from runs"))
    finally:
        conn.close()


def test_queued_runs_reach_other_readers_within_moments(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    with ledger.steps_in_a_row():
        for i in range(50):
            ledger.start_run(_run(i))
            ledger.finish_run(f"run-{i}", status="succeeded", exit_code=0, key=f"k{i}", artifacts=[])
        ledger.start_run(_run(50))  # still running
        deadline = time.monotonic() + 10
        while len(_committed(tmp_path / "ledger.db")) < 51:
            assert time.monotonic() < deadline, "queued runs were not committed while the build went on"
            time.sleep(0.01)
        seen = _committed(tmp_path / "ledger.db")
        assert seen["run-50"] == "running"
        assert {seen[f"run-{i}"] for i in range(50)} == {"succeeded"}
    ledger.close()


def test_the_build_itself_reads_what_it_queued(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    with ledger.steps_in_a_row():
        ledger.start_run(_run(1))
        ledger.finish_run(
            "run-1", status="succeeded", exit_code=0, key="k1", artifacts=[{"path": "a.txt", "sha256": "ab", "size": 2}]
        )
        assert [r["status"] for r in ledger.runs_of("k1")] == ["succeeded"]
        assert ledger.artifacts_of("k1") == [{"key": "k1", "path": "a.txt", "sha256": "ab", "size": 2}]
    ledger.close()


def test_leaving_commits_everything(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    with ledger.steps_in_a_row():
        for i in range(200):
            ledger.start_run(_run(i))
    assert len(_committed(tmp_path / "ledger.db")) == 200
    ledger.close()


def test_a_write_that_fails_is_raised_to_the_build_naming_the_ledger(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    with pytest.raises(LedgerError, match=r"ledger\.db.*no column named colour"), ledger.steps_in_a_row():
        ledger.start_run({**_run(1), "colour": "red"})
        ledger.flush()
    ledger.close()
