"""`nemoflow experiments | logs | cancel` and build progress, through the real command line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import copy_pipeline, last_json, nemoflow


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("experiments")
    copy_pipeline("quickstart.py", folder)
    proc = nemoflow("build", "quickstart.py", cwd=folder, check=True)
    experiment_id = re.search(r"experiment\s+(quickstart_[\w-]+)", proc.stdout)
    assert experiment_id, proc.stdout
    return folder, experiment_id.group(1)


def test_a_build_shows_progress_lines_when_not_on_a_terminal(built: tuple[Path, str]) -> None:
    folder, _ = built
    proc = nemoflow("build", "quickstart.py", "--force", "prepare", cwd=folder, check=True)
    assert re.search(r"\[\s*[\d.]+s\] 1/1 done, 0 running, 0 failed, 0 left", proc.stdout)


def test_experiments_list_and_show(built: tuple[Path, str]) -> None:
    folder, experiment_id = built
    runs = last_json(nemoflow("experiments", "list", "--json", cwd=folder, check=True).stdout)
    assert experiment_id in {r["id"] for r in runs}
    assert {r["name"] for r in runs} == {"quickstart"}
    shown = last_json(nemoflow("experiments", "show", experiment_id, "--json", cwd=folder, check=True).stdout)
    assert shown["metadata"]["id"] == experiment_id
    assert len(shown["steps"]) == 8 and {s["state"] for s in shown["steps"]} == {"done"}
    table = nemoflow("experiments", "show", experiment_id, cwd=folder, check=True).stdout
    assert "train-medium" in table and "two-moons MLP sweep" in table


def test_logs_of_a_step_by_run_id_or_by_name(built: tuple[Path, str]) -> None:
    folder, experiment_id = built
    assert "final training loss" in nemoflow("logs", experiment_id, "train-small", cwd=folder, check=True).stdout
    assert "| model | test accuracy |" in nemoflow("logs", "quickstart", "report", cwd=folder, check=True).stdout


def test_cancel_with_nothing_running_says_so(built: tuple[Path, str]) -> None:
    folder, _ = built
    proc = nemoflow("cancel", "quickstart", cwd=folder, check=True)
    assert "nothing was running" in proc.stdout


def test_an_unknown_experiment_suggests_the_closest(built: tuple[Path, str]) -> None:
    folder, _ = built
    proc = nemoflow("logs", "quickstrat", "report", cwd=folder)
    assert proc.returncode == 2
    assert "did you mean 'quickstart'" in proc.stderr
