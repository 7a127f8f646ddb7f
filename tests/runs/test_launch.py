"""``exp.run`` options (sequential, max_concurrent, plugins), ``nemoflow.run`` and functions bound to an executor."""

from __future__ import annotations

import itertools
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import nemoflow
from nemoflow.errors import PipelineError
from nemoflow.pipeline.plan import Plan
from nemoflow.runs.launch import default_jobs

import steps_for_tests as steps


def _spans(store: Path, experiment_id: str) -> dict[str, tuple[float, float]]:
    db = sqlite3.connect(store / "ledger.db")
    rows = db.execute("select step, started, ended from runs where experiment_id = ?", [experiment_id]).fetchall()
    return {step: (started, ended) for step, started, ended in rows}


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])  # an end sorts first
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most


def test_sequential_runs_steps_one_after_another_in_the_order_added(tmp_path: Path) -> None:
    exp = nemoflow.Experiment("seq")
    for name in ("c", "a", "b"):
        exp.add(nemoflow.Partial(steps.nap, i=ord(name), seconds=0.3), name=name)
    free = exp.run(store=tmp_path / "plan", dryrun=True)
    result = exp.run(store=tmp_path / "t", sequential=True, jobs=3)  # three workers, yet one at a time
    spans = _spans(tmp_path / "t", result.experiment_id)
    order = sorted(spans, key=lambda name: spans[name][0])
    assert order == ["c", "a", "b"]
    for before, after in itertools.pairwise(order):
        assert spans[after][0] >= spans[before][1], f"{after} started before {before} ended"
    assert {o.name: o.key for o in result.ran} == {s.name: s.key for s in free}, "order-only edges change no key"


def test_sequential_refuses_a_step_added_before_its_upstream(tmp_path: Path) -> None:
    exp = nemoflow.Experiment("seq")
    later = nemoflow.Partial(steps.add, a=1)
    first = exp.add(nemoflow.Partial(steps.add, a=2), name="first")
    second = exp.add(later, name="second")
    first.task.b = second.result
    with pytest.raises(PipelineError, match="sequential: step 'first' depends on 'second'"):
        exp.run(store=tmp_path / "t", sequential=True, dryrun=True)


def test_max_concurrent_caps_the_steps_running_at_once(tmp_path: Path) -> None:
    exp = nemoflow.Experiment("capped")
    for i in range(4):
        exp.add(nemoflow.Partial(steps.nap, i=i, seconds=1.0), name=f"nap-{i}")
    result = exp.run(store=tmp_path / "t", max_concurrent=2, jobs=4)  # four workers, capped at two steps
    spans = list(_spans(tmp_path / "t", result.experiment_id).values())
    assert len(spans) == 4
    assert _most_at_once(spans) == 2


def test_independent_steps_get_a_worker_each_up_to_the_cpus(tmp_path: Path) -> None:
    wide = nemoflow.Experiment("wide")
    for i in range(4):
        wide.add(nemoflow.Partial(steps.nap, i=i), name=f"nap-{i}")
    plan = wide.run(store=tmp_path / "t", dryrun=True)
    assert isinstance(plan, Plan)
    assert default_jobs(plan, None) == min(4, os.cpu_count() or 1)
    assert default_jobs(plan, 3) == 3
    chain = nemoflow.Experiment("chain")
    first = chain.add(nemoflow.Partial(steps.add, a=1), name="first")
    chain.add(nemoflow.Partial(steps.add, a=first.result), name="second")
    assert default_jobs(chain.run(store=tmp_path / "t", dryrun=True), None) == 1
    assert default_jobs(wide.run(store=tmp_path / "t", dryrun=True, sequential=True), None) == 1


class EnvAndScale(nemoflow.Plugin):
    def setup(self, task: Any, executor: Any) -> None:
        executor.env_vars = {**executor.env_vars, "NF_PLUGIN_VAR": "on"}
        task.scale = 3.0


def _scaled_run(store: Path, **options: Any) -> tuple[str, Any, nemoflow.Experiment]:
    exp = nemoflow.Experiment("plugged")
    task = nemoflow.Partial(steps.scaled)
    exp.add(task, name="scaled", plugins=options.pop("step_plugins", []))
    result = exp.run(store=store, **options)
    assert task.scale == 1.0, "a plugin changes a copy, not the user's config"
    outcome = (result.ran or result.skipped)[0]
    return outcome.key, exp.results()["scaled"], exp


def test_a_plugin_changes_executor_and_config_before_the_key(tmp_path: Path) -> None:
    plain_key, plain, _ = _scaled_run(tmp_path / "t")
    step_key, on_step, exp = _scaled_run(tmp_path / "t", step_plugins=[EnvAndScale()])
    run_key, on_run, _ = _scaled_run(tmp_path / "t", plugins=[EnvAndScale()])
    assert plain == {"scale": 1.0, "env": None}
    assert on_step == on_run == {"scale": 3.0, "env": "on"}
    assert step_key == run_key != plain_key
    reloaded = nemoflow.Experiment.from_id(exp.id, store=tmp_path / "t")  # records what the plugins made
    assert reloaded.steps["scaled"].task.scale == 3.0
    assert reloaded.steps["scaled"].executor.env_vars == {"NF_PLUGIN_VAR": "on"}
    unrun = nemoflow.Experiment("unrun")
    unrun.add(nemoflow.Partial(steps.scaled), name="scaled", plugins=[EnvAndScale()])
    assert unrun.configurations()["scaled"].scale == 3.0


def test_run_returns_the_result_or_raises_build_failed_carrying_it(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("NEMOFLOW_STORE", str(tmp_path / "t"))
    plan = nemoflow.run(nemoflow.Partial(steps.add, a=1, b=2), dryrun=True)
    assert isinstance(plan, Plan) and not (tmp_path / "t" / "ledger.db").exists()
    first = nemoflow.run(nemoflow.Partial(steps.add, a=1, b=2))
    again = nemoflow.run(nemoflow.Partial(steps.add, a=1, b=2))
    assert [o.name for o in first.ran] == ["add"] and [o.name for o in again.skipped] == ["add"]
    assert first.experiment_id != again.experiment_id
    assert nemoflow.Experiment.from_id(again.experiment_id).results() == {"add": 3}
    flag = tmp_path / "flag"
    flag.write_text("set")
    with pytest.raises(nemoflow.BuildFailed) as caught:
        nemoflow.run(nemoflow.Partial(steps.fail_when, flag=str(flag)), name="failing")
    result = caught.value.result
    assert [o.name for o in result.failed] == ["failing"] and "flag" in result.failed[0].error
    assert nemoflow.Experiment.from_id(result.experiment_id).status()[0].state == "failed"


def test_functions_bound_to_an_executor_run_through_the_engine(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("NEMOFLOW_STORE", str(tmp_path / "t"))
    first = steps.decorated(x=2)
    assert first["x"] == 2 and first["env"] == "yes" and first["pid"] != os.getpid()
    assert steps.decorated(2) == first, "an unchanged call is cached"
    runs = sqlite3.connect(tmp_path / "t" / "ledger.db").execute("select count(*) from runs").fetchone()[0]
    assert runs == 1
    assert steps.bare(3, b=4) == 12, "a bare @nemoflow.partial leaves the function as it was"
    assert steps.bare.with_executor(nemoflow.LocalExecutor())(3, b=4) == 12
    cfg = steps.decorated.partial(x=5)
    assert cfg.__fn_or_cls__ is steps.decorated.__nemoflow_target__
    exp = nemoflow.Experiment("inside")
    exp.add(nemoflow.Partial(steps.decorated, x=5), name="plain")  # a step runs the plain function
    exp.run()
    assert exp.results()["plain"]["env"] is None
