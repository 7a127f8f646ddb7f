"""Script entrypoints (``@nemoflow.cli.entrypoint``, ``nemoflow.cli.main``) and ``nemoflow build FILE OVERRIDES``, run for real."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import built_quickstart, last_json, names, nemoflow, snapshot
from script_helpers import copy_script, result_of, run_script


def _runs(folder: Path) -> int:
    with sqlite3.connect(folder / "targets" / "ledger.db") as db:
        return db.execute("select count(*) from runs").fetchone()[0]


def _keys(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / "targets" / "train").iterdir() if not p.name.startswith("."))


def _dryrun_key(folder: Path, *args: str) -> str:
    proc = run_script(*args, "--dryrun", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    match = re.search(r"│ train\s+│ ([0-9a-f]{12})", proc.stdout)
    assert match, proc.stdout
    return match.group(1)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    copy_script(tmp_path)
    return tmp_path


def test_runs_once_then_is_cached(folder: Path) -> None:
    args = ("model.hidden_size=1024", "training.lr=2e-4", "data_path=/d", "-y")
    first = run_script(*args, cwd=folder, env={"NF_TEST_GREETING": "hello"})
    value = result_of(first)
    assert value["model"] == {"hidden_size": 1024, "activation": "tanh", "dropout": 0.1}
    assert (value["training"]["lr"], value["data_path"]) == (2e-4, "/d")
    assert value["greeting"] == "hello" and value["cwd"] == str(folder)  # the caller's environment and folder
    assert "built" in first.stdout
    (key,) = _keys(folder)
    assert (folder / "targets" / "train" / key / "weights.txt").read_text() == "1024\n"

    second = run_script(*args, cwd=folder, env={"NF_TEST_GREETING": "hello"})
    assert result_of(second) == value
    assert "up to date" in second.stdout
    assert _runs(folder) == 1 and _keys(folder) == [key]

    third = run_script("model.hidden_size=512", "training.lr=2e-4", "data_path=/d", "-y", cwd=folder)
    assert result_of(third)["model"]["hidden_size"] == 512
    assert _runs(folder) == 2 and len(_keys(folder)) == 2


def test_arithmetic_factories_and_defaults(folder: Path) -> None:
    value = result_of(
        run_script(
            "model=small_model(hidden_size=8)",
            "model.hidden_size*=2",
            "training.batch_size+=16",
            "training.steps-=1",
            "training.lr/=2",
            "optim=adam(momentum=0.5)",
            "tags=['x']",
            "-y",
            cwd=folder,
        )
    )
    assert value["model"] == {"hidden_size": 16, "activation": "relu", "dropout": 0.1}
    assert value["training"] == {"lr": 5e-4, "batch_size": 48, "steps": 9}
    assert value["optim"] == {"name": "adam", "momentum": 0.5} and value["tags"] == ["x"]
    quick = result_of(run_script("--factory", "quick", "training.steps=2", "-y", cwd=folder))
    assert (quick["data_path"], quick["model"]["hidden_size"], quick["training"]["steps"]) == ("/quick", 2, 2)


def test_file_then_overrides(folder: Path) -> None:
    (folder / "base.yaml").write_text(
        "_target_: train:train\n_partial_: true\nmodel:\n  _target_: train:ModelConfig\n  hidden_size: 64\n"
        "training:\n  _target_: train:Training\n  lr: 0.5\n"
    )
    (folder / "values.toml").write_text("data_path = '/toml'\n[training]\nsteps = 3\n")
    (folder / "values.json").write_text('{"run_id": 4}')
    value = result_of(
        run_script(
            "@base.yaml", "@values.toml", "@values.json", "training.lr*=2", "model.dropout=0.3", "-y", cwd=folder
        )
    )
    assert value["model"] == {"hidden_size": 64, "activation": "tanh", "dropout": 0.3}
    assert value["training"] == {"lr": 1.0, "batch_size": 32, "steps": 3}
    assert (value["data_path"], value["run_id"]) == ("/toml", 4)


def test_dryrun_and_to_yaml_change_nothing_but_the_yaml_and_it_reproduces_the_key(folder: Path) -> None:
    args = ("model=small_model(hidden_size=3)", "training.batch_size+=16", "tags=['a']")
    result_of(run_script("model.hidden_size=9", "-y", cwd=folder))  # a store and ledger already there
    before = snapshot(folder)

    dry = run_script(*args, "--dryrun", cwd=folder)
    assert dry.returncode == 0, dry.stderr
    assert "hidden_size: 3" in dry.stdout and "batch_size: 48" in dry.stdout
    assert "training.lr = 0.001" in dry.stdout  # the defaults left in place are shown too
    assert "1 of 1 steps would run" in dry.stdout and "new config" in dry.stdout
    assert snapshot(folder) == before

    exported = run_script(*args, "--to-yaml", "run.yaml", cwd=folder)
    assert exported.returncode == 0, exported.stderr
    after = snapshot(folder)
    assert set(after) - set(before) == {"run.yaml"} and {k: after[k] for k in before} == before

    original = _dryrun_key(folder, *args)
    assert _dryrun_key(folder, "@run.yaml") == original
    assert _dryrun_key(folder, "@run.yaml", "training.batch_size+=1") != original
    result_of(run_script(*args, "-y", cwd=folder))
    again = run_script("@run.yaml", "-y", cwd=folder)
    assert "up to date" in again.stdout and _runs(folder) == 2


def test_to_toml_and_to_json_round_trip(folder: Path) -> None:
    args = ("model.activation=relu", "shape=(4, 5)", "table={'k': 2}")
    proc = run_script(*args, "--to-toml", "c.toml", "--to-json=c.json", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert not (folder / "targets").exists()
    key = _dryrun_key(folder, *args)
    assert _dryrun_key(folder, "@c.toml") == key == _dryrun_key(folder, "@c.json")


def test_without_yes_and_without_a_terminal_nothing_runs(folder: Path) -> None:
    proc = run_script("model.hidden_size=3", cwd=folder)
    assert proc.returncode == 1
    assert "Run train with this config? [y/N]" in proc.stderr and "not run" in proc.stderr
    assert not (folder / "targets").exists()


def test_confirmation_on_a_terminal(folder: Path) -> None:
    import pty

    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "train.py", "model.hidden_size=5"],
            cwd=folder,
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "NEMOFLOW_STORE"},
        )
        os.write(master, b"y\n")
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(slave)
        os.close(master)
    assert proc.returncode == 0, err
    assert "Run train with this config? [y/N]" in out
    assert '"hidden_size": 5' in out.strip().splitlines()[-1]


def test_a_failing_step_exits_1_and_bad_input_exits_2(folder: Path) -> None:
    failed = run_script("fail=True", "-y", cwd=folder)
    assert failed.returncode == 1
    assert "asked to fail" in failed.stderr + failed.stdout
    missing = run_script("--factory", "nope", "-y", cwd=folder)
    assert missing.returncode == 2 and "no factory named 'nope'" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_help_lists_parameters_with_types_and_defaults(folder: Path) -> None:
    proc = run_script("--help", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert "Train a toy model" in proc.stdout
    for row in (
        r"model\.hidden_size\s+│ int\s+│ 16",
        r"training\.lr\s+│ float\s+│ 0\.001",
        r"data_path\s+│ str\s+│ '/data'",
    ):
        assert re.search(row, proc.stdout), row
    assert "--dryrun" in proc.stdout and "--to-yaml" in proc.stdout
    assert not (folder / "targets").exists()


def test_reserved_words_and_parameters_that_look_like_them(folder: Path) -> None:
    value = result_of(
        run_script("executor=local", "executor_name=slurm", "run_id=3", "run.direct=True", "-y", cwd=folder)
    )
    assert (value["executor_name"], value["run_id"]) == ("slurm", 3)
    with sqlite3.connect(folder / "targets" / "ledger.db") as db:
        assert db.execute("select executor from runs").fetchone()[0] == "direct"
    bad = run_script("executor.nodes=2", "-y", cwd=folder)
    assert bad.returncode == 2 and "nodes" in bad.stderr


def test_plugins_by_import_path(folder: Path) -> None:
    assert result_of(run_script("plugins=train.SetRunId(value=5)", "-y", cwd=folder))["run_id"] == 5
    assert result_of(run_script("plugins=['train.SetRunId']", "-y", cwd=folder))["run_id"] == 42
    bad = run_script("plugins=train.ModelConfig", "-y", cwd=folder)
    assert bad.returncode == 2 and "not a plugin" in bad.stderr


def test_the_cli_package_is_light_and_its_names_work() -> None:
    code = (
        "import sys, nemoflow.cli; "
        "heavy = sorted(m for m in ('luigi', 'rich', 'pydantic', 'sqlite_utils') if m in sys.modules); "
        "ok = callable(nemoflow.cli.entrypoint) and callable(nemoflow.cli.factory) and callable(nemoflow.cli.main); "
        "import nemoflow.cli.app as app; "
        "print(heavy, ok, callable(app.main))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] True True"


# ---- nemoflow build FILE OVERRIDES ----------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a copy of quickstart.py, built once."""
    return built_quickstart(tmp_path_factory)


def _plan(folder: Path, *args: str) -> dict[str, dict[str, str]]:
    dry = last_json(nemoflow("build", "quickstart.py", *args, "--dry-run", "--json", cwd=folder, check=True).stdout)
    return {s["name"]: s for s in dry["steps"]}


def test_build_override_rebuilds_exactly_that_steps_cone(built: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(built, tmp_path / "copy"))
    plan = _plan(folder, "train-small.lr=0.4")
    assert {n for n, s in plan.items() if s["runs"]} == {"train-small", "evaluate-small", "report"}
    assert plan["train-small"]["reason"] == "new config" and plan["evaluate-small"]["reason"] == "upstream changed"

    pipeline = folder / "quickstart.py"  # the same change made in the file gives the same keys
    edited = tmp_path / "edited"
    edited.mkdir()
    (edited / "quickstart.py").write_text(pipeline.read_text().replace('"lr": 0.5}', '"lr": 0.4}', 1))
    assert {n: s["key"] for n, s in _plan(edited).items()} == {n: s["key"] for n, s in plan.items()}

    result = last_json(
        nemoflow("build", "quickstart.py", "train-small.lr=0.4", "--json", cwd=folder, check=True).stdout
    )
    assert names(result["ran"]) == {"train-small", "evaluate-small", "report"}
    assert pipeline.read_text() == (built / "quickstart.py").read_text()  # the file itself is unchanged
    assert all(not s["runs"] for s in _plan(folder).values())  # both versions are in the store now
    assert all(not s["runs"] for s in _plan(folder, "train-small.lr=0.4").values())


def test_build_broadcast_and_several_overrides(built: Path) -> None:
    plan = _plan(built, "*.seed=1")
    changed = {n for n, s in plan.items() if s["reason"] == "new config"}
    assert changed == {"prepare", "train-small", "train-medium", "train-large"}
    assert all(s["reason"] == "upstream changed" for n, s in plan.items() if n not in changed)
    plan = _plan(built, "train-large.model.hidden_size*=2", "train-medium.epochs-=100")
    assert {n for n, s in plan.items() if s["reason"] == "new config"} == {"train-large", "train-medium"}


@pytest.mark.parametrize(
    ("token", "words"),
    [
        ("train-smal.lr=0.4", "no step named 'train-smal' (did you mean 'train-small'"),
        ("train-small.lrr=0.4", "did you mean 'train-small.lr'"),
        ("lr=0.4", "*.lr=0.4"),
        ("*.sed=1", "did you mean 'seed'"),
        ("train-small.lr=fast", "expected float"),
        ("train-small.lr==1", "unexpected '='"),
    ],
)
def test_build_override_errors_exit_2(built: Path, token: str, words: str) -> None:
    before = snapshot(built / "targets")
    proc = nemoflow("build", "quickstart.py", token, "--dry-run", cwd=built)
    assert proc.returncode == 2
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert snapshot(built / "targets") == before
