"""Lineage both ways, and auditing a whole experiment run (real builds through the CLI, the real ledger)."""

from __future__ import annotations

from pathlib import Path

import pytest
from audit_project import make_project

from helpers import last_json, nemoflow, published_target


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lineage")
    make_project(folder)
    nemoflow("build", "audited.py", cwd=folder, check=True)
    return folder


def _targets(proc_stdout: str) -> set[tuple[str, str]]:
    return {(t["step"], t["key"]) for t in last_json(proc_stdout)["targets"]}


def test_downstream_of_an_input_file_lists_exactly_the_targets_built_from_it(built: Path) -> None:
    proc = nemoflow("audit", "--downstream", "inputs/a.txt", "--json", cwd=built, check=True)
    report = last_json(proc.stdout)
    load, double = published_target(built, "load").name, published_target(built, "double").name
    assert _targets(proc.stdout) == {("load", load), ("double", double)}  # not stamp: it read inputs/c.txt
    by_step = {t["step"]: t for t in report["targets"]}
    assert (by_step["load"]["depth"], by_step["double"]["depth"]) == (0, 1)
    assert (
        by_step["load"]["input_sha256"]
        == published_target(built, "load")
        .joinpath("nemoflow.json")
        .read_text()
        .split('"inputs": {"inputs/a.txt": "')[1][:64]
    )
    assert [e["name"] for e in report["experiments"]] == ["audited"]
    # the same file named by its absolute path
    assert _targets(nemoflow("audit", "--downstream", str(built / "inputs/a.txt"), "--json", cwd=built).stdout) == {
        ("load", load),
        ("double", double),
    }


def test_downstream_of_a_target_is_it_and_what_was_built_from_it(built: Path) -> None:
    values = published_target(built, "load") / "values.json"
    load, double = published_target(built, "load").name, published_target(built, "double").name
    assert _targets(nemoflow("audit", "--downstream", str(values), "--json", cwd=built, check=True).stdout) == {
        ("load", load),
        ("double", double),
    }
    assert _targets(nemoflow("audit", "--downstream", double[:12], "--json", cwd=built, check=True).stdout) == {
        ("double", double)
    }
    text = nemoflow("audit", "--downstream", "inputs/c.txt", cwd=built, check=True).stdout
    assert "stamp" in text and "double" not in text


def test_an_input_no_step_read_is_an_error(built: Path) -> None:
    (built / "inputs" / "unused.txt").write_text("0\n")
    proc = nemoflow("audit", "--downstream", "inputs/unused.txt", cwd=built)
    assert proc.returncode == 2 and "no recorded step read" in proc.stderr


def test_auditing_an_experiment_run_verifies_every_target_its_environment_and_code(built: Path) -> None:
    report = last_json(nemoflow("audit", "audited", "--json", cwd=built, check=True).stdout)
    assert report["ok"] is True
    assert {t["step"] for t in report["targets"]} == {"load", "double", "stamp"}
    assert all(t["ok"] for t in report["targets"])
    assert [e["python"] for e in report["environments"]] and report["environments"][0]["host"]
    assert {c["label"]: (c["kept"], c["in_tree"]) for c in report["code"]} == {
        "audited.py": (True, True),
        "mylib/__init__.py": (True, True),
        "mylib/helpers.py": (True, True),
    }


def test_an_experiment_audit_fails_on_a_tampered_target_and_sees_the_tree_move_on(tmp_path: Path) -> None:
    make_project(tmp_path)
    nemoflow("build", "audited.py", cwd=tmp_path, check=True)
    (published_target(tmp_path, "double") / "doubled.txt").write_text("9\n")
    (tmp_path / "mylib" / "helpers.py").write_text("def scale(values, factor):\n    return values\n")
    proc = nemoflow("audit", "audited", "--json", cwd=tmp_path)
    assert proc.returncode == 1
    report = last_json(proc.stdout)
    assert {t["step"]: t["ok"] for t in report["targets"]} == {"load": True, "double": False, "stamp": True}
    assert {c["label"]: c["in_tree"] for c in report["code"]}["mylib/helpers.py"] is False
    text = nemoflow("audit", "audited", cwd=tmp_path).stdout
    assert "TAMPERED doubled.txt" in text and "the working tree moved on" in text and "NOT intact" in text
