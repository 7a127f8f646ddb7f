"""The core acceptance checks, through the real ``nemoflow`` command line on the quickstart pipeline."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from helpers import built_quickstart, copy_pipeline, last_json, names, nemoflow

QUICKSTART_STEPS = {
    "prepare",
    "train-small",
    "train-medium",
    "train-large",
    "evaluate-small",
    "evaluate-medium",
    "evaluate-large",
    "report",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a copy of quickstart.py, built once."""
    return built_quickstart(tmp_path_factory)


def _runs(folder: Path) -> int:
    with sqlite3.connect(folder / "targets" / "ledger.db") as db:
        return db.execute("select count(*) from runs").fetchone()[0]


def _fresh_copy(built: Path, dest: Path) -> Path:
    """A copy of the built folder (pipeline and store), so a test may change it."""
    import shutil

    shutil.copytree(built, dest, dirs_exist_ok=True)
    return dest


def test_first_build_runs_every_step_and_writes_the_report(built: Path) -> None:
    reports = list((built / "targets" / "report").glob("*/report.md"))
    assert len(reports) == 1
    assert "| small |" in reports[0].read_text()
    assert _runs(built) == len(QUICKSTART_STEPS)


def test_second_build_runs_nothing(built: Path, tmp_path: Path) -> None:
    folder = _fresh_copy(built, tmp_path)
    before = _runs(folder)
    proc = nemoflow("build", "quickstart.py", "--json", cwd=folder, check=True)
    result = last_json(proc.stdout)
    assert result["ran"] == [] and result["failed"] == []
    assert names(result["skipped"]) == QUICKSTART_STEPS
    assert _runs(folder) == before


def test_changing_one_learning_rate_rebuilds_exactly_its_cone(built: Path, tmp_path: Path) -> None:
    folder = _fresh_copy(built, tmp_path)
    pipeline = folder / "quickstart.py"
    pipeline.write_text(pipeline.read_text().replace('"hidden_size": 4, "lr": 0.5', '"hidden_size": 4, "lr": 0.4'))

    dry = last_json(nemoflow("build", "quickstart.py", "--dry-run", "--json", cwd=folder, check=True).stdout)
    reasons = {s["name"]: s["reason"] for s in dry["steps"]}
    assert set(dry["would_run"]) == {"train-small", "evaluate-small", "report"}
    assert reasons["train-small"] == "new config"
    assert reasons["evaluate-small"] == "upstream changed"
    assert reasons["prepare"] == "up to date"

    result = last_json(nemoflow("build", "quickstart.py", "--json", cwd=folder, check=True).stdout)
    assert names(result["ran"]) == {"train-small", "evaluate-small", "report"}
    assert names(result["skipped"]) == QUICKSTART_STEPS - {"train-small", "evaluate-small", "report"}


def test_editing_a_step_body_rebuilds_that_step_and_its_descendants(built: Path, tmp_path: Path) -> None:
    folder = _fresh_copy(built, tmp_path)
    pipeline = folder / "quickstart.py"
    source = pipeline.read_text()
    edited = source.replace(
        'metrics = {"accuracy": accuracy, "n_test": len(prob)}',
        'metrics = {"accuracy": round(accuracy, 6), "n_test": len(prob)}',
    )
    assert edited != source
    pipeline.write_text(edited)
    dry = last_json(nemoflow("build", "quickstart.py", "-n", "--json", cwd=folder, check=True).stdout)
    assert {s["name"]: s["reason"] for s in dry["steps"] if s["runs"]} == {
        "evaluate-small": "code changed",
        "evaluate-medium": "code changed",
        "evaluate-large": "code changed",
        "report": "upstream changed",
    }
    result = last_json(nemoflow("build", "quickstart.py", "--json", cwd=folder, check=True).stdout)
    assert names(result["ran"]) == {"evaluate-small", "evaluate-medium", "evaluate-large", "report"}


def test_a_comment_or_formatting_edit_rebuilds_nothing(built: Path, tmp_path: Path) -> None:
    folder = _fresh_copy(built, tmp_path)
    pipeline = folder / "quickstart.py"
    pipeline.write_text(
        pipeline.read_text().replace(
            '    accuracy = float(np.mean((prob > 0.5) == arrays["y_test"]))',
            '    # fraction of test points on the right side\n    accuracy = float(np.mean( (prob > 0.5) == arrays["y_test"] ))',
        )
    )
    result = last_json(nemoflow("build", "quickstart.py", "--json", cwd=folder, check=True).stdout)
    assert result["ran"] == []


def test_the_same_pipeline_in_two_folders_has_the_same_keys(built: Path, tmp_path: Path) -> None:
    other = tmp_path / "somewhere" / "else"
    other.mkdir(parents=True)
    copy_pipeline("quickstart.py", other)
    here = last_json(nemoflow("build", "quickstart.py", "-n", "--json", cwd=built, check=True).stdout)
    there = last_json(nemoflow("build", "quickstart.py", "-n", "--json", cwd=other, check=True).stdout)
    assert {s["name"]: s["key"] for s in here["steps"]} == {s["name"]: s["key"] for s in there["steps"]}
    assert all(s["reason"] == "new step" for s in there["steps"])


def test_force_and_until(built: Path, tmp_path: Path) -> None:
    folder = _fresh_copy(built, tmp_path)
    forced = last_json(
        nemoflow("build", "quickstart.py", "--force", "prepare", "--json", cwd=folder, check=True).stdout
    )
    assert names(forced["ran"]) == {"prepare"}
    assert forced["ran"][0]["reason"] == "forced"
    (folder / "quickstart.py").write_text(
        (folder / "quickstart.py").read_text().replace("n_samples=2000", "n_samples=1000")
    )
    until = last_json(
        nemoflow("build", "quickstart.py", "--until", "train-small", "--json", cwd=folder, check=True).stdout
    )
    assert names(until["ran"]) == {"prepare", "train-small"}
    assert "report" not in names(until["ran"]) | names(until["skipped"])


def test_status_shows_every_step_with_state_and_output(built: Path) -> None:
    proc = nemoflow("status", "quickstart.py", cwd=built, check=True)
    for step in QUICKSTART_STEPS:
        assert step in proc.stdout
    assert "8 of 8 steps up to date" in proc.stdout
    rows = last_json(nemoflow("status", "quickstart.py", "--json", cwd=built, check=True).stdout)
    assert {r["state"] for r in rows} == {"done"}
    assert all(Path(r["output"], "nemoflow.json").is_file() for r in rows)


def test_audit_lists_the_chain_and_catches_a_tampered_file(built: Path, tmp_path: Path) -> None:
    folder = _fresh_copy(built, tmp_path)
    metrics = next((folder / "targets" / "evaluate-medium").glob("*/metrics.json"))
    proc = nemoflow("audit", str(metrics.relative_to(folder)), cwd=folder)
    assert proc.returncode == 0, proc.stderr
    for step in ("evaluate-medium", "train-medium", "prepare"):
        assert step in proc.stdout
    assert "intact" in proc.stdout
    chain = last_json(nemoflow("audit", str(metrics), "--json", cwd=folder).stdout)
    assert [link["step"] for link in chain["chain"]] == ["evaluate-medium", "prepare", "train-medium"]
    assert all(link["run"]["status"] == "succeeded" for link in chain["chain"])

    model = next((folder / "targets" / "train-medium").glob("*/model.npz"))
    model.write_bytes(model.read_bytes() + b"tampered")
    proc = nemoflow("audit", str(metrics), cwd=folder)
    assert proc.returncode == 1
    assert "TAMPERED" in proc.stdout and "model.npz" in proc.stdout


def test_audit_by_key_prefix(built: Path) -> None:
    key = next((built / "targets" / "prepare").iterdir()).name
    proc = nemoflow("audit", key[:12], cwd=built, check=True)
    assert "prepare" in proc.stdout


def test_help_lists_the_commands(tmp_path: Path) -> None:
    proc = nemoflow("--help", cwd=tmp_path, check=True)
    for command in ("build", "status", "audit"):
        assert re.search(rf"\b{command}\b", proc.stdout)


def test_diff_of_two_config_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("_target_: targets_for_tests:Model\nhidden_size: 8\n")
    (tmp_path / "b.json").write_text('{"_target_": "targets_for_tests:Model", "hidden_size": 16, "dropout": 0.5}')
    env = {"PYTHONPATH": str(Path(__file__).parent.parent)}
    changes = last_json(nemoflow("diff", "a.yaml", "b.json", "--json", cwd=tmp_path, env=env, check=True).stdout)
    assert {(c["path"], c["kind"]) for c in changes} == {("hidden_size", "changed"), ("dropout", "added")}
    table = nemoflow("diff", "a.yaml", "b.json", cwd=tmp_path, env=env, check=True).stdout
    assert "hidden_size" in table and "16" in table
    same = nemoflow("diff", "a.yaml", "a.yaml", cwd=tmp_path, env=env, check=True).stdout
    assert "no differences" in same
