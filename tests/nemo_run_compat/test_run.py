"""NeMo Run's ``run.run(task, executor)`` through ``import nemoflow as run`` (nemo_run/run/api.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

import nemoflow as run

import steps_for_tests as steps


@pytest.fixture(autouse=True)
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEMOFLOW_STORE", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "store"


def test_the_task_s_prints_appear_on_the_screen(capfd: pytest.CaptureFixture[str]) -> None:
    run.run(run.Partial(steps.talk, lines=2, pause=0), executor=run.LocalExecutor())
    out = capfd.readouterr().out
    assert [line for line in out.splitlines() if "line" in line] == ["[talk] line 0", "[talk] line 1"]


def test_a_direct_run_prints_too(capfd: pytest.CaptureFixture[str]) -> None:
    run.run(run.Partial(steps.fail_when, flag="no-such-flag"), direct=True)
    assert "[fail_when] checking no-such-flag\n" in capfd.readouterr().out


def test_served_from_the_store_it_shows_the_output_and_result_and_says_so(capfd: pytest.CaptureFixture[str]) -> None:
    task = run.Partial(steps.talk, lines=1, pause=0)
    first = run.run(task, run.LocalExecutor())
    assert "served from the store" not in capfd.readouterr().out
    again = run.run(task, run.LocalExecutor())
    out = capfd.readouterr().out
    assert [o.name for o in again.skipped] == ["talk"] and again.skipped[0].key == first.ran[0].key
    assert "[talk] up to date: served from the store" in out
    assert "[talk] line 0" in out and "[talk] result: 1" in out


def test_run_of_something_that_is_not_a_config_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="Partial, Config or Script"):
        run.run(steps.add, run.LocalExecutor())


def test_a_dry_run_prints_the_task_and_its_arguments_and_runs_nothing(
    store: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run.run(run.Partial(steps.add, a=5, b=10), dryrun=True)
    out = capfd.readouterr().out
    assert "Dry run for task steps_for_tests.add" in out and "a: 5" in out and "b: 10" in out
    assert run.Experiment.catalog("add") == []


class Scale(run.Plugin):
    def setup(self, task: run.Partial, executor: run.LocalExecutor) -> None:
        task.scale = 4.0


def test_one_plugin_need_not_be_in_a_list(store: Path) -> None:
    result = run.run(run.Partial(steps.scaled), run.LocalExecutor(), plugins=Scale(), tail_logs=False)
    outcome = result.ran[0]
    assert run.Store(store).load_result(outcome.name, outcome.key) == {"scale": 4.0, "env": None}
