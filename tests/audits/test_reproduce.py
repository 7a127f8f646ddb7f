"""nemoflow reproduce: a rebuild from the recorded configs and kept code, compared byte for byte (real builds, real CLI)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from audit_project import make_project

from helpers import last_json, nemoflow, published_target


@pytest.fixture
def built(tmp_path: Path) -> Path:
    make_project(tmp_path)
    nemoflow("build", "audited.py", cwd=tmp_path, check=True)
    return tmp_path


def test_a_deterministic_target_reproduces_identical_after_the_working_tree_moved_on(built: Path) -> None:
    doubled = published_target(built, "double") / "doubled.txt"
    # the helper and the pipeline change after the build (uncommitted edits, no git at all): the recorded code counts
    (built / "mylib" / "helpers.py").write_text(
        "def scale(values, factor):\n    return [v * factor + 1 for v in values]\n"
    )
    pipeline = built / "audited.py"
    pipeline.write_text(pipeline.read_text().replace('"\\n".join', '",".join'))
    proc = nemoflow("reproduce", str(doubled), "--json", cwd=built)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = last_json(proc.stdout)
    assert report["ok"] is True
    by_step = {t["step"]: t for t in report["targets"]}
    assert set(by_step) == {"double", "load"}  # the target and what it needs, not the unrelated step
    assert report["targets"][0]["step"] == "double"
    for target in by_step.values():
        assert target["outcome"] == "identical" and target["rebuilt_key"] == target["key"]
    files = {f["path"]: f for f in by_step["double"]["files"]}
    assert set(files) == {"doubled.txt", "result.json"}
    assert files["doubled.txt"]["recorded_sha256"] == files["doubled.txt"]["rebuilt_sha256"]
    assert files["doubled.txt"]["rebuilt_size"] == doubled.stat().st_size
    # metrics.jsonl (log_metrics) is an output and compares identical: the clock is in metrics.times.jsonl
    assert [f["outcome"] for f in by_step["load"]["files"] if f["path"] == "metrics.jsonl"] == ["identical"]
    assert "metrics.times.jsonl" not in {f["path"] for f in by_step["load"]["files"]}
    # the working tree's new code, built for real, gives other outputs: the rebuild above did not use it
    nemoflow("build", "audited.py", cwd=built, check=True)
    rebuilt_now = sorted(p.read_text() for p in (built / "targets" / "double").glob("*/doubled.txt"))
    assert rebuilt_now == ["2.0\n4.0\n6.0\n", "3.0,5.0,7.0\n"]


def test_a_step_whose_output_depends_on_the_clock_differs_and_is_shown_nondeterministic(built: Path) -> None:
    stamped = published_target(built, "stamp") / "stamped.json"
    proc = nemoflow("reproduce", str(stamped), "--json", cwd=built)
    assert proc.returncode == 1
    (target,) = last_json(proc.stdout)["targets"]
    assert (target["step"], target["outcome"]) == ("stamp", "differs")
    (entry,) = target["files"]
    assert entry["path"] == "stamped.json" and entry["outcome"] == "differs"
    assert entry["recorded_sha256"] == json.loads((stamped.parent / "nemoflow.json").read_text())["files"][0]["sha256"]
    assert entry["rebuilt_sha256"] != entry["recorded_sha256"]
    changed = [line for line in entry["diff"].splitlines() if line[:1] in "-+" and line[:3] not in ("---", "+++")]
    assert [line[0] for line in changed] == ["-", "+"] and all('"at": ' in line for line in changed)
    text = nemoflow("reproduce", str(stamped), cwd=built)
    assert text.returncode == 1 and "differs stamp" in text.stdout and "NOT reproduced" in text.stdout

    status = last_json(nemoflow("status", "audited.py", "--json", cwd=built, check=True).stdout)
    assert {r["name"]: r["nondeterministic"] for r in status} == {"load": False, "double": False, "stamp": True}
    assert "done (nondeterministic)" in nemoflow("status", "audited.py", cwd=built, check=True).stdout
    chain = last_json(nemoflow("audit", str(stamped), "--json", cwd=built).stdout)["chain"]
    assert [(link["step"], link["nondeterministic"]) for link in chain] == [("stamp", True)]
    assert "nondeterministic" in nemoflow("audit", str(stamped), cwd=built).stdout
    # the ledger keeps every verdict, in its own table
    db = sqlite3.connect(built / "targets" / "ledger.db")
    outcomes = [row[0] for row in db.execute("select outcome from reproductions where step = 'stamp'")]
    db.close()
    assert outcomes == ["differs", "differs"]


def test_reproducing_an_experiment_run_compares_every_target_and_exits_1_on_any_difference(built: Path) -> None:
    proc = nemoflow("reproduce", "audited", "--json", cwd=built)
    assert proc.returncode == 1
    report = last_json(proc.stdout)
    assert {t["step"]: t["outcome"] for t in report["targets"]} == {
        "load": "identical",
        "double": "identical",
        "stamp": "differs",
    }
    status = last_json(nemoflow("status", "audited.py", "--json", cwd=built, check=True).stdout)
    assert [r["name"] for r in status if r["nondeterministic"]] == ["stamp"]


def test_a_changed_input_file_is_reported_not_hidden(built: Path) -> None:
    values = published_target(built, "load") / "values.json"
    (built / "inputs" / "a.txt").write_text("1\n2\n4\n")
    proc = nemoflow("reproduce", str(values), "--json", cwd=built)
    assert proc.returncode == 1
    (target,) = last_json(proc.stdout)["targets"]
    assert target["rebuilt_key"] != target["key"]  # the key hashes the input: another input, another key
    assert "another key" in nemoflow("reproduce", str(values), cwd=built).stdout


def test_a_subject_that_names_nothing_is_a_user_error(built: Path) -> None:
    proc = nemoflow("reproduce", "no-such-thing", cwd=built)
    assert proc.returncode == 2 and "no-such-thing" in proc.stderr
