"""The store is found from the project root (as git and DVC find theirs), not wherever the command runs."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import nemoflow

PIPELINE = (
    "import nemoflow\n\n"
    "def make(n: int) -> int:\n    return n\n\n"
    "exp = nemoflow.Experiment('s')\n"
    "exp.add(nemoflow.Partial(make, n=1), name='make')\n"
)


def _project(root: Path) -> Path:
    (root / "pipelines").mkdir(parents=True)
    (root / "pipelines" / "x.py").write_text(PIPELINE)
    return root


def _built(store: Path) -> list[Path]:
    return sorted(store.glob("make/*/nemoflow.json"))


def test_a_build_from_another_folder_uses_the_projects_store(tmp_path: Path) -> None:
    project = _project(tmp_path / "proj")
    first = nemoflow("build", "pipelines/x.py", "--direct", cwd=project, check=True)
    assert f"store: {project / 'targets'}" in first.stderr
    (project / "notebooks").mkdir()
    again = nemoflow("build", "../pipelines/x.py", "--direct", cwd=project / "notebooks", check=True)
    assert f"store: {project / 'targets'}" in again.stderr
    assert not (project / "notebooks" / "targets").exists(), "a second store was started"
    assert len(_built(project / "targets")) == 1
    third = nemoflow("build", "../pipelines/x.py", "--json", cwd=project / "notebooks", check=True)
    assert json.loads(third.stdout)["ran"] == [], "the step was rebuilt from the other folder"


def test_the_git_root_is_the_project_root(tmp_path: Path) -> None:
    project = _project(tmp_path / "repo")
    (project / ".git").mkdir()
    (project / "src" / "deep").mkdir(parents=True)
    done = nemoflow("build", "../../pipelines/x.py", "--direct", cwd=project / "src" / "deep", check=True)
    assert f"store: {project / 'targets'}" in done.stderr
    assert len(_built(project / "targets")) == 1
    assert not (project / "src" / "deep" / "targets").exists()


def test_a_nemoflow_section_in_pyproject_marks_the_root(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()  # an outer repo: the nearer pyproject wins
    project = _project(tmp_path / "sub")
    (project / "pyproject.toml").write_text('[project]\nname = "p"\n\n[tool.nemoflow]\n')
    (project / "runs").mkdir()
    done = nemoflow("build", "../pipelines/x.py", "--direct", cwd=project / "runs", check=True)
    assert f"store: {project / 'targets'}" in done.stderr
    assert len(_built(project / "targets")) == 1
    assert not (tmp_path / "targets").exists()


def test_a_pyproject_without_the_section_is_not_a_root(tmp_path: Path) -> None:
    project = _project(tmp_path / "proj")
    (project / ".git").mkdir()
    (project / "lib").mkdir()
    (project / "lib" / "pyproject.toml").write_text('[project]\nname = "lib"\n# tool.nemoflow is not set here\n')
    done = nemoflow("build", "../pipelines/x.py", "--direct", cwd=project / "lib", check=True)
    assert f"store: {project / 'targets'}" in done.stderr


def test_the_nearest_targets_folder_wins_over_an_outer_repo(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "targets").mkdir()
    project = _project(tmp_path / "inner")
    (project / "targets").mkdir()
    done = nemoflow("build", "pipelines/x.py", "--direct", cwd=project, check=True)
    assert f"store: {project / 'targets'}" in done.stderr
    assert not _built(tmp_path / "targets")


def test_with_no_marker_up_the_tree_the_store_is_the_current_folders(tmp_path: Path) -> None:
    project = _project(tmp_path / "plain")
    done = nemoflow("build", "pipelines/x.py", "--direct", cwd=project, check=True)
    assert f"store: {project / 'targets'}" in done.stderr
    assert len(_built(project / "targets")) == 1


def test_store_and_nemoflow_store_still_win(tmp_path: Path) -> None:
    project = _project(tmp_path / "proj")
    (project / "targets").mkdir()
    flag = nemoflow("build", "pipelines/x.py", "--direct", "--store", str(tmp_path / "a"), cwd=project, check=True)
    assert f"store: {tmp_path / 'a'}" in flag.stderr
    env = nemoflow(
        "build", "pipelines/x.py", "--direct", cwd=project, env={"NEMOFLOW_STORE": str(tmp_path / "b")}, check=True
    )
    assert f"store: {tmp_path / 'b'}" in env.stderr
    assert len(_built(tmp_path / "a")) == 1 and len(_built(tmp_path / "b")) == 1
    assert not _built(project / "targets")
