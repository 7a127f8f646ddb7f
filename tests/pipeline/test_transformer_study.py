"""pipelines/transformer_study.py, the NeMo Run example ported by changing its import line: run as a script
(``exp.run(tail_logs=True, max_concurrent=4)``, then ``Experiment.from_id``) and through ``nemoflow build``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import last_json, names, nemoflow

STUDY = Path(__file__).resolve().parents[2] / "pipelines" / "transformer_study.py"
TRAIN_STEPS = {f"train-L{layers}-H{width}" for layers in (1, 2, 3, 4) for width in (16, 32, 64)}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    shutil.copy(STUDY, tmp_path / STUDY.name)
    return tmp_path


def test_the_script_runs_the_study_and_reloads_it_by_id(folder: Path) -> None:
    env = {k: v for k, v in __import__("os").environ.items() if k != "NEMOFLOW_STORE"}
    done = subprocess.run(
        [sys.executable, STUDY.name], cwd=folder, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[train-L2-H32] train-L2-H32 step 100: loss" in done.stdout  # tail_logs: each step's output, prefixed
    scores = json.loads((folder / "study-checkpoints" / "evaluation.json").read_text())
    assert set(scores) == TRAIN_STEPS and all(0.5 < s <= 1 for s in scores.values())
    report = json.loads(done.stdout[done.stdout.rindex("\n{") :])  # the analysis log, printed from Experiment.from_id
    assert report["best"] == max(scores, key=scores.get)
    # the script and `nemoflow build` give the same keys: nothing to do
    again = last_json(nemoflow("build", STUDY.name, "--json", cwd=folder, check=True).stdout)
    assert again["ran"] == [] and len(again["skipped"]) == 14


def test_a_changed_model_config_reruns_its_train_step_and_what_follows(folder: Path) -> None:
    first = last_json(nemoflow("build", STUDY.name, "--json", cwd=folder, check=True).stdout)
    assert names(first["ran"]) == TRAIN_STEPS | {"evaluate", "analyze"}
    changed = nemoflow("build", STUDY.name, "train-L2-H32.training.lr=0.1", "--json", cwd=folder, check=True)
    assert names(last_json(changed.stdout)["ran"]) == {"train-L2-H32", "evaluate", "analyze"}
