"""Consistent flags: --dryrun and --dry-run, --debug anywhere, "did you mean" for a mistyped command or file."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import nemoflow

PIPELINE = (
    "import nemoflow\n\n"
    "def make(n: int) -> int:\n    return n\n\n"
    "exp = nemoflow.Experiment('f')\n"
    "exp.add(nemoflow.Partial(make, n=1), name='make')\n"
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "train.py").write_text(PIPELINE)
    return tmp_path


@pytest.mark.parametrize("spelling", ["--dryrun", "--dry-run", "-n"])
def test_build_takes_both_dry_run_spellings(project: Path, spelling: str) -> None:
    done = nemoflow("build", "pipelines/train.py", spelling, cwd=project)
    assert done.returncode == 0, done.stderr
    assert "make" in done.stdout
    assert not list((project / "targets").glob("make/*/nemoflow.json")), "a dry run built something"


def test_gc_takes_dryrun(project: Path) -> None:
    nemoflow("build", "pipelines/train.py", "--direct", cwd=project, check=True)
    (project / "pipelines" / "train.py").write_text(PIPELINE.replace("n=1", "n=2"))  # the target is now stale
    done = nemoflow("gc", "pipelines/train.py", "--dryrun", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "make" in done.stdout
    assert list((project / "targets").glob("make/*/nemoflow.json")), "gc --dryrun removed the target"


@pytest.mark.parametrize("where", ["first", "after the command", "last"])
def test_debug_anywhere_shows_the_traceback(project: Path, where: str) -> None:
    words = {
        "first": ["--debug", "build", "missing.py"],
        "after the command": ["build", "--debug", "missing.py"],
        "last": ["build", "missing.py", "--debug"],
    }[where]
    done = nemoflow(*words, cwd=project)
    assert done.returncode != 0
    assert "unrecognized arguments" not in done.stderr
    assert "Traceback" in done.stderr
    assert "Traceback" not in nemoflow("build", "missing.py", cwd=project).stderr


def test_a_mistyped_command_gets_a_did_you_mean(project: Path) -> None:
    done = nemoflow("biuld", "pipelines/train.py", cwd=project)
    assert done.returncode == 2
    assert "did you mean 'build'?" in done.stderr


def test_a_mistyped_pipeline_file_gets_a_did_you_mean(project: Path) -> None:
    done = nemoflow("build", "pipelines/trian.py", cwd=project)
    assert done.returncode != 0
    assert "does not exist" in done.stderr
    assert "did you mean pipelines/train.py?" in done.stderr


def test_a_folder_given_as_the_pipeline_file_is_named_as_a_folder(project: Path) -> None:
    done = nemoflow("build", "pipelines", cwd=project)
    assert done.returncode != 0
    assert "'pipelines' is a folder, not a pipeline file" in done.stderr
    assert "does not exist" not in done.stderr
    assert "did you mean pipelines/train.py?" in done.stderr
