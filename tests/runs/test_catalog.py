"""Recorded runs: reload in a fresh process, list, status, results, logs (also followed), metrics, cancel, reset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import nemoflow
from nemoflow.errors import UserError
from nemoflow.pipeline.loading import load_pipeline
from nemoflow.record.ledger import Ledger
from nemoflow.store.targets import pid_alive

import steps_for_tests as steps

PIPELINE = textwrap.dedent("""
    from pathlib import Path
    import nemoflow

    def make(n: int = 3) -> dict:
        (nemoflow.output_dir() / "numbers.txt").write_text(" ".join(str(i) for i in range(n)))
        print("made", n, "numbers")
        nemoflow.log_metrics(step=0, loss=1.0)
        nemoflow.log_metrics(step=1, loss=0.5)
        return {"n": n}

    def consume(numbers: str, summary: dict, scale: float = 1.0) -> float:
        print("consumed", numbers)
        return scale * sum(int(x) for x in Path(numbers).read_text().split()) / summary["n"]

    def pipeline():
        exp = nemoflow.Experiment("life", description="lifecycle", tags=["t"])
        made = exp.add(nemoflow.Partial(make, n=5), name="make")
        exp.add(nemoflow.Partial(consume, numbers=made.output("numbers.txt"), summary=made.result, scale=2.0),
                name="consume")
        exp.add(nemoflow.Script(inline='echo "counted $(wc -w < "$1")"', args=[made.output("numbers.txt")]),
                name="count", dependencies=[made])
        return exp
""")

# What a run looks like from outside: the same code runs here and in a fresh process.
SUMMARY = textwrap.dedent("""
    import json
    from nemoflow.configs.serialize import to_data

    def summary(exp):
        names = list(exp.steps)
        return {
            "id": exp.id,
            "metadata": exp.metadata(),
            "status": [row.as_dict() for row in exp.status()],
            "configurations": {n: to_data(c) for n, c in exp.configurations().items()},
            "results": exp.results(),
            "logs": {n: exp.logs(n) for n in names},
            "metrics": {n: exp.metrics(n) for n in names},
        }
""")


def _summary(exp: nemoflow.Experiment) -> dict[str, Any]:
    scope: dict[str, Any] = {}
    exec(SUMMARY, scope)
    return json.loads(json.dumps(scope["summary"](exp)))


def _python(code: str, cwd: Path) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_a_run_reloaded_in_a_fresh_process_equals_the_live_one(tmp_path: Path) -> None:
    (tmp_path / "life.py").write_text(PIPELINE)
    exp = load_pipeline(tmp_path / "life.py")
    exp.run(store=tmp_path / "targets", workdir=tmp_path)
    live = _summary(exp)
    elsewhere = tmp_path / "elsewhere"  # not the pipeline's folder: the ledger says where to import from
    elsewhere.mkdir()
    code = SUMMARY + textwrap.dedent(f"""
        import nemoflow
        from nemoflow.pipeline.plan import make_plan
        exp = nemoflow.Experiment.from_id({exp.id!r}, store={str(tmp_path / "targets")!r})
        plan = make_plan(exp, exp.store, workdir={str(tmp_path)!r})
        print(json.dumps({{"summary": summary(exp), "keys": {{s.name: [s.key, s.reason.value] for s in plan}}}}))
    """)
    fresh = json.loads(_python(code, elsewhere).splitlines()[-1])
    assert fresh["summary"] == live
    assert live["results"] == {"make": {"n": 5}, "consume": 4.0, "count": None}
    assert "consumed" in live["logs"]["consume"] and "counted 5" in live["logs"]["count"]
    assert [row["loss"] for row in live["metrics"]["make"]] == [1.0, 0.5]
    assert [row["state"] for row in live["status"]] == ["done", "done", "done"]
    assert live["metadata"]["tags"] == ["t"] and live["metadata"]["pipeline_file"] == str(tmp_path / "life.py")
    recorded = {row["name"]: row["key"] for row in live["status"]}
    assert fresh["keys"] == {name: [key, "up to date"] for name, key in recorded.items()}, "same configs, same keys"


def test_from_title_and_catalog_find_runs_by_name(tmp_path: Path) -> None:
    store = tmp_path / "t"
    exp = nemoflow.Experiment("named", description="first", tags=["x"])
    exp.add(nemoflow.Partial(steps.add, a=1), name="one")
    first = exp.run(store=store).experiment_id
    second = exp.run(store=store).experiment_id
    other = nemoflow.Experiment("other")
    other.add(nemoflow.Partial(steps.add, a=2), name="two")
    other.run(store=store)
    assert nemoflow.Experiment.from_title("named", store=store).id == second
    assert nemoflow.Experiment.catalog("named", store=store) == [first, second], "NeMo Run's: ids, oldest first"
    assert [row["id"] for row in nemoflow.Experiment.runs("named", store=store)] == [second, first]
    assert {row["name"] for row in nemoflow.Experiment.runs(store=store)} == {"named", "other"}
    row = nemoflow.Experiment.runs("named", store=store)[0]
    assert (row["description"], row["tags"], row["steps"], row["status"]) == ("first", ["x"], 1, "succeeded")
    with pytest.raises(UserError, match="did you mean 'named'"):
        nemoflow.Experiment.from_title("nmaed", store=store)
    with pytest.raises(UserError, match="no experiment"):
        nemoflow.Experiment.from_id("named_nope", store=store)
    with pytest.raises(UserError, match="has not run yet"):
        nemoflow.Experiment("fresh").status()
    assert nemoflow.Experiment.catalog(store=tmp_path / "empty") == []
    assert nemoflow.Experiment.runs(store=tmp_path / "empty") == []


def test_every_run_is_recorded_and_100_launches_get_distinct_ids(tmp_path: Path) -> None:
    exp = nemoflow.Experiment("many")
    exp.add(nemoflow.Partial(steps.add, a=1), name="one")
    exp.run(store=tmp_path / "t")
    started = time.perf_counter()
    ids = [exp.run(store=tmp_path / "t").experiment_id for _ in range(100)]  # all up to date
    elapsed = time.perf_counter() - started
    assert len(set(ids)) == 100
    assert all(i.startswith("many_") for i in ids)
    assert elapsed < 30, f"100 launches took {elapsed:.1f} s"
    ledger = Ledger(tmp_path / "t" / "ledger.db")
    assert len(ledger.experiments("many")) == 101
    assert ledger.experiment_steps(ids[-1])[0]["reason"] == "up to date"


def test_a_failed_step_keeps_its_log_and_metrics_and_reset_runs_again(tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    flag.write_text("set")
    exp = nemoflow.Experiment("flaky")
    ok = exp.add(nemoflow.Partial(steps.add, a=1), name="ok")
    exp.add(nemoflow.Partial(steps.fail_when, flag=str(flag)), name="flaky", dependencies=[ok])
    with pytest.raises(nemoflow.BuildFailed) as caught:
        exp.run(store=tmp_path / "t")
    assert caught.value.result.experiment_id == exp.id
    assert {row.name: row.state for row in exp.status()} == {"ok": "done", "flaky": "failed"}
    assert "RuntimeError: flag" in exp.logs("flaky") and "checking" in exp.logs("flaky")
    assert [row["loss"] for row in exp.metrics("flaky")] == [2.0]
    assert exp.metadata()["status"] == "failed"
    flag.unlink()
    failed_id = exp.id
    again = exp.reset()
    assert again is exp and exp.id != failed_id, "NeMo Run's reset: the same experiment, a new id"
    assert nemoflow.Experiment.catalog("flaky", store=tmp_path / "t") == [failed_id], "nothing runs until run()"
    again.run()
    assert again.metadata()["status"] == "succeeded"
    assert {row.name: (row.state, row.reason) for row in again.status()} == {
        "ok": ("done", "up to date"),
        "flaky": ("done", "new step"),
    }
    assert again.results() == {"ok": 1, "flaky": "fine"}


DRIVER = textwrap.dedent("""
    import sys
    import nemoflow
    import steps_for_tests as steps

    exp = nemoflow.Experiment(sys.argv[1])
    if sys.argv[1] == "talker":
        exp.add(nemoflow.Partial(steps.talk, lines=5, pause=0.4), name="talk")
    else:
        exp.add(nemoflow.Partial(steps.sleep_forever, marker=sys.argv[3]), name="sleepy")
        exp.add(nemoflow.Partial(steps.add, a=1), name="later")
    exp.run(store=sys.argv[2], sequential=True)
""")


def _start_build(tmp_path: Path, name: str, *extra: str) -> subprocess.Popen[str]:
    (tmp_path / "driver.py").write_text(DRIVER)
    return subprocess.Popen(
        [sys.executable, str(tmp_path / "driver.py"), name, str(tmp_path / "t"), *extra],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(steps.__file__).parent)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(condition: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _running_experiment(tmp_path: Path, name: str) -> nemoflow.Experiment:
    def found() -> Any:
        try:
            return nemoflow.Experiment.from_title(name, store=tmp_path / "t")
        except UserError:
            return None

    return _wait_for(found, f"a run of {name}")


def test_logs_follow_yields_lines_while_the_step_runs(tmp_path: Path) -> None:
    build = _start_build(tmp_path, "talker")
    try:
        exp = _running_experiment(tmp_path, "talker")
        arrived = [(line, time.time()) for line in exp.logs("talk", follow=True)]
        assert build.wait(timeout=60) == 0, build.stdout.read() if build.stdout else ""
    finally:
        build.kill()
    run = exp.status()[0].last_run
    assert [line for line, _ in arrived] == [f"line {i}" for i in range(5)]
    assert arrived[0][1] < run["ended"] - 1.0, "the first line came while the step was still running"
    assert exp.logs("talk") == "".join(f"line {i}\n" for i in range(5))


def test_cancel_stops_a_running_step_from_another_process(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    build = _start_build(tmp_path, "sleeper", str(marker))
    try:
        _wait_for(marker.exists, "the step to start")
        step_pid = int(_wait_for(marker.read_text, "the step's pid"))
        exp = _running_experiment(tmp_path, "sleeper")
        _wait_for(lambda: exp.status()[0].last_run and exp.status()[0].last_run["job_id"], "the job id")
        started = time.time()
        assert exp.cancel() == ["sleepy"]
        assert time.time() - started < 10
        assert not pid_alive(step_pid), "the step's process is gone"
        assert build.wait(timeout=60) == 1, "the build fails: its step was cancelled"
    finally:
        build.kill()
    states = {row.name: row.state for row in exp.status()}
    assert states == {"sleepy": "cancelled", "later": "not run"}
    assert exp.status()[0].last_run["error"] == "cancelled"
    assert exp.metadata()["status"] == "cancelled"


def test_cancel_in_a_thread_of_the_building_process(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    exp = nemoflow.Experiment("threaded")
    exp.add(nemoflow.Partial(steps.sleep_forever, marker=str(marker)), name="sleepy")
    outcome: dict[str, Any] = {}

    def build() -> None:
        try:
            exp.run(store=tmp_path / "t")
        except nemoflow.BuildFailed as exc:
            outcome["result"] = exc.result

    worker = threading.Thread(target=build)
    worker.start()
    _wait_for(marker.exists, "the step to start")
    _wait_for(lambda: exp.status()[0].last_run["job_id"], "the job id")
    assert exp.cancel("sleepy") == ["sleepy"]
    worker.join(timeout=60)
    assert [(o.name, o.error) for o in outcome["result"].failed] == [("sleepy", "cancelled")]
    with pytest.raises(UserError, match="has no step 'sleepyy'"):
        exp.cancel("sleepyy")


def test_a_killed_build_reads_as_interrupted_and_cancel_closes_its_runs(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    build = _start_build(tmp_path, "sleeper", str(marker))
    try:
        _wait_for(marker.exists, "the step to start")
        exp = _running_experiment(tmp_path, "sleeper")
        build.kill()
        build.wait(timeout=60)
    finally:
        build.kill()
    assert exp.metadata()["status"] == "interrupted"
    assert exp.status()[0].state == "interrupted"
    assert exp.cancel() == []  # nothing left to signal: the step died with its build
    assert [row.state for row in exp.status()] == ["cancelled", "not run"]
