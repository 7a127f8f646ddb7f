"""Building experiments through the Python API: steps, references, executors, results, ledger."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import textwrap
from pathlib import Path

import pytest

import nemoflow
from nemoflow.configs.serialize import dumps, loads
from nemoflow.pipeline.loading import load_pipeline
from nemoflow.pipeline.plan import make_plan
from nemoflow.store.targets import Store

PIPELINE = textwrap.dedent("""
    import os
    from pathlib import Path
    import nemoflow

    def make(n: int = 3) -> dict:
        (nemoflow.output_dir() / "numbers.txt").write_text("\\n".join(str(i) for i in range(n)))
        nemoflow.log_metrics(step=0, loss=1.0)
        nemoflow.log_metrics(step=1, loss=0.5)
        return {"n": n, "total": sum(range(n))}

    def consume(numbers: str, summary: dict, scale: float = 1.0) -> float:
        values = [int(x) for x in Path(numbers).read_text().split()]
        print("consumed", len(values), "values")
        return scale * sum(values) / summary["n"]

    def environment(names: list[str]) -> dict:
        return {"env": {n: os.environ.get(n) for n in names}, "cwd": os.getcwd()}

    def pipeline():
        exp = nemoflow.Experiment("api", description="api test", tags=["t"])
        made = exp.add(nemoflow.Partial(make, n=5), name="make")
        exp.add(nemoflow.Partial(consume, numbers=made.output("numbers.txt"), summary=made.result, scale=2.0),
                name="consume")
        exp.add(nemoflow.Script(inline='wc -w < "$1" > "$NEMOFLOW_OUTPUT_DIR/count.txt"; echo "$GREETING"',
                                args=[made.output("numbers.txt")], env={"GREETING": "hello from bash"}),
                name="count")
        exp.add(nemoflow.Partial(environment, names=["NF_TEST_VAR", "GREETING"]), name="environment",
                executor=nemoflow.LocalExecutor(env_vars={"NF_TEST_VAR": "42"}, working_dir=WORKDIR))
        return exp
""")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "work").mkdir()
    (tmp_path / "api.py").write_text(f"WORKDIR = {str(tmp_path / 'work')!r}\n" + PIPELINE)
    return tmp_path


def _build(folder: Path, **options: object) -> nemoflow.BuildResult:
    exp = load_pipeline(folder / "api.py")
    return nemoflow.build_experiment(exp, store=folder / "targets", workdir=folder, **options)


def _target(folder: Path, step: str) -> Path:
    return next(p.parent for p in (folder / "targets" / step).glob("*/nemoflow.json"))


@pytest.mark.parametrize("direct", [False, True], ids=["subprocess", "direct"])
def test_results_outputs_scripts_and_executor_settings(folder: Path, direct: bool) -> None:
    result = _build(folder, direct=direct)
    assert {o.name for o in result.ran} == {"make", "consume", "count", "environment"}
    store = Store(folder / "targets")
    keys = {o.name: o.key for o in result.ran}
    assert store.load_result("consume", keys["consume"]) == 2.0 * 10 / 5
    assert (_target(folder, "count") / "count.txt").read_text().strip() == "5"
    assert "hello from bash" in (_target(folder, "count") / "nemoflow.log").read_text()
    env = json.loads((_target(folder, "environment") / "result.json").read_text())
    if not direct:  # executor settings apply to subprocess steps
        assert env["env"] == {"NF_TEST_VAR": "42", "GREETING": None}
        assert env["cwd"] == str(folder / "work")
    metrics = [json.loads(line) for line in (_target(folder, "make") / "metrics.jsonl").read_text().splitlines()]
    assert [m["loss"] for m in metrics] == [1.0, 0.5]
    assert "consumed 5 values" in (_target(folder, "consume") / "nemoflow.log").read_text()


def test_subprocess_and_direct_runs_give_the_same_keys_and_outputs(folder: Path, tmp_path: Path) -> None:
    first = {o.name: o.key for o in _build(folder).ran}
    manifest = json.loads((_target(folder, "make") / "nemoflow.json").read_text())
    second_store = tmp_path / "other-store"
    exp = load_pipeline(folder / "api.py")
    again = nemoflow.build_experiment(exp, store=second_store, workdir=folder, direct=True)
    assert {o.name: o.key for o in again.ran} == first
    other = json.loads(next((second_store / "make").glob("*/nemoflow.json")).read_text())

    def deterministic(files: list[dict[str, object]]) -> list[dict[str, object]]:
        return [f for f in files if f["path"] != "metrics.jsonl"]  # metrics rows carry timestamps

    assert deterministic(other["files"]) == deterministic(manifest["files"])


def test_manifest_lists_every_output_with_its_hash(folder: Path) -> None:
    _build(folder)
    target = _target(folder, "make")
    manifest = json.loads((target / "nemoflow.json").read_text())
    assert {f["path"] for f in manifest["files"]} == {"numbers.txt", "metrics.jsonl", "result.json"}
    import hashlib

    for entry in manifest["files"]:
        assert hashlib.sha256((target / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]
    assert manifest["upstream"] == {} and manifest["result"] == "result.json"


def test_ledger_records_experiment_environment_runs_and_artifacts(folder: Path) -> None:
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "x"],
        cwd=folder,
        check=True,
    )
    result = _build(folder)
    db = sqlite3.connect(folder / "targets" / "ledger.db")
    db.row_factory = sqlite3.Row
    exp = db.execute("select * from experiments where id = ?", [result.experiment_id]).fetchone()
    assert exp["name"] == "api" and json.loads(exp["tags"]) == ["t"]
    assert exp["pipeline_file"] == str(folder / "api.py")
    assert len(exp["git_commit"]) == 40 and exp["git_dirty"] == 0  # api.py is untracked, not a change
    runs = db.execute("select * from runs where experiment_id = ?", [result.experiment_id]).fetchall()
    assert {r["step"] for r in runs} == {"make", "consume", "count", "environment"}
    assert {r["status"] for r in runs} == {"succeeded"}
    env = db.execute("select * from environments where id = ?", [runs[0]["environment_id"]]).fetchone()
    assert "luigi" in json.loads(env["packages"])
    edges = db.execute("select upstream_name from edges e join steps s on s.key = e.key where s.name = 'consume'")
    assert [row[0] for row in edges] == ["make"]
    artifacts = db.execute("select path from artifacts a join steps s on s.key = a.key where s.name = 'count'")
    assert [row[0] for row in artifacts] == ["count.txt"]
    assert db.execute("pragma journal_mode").fetchone()[0] == "wal"


def test_a_failed_step_raises_build_failed_with_the_result(tmp_path: Path) -> None:
    (tmp_path / "f.py").write_text(
        textwrap.dedent("""
        import nemoflow

        def fail() -> None:
            raise SystemExit(3)

        exp = nemoflow.Experiment("f")
        exp.add(nemoflow.Partial(fail), name="fail")
    """)
    )
    exp = load_pipeline(tmp_path / "f.py")
    with pytest.raises(nemoflow.BuildFailed) as caught:
        exp.run(store=tmp_path / "targets", workdir=tmp_path)
    failed = caught.value.result.failed
    assert [(o.name, o.exit_code) for o in failed] == [("fail", 3)]


def test_yaml_round_trip_of_a_step_config_gives_the_same_key(folder: Path) -> None:
    exp = load_pipeline(folder / "api.py")
    store = Store(folder / "targets")
    before = make_plan(exp, store, workdir=folder)
    handles = {name: exp.handle(name) for name in exp.steps}
    for step in exp.steps.values():
        text = dumps(step.task, "yaml")
        step.task = loads(text, "yaml", steps=handles)
    after = make_plan(exp, store, workdir=folder)
    assert {s.name: s.key for s in after} == {s.name: s.key for s in before}


def test_parallel_jobs_overlap_independent_steps(tmp_path: Path) -> None:
    (tmp_path / "par.py").write_text(
        textwrap.dedent("""
        import time
        import nemoflow

        def nap(i: int) -> float:
            time.sleep(1.0)
            return time.time()

        def pipeline():
            exp = nemoflow.Experiment("par")
            for i in range(2):
                exp.add(nemoflow.Partial(nap, i=i), name=f"nap-{i}")
            return exp
    """)
    )
    result = nemoflow.build_experiment(
        load_pipeline(tmp_path / "par.py"), store=tmp_path / "t", workdir=tmp_path, jobs=2
    )
    db = sqlite3.connect(tmp_path / "t" / "ledger.db")
    spans = db.execute("select started, ended from runs where experiment_id = ?", [result.experiment_id]).fetchall()
    assert len(spans) == 2
    (_, first_end), (second_start, _) = sorted(spans)
    assert second_start < first_end, "two independent steps with --jobs 2 must run at the same time"
