"""A per-step time limit (an executor's ``timeout``, or the build's ``step_timeout``) stops the step,
records ``timeout`` and fails it; nothing is published."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

import nemoflow
from nemoflow.engine.build import run_plan
from nemoflow.pipeline.plan import make_plan
from nemoflow.store.targets import Store

import steps_for_tests as steps


def _build(tmp_path: Path, executor: object = None, slow: float = 30, **options: object) -> tuple[object, float]:
    exp = nemoflow.Experiment("limits")
    exp.add(nemoflow.Partial(steps.nap, i=1, seconds=slow), name="slow", executor=executor)
    exp.add(nemoflow.Partial(steps.nap, i=2, seconds=0.1), name="quick", executor=executor)
    started = time.monotonic()
    result = run_plan(make_plan(exp, Store(tmp_path / "t"), workdir=tmp_path), **options)
    return result, time.monotonic() - started


def _runs(tmp_path: Path) -> dict[str, tuple[str, str]]:
    db = sqlite3.connect(tmp_path / "t" / "ledger.db")
    return {step: (status, error or "") for step, status, error in db.execute("select step, status, error from runs")}


@pytest.mark.parametrize(
    ("executor", "options"),
    [
        # 5 s: the quick step (a new Python process) must fit in it on a loaded machine too
        (nemoflow.LocalExecutor(timeout=5), {}),
        (None, {"step_timeout": 5}),
        (None, {"step_timeout": 5, "direct": True}),
    ],
    ids=["executor timeout", "build default", "in-process"],
)
def test_a_step_over_its_limit_is_stopped_and_recorded_timeout(tmp_path: Path, executor: object, options: dict) -> None:
    result, seconds = _build(tmp_path, executor, **options)
    assert seconds < 15, "the slow step was stopped at its limit, not waited for"
    assert [o.name for o in result.failed] == ["slow"] and [o.name for o in result.ran] == ["quick"]
    status, error = _runs(tmp_path)["slow"]
    assert status == "timeout" and "timed out after 5 s" in error
    assert not list((tmp_path / "t" / "slow").glob("*/nemoflow.json")), "a timed-out step publishes nothing"


def test_the_executors_own_limit_wins_over_the_builds(tmp_path: Path) -> None:
    result, _ = _build(tmp_path, nemoflow.LocalExecutor(timeout=60), slow=2, step_timeout=1)
    assert not result.failed and {o.name for o in result.ran} == {"slow", "quick"}
    assert _runs(tmp_path)["slow"][0] == "succeeded"


def test_a_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        nemoflow.LocalExecutor(timeout=0)
