"""Packagers as NeMo Run users set them: run.Packager (pass-through) and GitArchivePackager's include_pattern."""

from __future__ import annotations

import filecmp
import subprocess
import tarfile
from pathlib import Path

import pytest

import nemoflow as run

GIT = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with two committed files, as NeMo Run's test_git.py makes."""
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    (root / "file1.txt").write_text("Hello")
    (root / "file2.txt").write_text("World")
    subprocess.run([*GIT, "add", "."], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", "Initial commit"], cwd=root, check=True)
    return root


def _write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def _extract(packager: run.GitArchivePackager, root: Path, tmp_path: Path) -> Path:
    package = packager.package(root, tmp_path / "job")
    out = tmp_path / "extracted_output"
    out.mkdir()
    with tarfile.open(package.path) as tar:
        tar.extractall(out, filter="data")
    return out


def _same(left: Path, right: Path, ignore: list[str] | None = None) -> None:
    cmp = filecmp.dircmp(left, right, ignore=ignore)
    assert cmp.left_list == cmp.right_list
    assert not cmp.diff_files


def test_include_pattern_adds_untracked_files(repo: Path, tmp_path: Path) -> None:
    _write(repo, {"extra/extra_file1.txt": "Extra file 1", "extra/extra_file2.txt": "Extra file 2"})
    out = _extract(run.GitArchivePackager(ref="HEAD", include_pattern="extra"), repo, tmp_path)
    _same(repo / "extra", out / "extra")
    assert (out / "file1.txt").read_text() == "Hello"  # the committed files are still there


def test_include_pattern_with_a_subpath_lands_at_the_archive_root(repo: Path, tmp_path: Path) -> None:
    _write(repo, {"extra/extra_file1.txt": "Extra file 1", "extra2/extra2_file1.txt": "Extra 2"})
    subprocess.run([*GIT, "add", "extra2"], cwd=repo, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", "Extra2 commit"], cwd=repo, check=True)
    out = _extract(run.GitArchivePackager(ref="HEAD", include_pattern="extra", subpath="extra2"), repo, tmp_path)
    _same(repo / "extra", out / "extra")
    _same(repo / "extra2", out, ignore=["extra"])


def test_include_pattern_with_several_folders(repo: Path, tmp_path: Path) -> None:
    _write(repo, {"extra/a.txt": "a", "extra_1/b.txt": "b"})
    out = _extract(run.GitArchivePackager(include_pattern="extra extra_1"), repo, tmp_path)
    _same(repo / "extra", out / "extra")
    _same(repo / "extra_1", out / "extra_1")


def test_include_pattern_relative_path_names_files_relative_to_it(repo: Path, tmp_path: Path) -> None:
    built = tmp_path / "build"
    _write(built, {"extra/extra_file1.txt": "Extra file 1", "extra/extra_file2.txt": "Extra file 2"})
    packager = run.GitArchivePackager(include_pattern=str(built / "extra/*"), include_pattern_relative_path=str(built))
    out = _extract(packager, repo, tmp_path)
    _same(built / "extra", out / "extra")


def test_include_patterns_as_lists(repo: Path, tmp_path: Path) -> None:
    built = tmp_path / "build"
    _write(built, {"extra/extra_file1.txt": "1", "extra/extra_file2.txt": "2"})
    packager = run.GitArchivePackager(
        include_pattern=[str(built / "extra/extra_file1.txt"), str(built / "extra/extra_file2.txt")],
        include_pattern_relative_path=[str(built), str(built)],
    )
    out = _extract(packager, repo, tmp_path)
    _same(built / "extra", out / "extra")


def test_include_pattern_length_mismatch_is_a_value_error(repo: Path, tmp_path: Path) -> None:
    packager = run.GitArchivePackager()
    packager.include_pattern = ["extra"]
    packager.include_pattern_relative_path = ["/tmp", "/also/tmp"]
    with pytest.raises(ValueError, match="same length"):
        packager.package(repo, tmp_path / "job")


def test_include_pattern_matching_nothing_is_refused(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(run.UserError, match="matches nothing"):
        run.GitArchivePackager(include_pattern="no_such_dir").package(repo, tmp_path / "job")


def test_include_pattern_changes_the_archive_when_the_artefact_changes(repo: Path, tmp_path: Path) -> None:
    packager = run.GitArchivePackager(include_pattern="build/*.so")
    _write(repo, {"build/lib.so": "v1"})
    first = packager.digest(repo)
    _write(repo, {"build/lib.so": "v2"})
    assert packager.digest(repo) != first
    assert run.GitArchivePackager().digest(repo) == run.GitArchivePackager().digest(repo)


def test_uncommitted_changes_are_a_runtime_error(repo: Path, tmp_path: Path) -> None:
    (repo / "file1.txt").write_text("Hello World")
    with pytest.raises(RuntimeError, match="uncommitted changes"):
        run.GitArchivePackager(ref="HEAD", check_uncommitted_changes=True).package(repo, tmp_path / "job")


def test_untracked_files_are_an_assertion_error(repo: Path, tmp_path: Path) -> None:
    (repo / "untracked.txt").write_text("?")
    with pytest.raises(AssertionError, match="untracked files"):
        run.GitArchivePackager(check_untracked_files=True).package(repo, tmp_path / "job")


def test_packager_is_the_pass_through_packager() -> None:
    assert isinstance(run.GitArchivePackager(), run.Packager)
    assert isinstance(run.PatternPackager(include=["*.py"]), run.Packager)
    executor = run.SlurmExecutor(packager=run.Packager())
    assert executor.packager is None  # nothing is packaged: the code runs where it is
    assert run.DockerExecutor(container_image="img", packager=run.Packager()).packager is None
    assert isinstance(run.SlurmExecutor(packager=run.GitArchivePackager()).packager, run.GitArchivePackager)
