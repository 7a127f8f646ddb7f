"""Every command that plans a pipeline takes the build's overrides, before or after its options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import last_json, nemoflow

PIPELINE = """
import nemoflow


def make(n: int = 1) -> int:
    (nemoflow.output_dir() / "n.txt").write_text(str(n))
    return n


def pipeline():
    exp = nemoflow.Experiment("tiny")
    exp.add(nemoflow.Partial(make), name="a")
    return exp
"""


@pytest.fixture
def built(tmp_path: Path) -> Path:
    """A folder whose pipeline was built with the override ``a.n=5`` (given after an option)."""
    (tmp_path / "p.py").write_text(PIPELINE)
    nemoflow("build", "p.py", "--direct", "a.n=5", cwd=tmp_path, check=True)
    return tmp_path


def test_status_shows_a_build_made_with_overrides(built: Path):
    with_overrides = last_json(nemoflow("status", "p.py", "--json", "a.n=5", cwd=built, check=True).stdout)
    assert [row["state"] for row in with_overrides] == ["done"]
    without = last_json(nemoflow("status", "p.py", "--json", cwd=built, check=True).stdout)
    assert [row["state"] for row in without] == ["pending"]


def test_dry_run_accepts_overrides_after_its_options(built: Path):
    plan = last_json(nemoflow("build", "p.py", "--dry-run", "--json", "a.n=5", cwd=built, check=True).stdout)
    assert plan["steps"][0]["reason"] == "up to date", plan
    mixed = nemoflow("build", "p.py", "a.n=1", "--dry-run", "a.n+=4", "--json", cwd=built, check=True)
    assert last_json(mixed.stdout)["steps"][0]["reason"] == "up to date"


def test_gc_keeps_the_targets_of_each_pipeline_with_its_overrides(built: Path):
    kept = json.loads(nemoflow("gc", "p.py", "a.n=5", "--dry-run", "--json", cwd=built, check=True).stdout)
    assert kept["removed"] == [], kept
    dropped = json.loads(nemoflow("gc", "--dry-run", "--json", "p.py", cwd=built, check=True).stdout)
    assert [Path(p).parent.name for p in dropped["removed"]] == ["a"], dropped


def test_dag_applies_overrides_and_names_an_unknown_key(built: Path):
    assert "a" in nemoflow("dag", "p.py", "a.n=3", cwd=built, check=True).stdout
    bad = nemoflow("dag", "p.py", "--format", "text", "a.x=3", cwd=built)
    assert bad.returncode == 2 and "did you mean 'a.n'" in bad.stderr and "Traceback" not in bad.stderr


def test_options_left_over_are_still_refused(built: Path):
    proc = nemoflow("status", "p.py", "a.n=5", "--bogus", cwd=built)
    assert proc.returncode == 2 and "unrecognized arguments: --bogus" in proc.stderr
    early = nemoflow("gc", "a.n=5", "p.py", "--dry-run", cwd=built)
    assert early.returncode == 2 and "comes before any pipeline file" in early.stderr
