"""Packagers: archive contents, git safety checks, determinism and serialisation, on real git repos."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import tarfile
import time
from pathlib import Path

import pydantic
import pytest

from nemoflow.errors import UserError
from nemoflow.executors.packagers import (
    GitArchivePackager,
    HybridPackager,
    Package,
    PatternPackager,
)


@pytest.fixture(autouse=True)
def _isolated_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("GIT_DIR", raising=False)
    monkeypatch.delenv("GIT_WORK_TREE", raising=False)


def git(repo: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main", *args]
    return subprocess.run(cmd, cwd=repo, check=True, capture_output=True, text=True).stdout


def commit_all(repo: Path, message: str = "commit") -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def write(path: Path, text: str, *, executable: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755 if executable else 0o644)
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A committed repo: README.md, train.py, run.sh (executable), pkg/ with a symlink, an ignored log."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    write(root / "README.md", "hello\n")
    write(root / "train.py", "print('train')\n")
    write(root / "run.sh", "#!/bin/sh\necho run\n", executable=True)
    write(root / "pkg" / "model.py", "MODEL = 1\n")
    write(root / "pkg" / "data" / "vocab.txt", "a b c\n")
    (root / "pkg" / "latest.py").symlink_to("model.py")
    write(root / ".gitignore", "*.log\n")
    write(root / "debug.log", "ignored\n")
    commit_all(root)
    return root


def members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive) as tar:
        return {member.name: member for member in tar.getmembers()}


def contents(archive: Path) -> dict[str, bytes | str]:
    """File name -> bytes, symlink name -> "-> target"; folders left out."""
    result: dict[str, bytes | str] = {}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.isfile():
                result[member.name] = tar.extractfile(member).read()  # type: ignore[union-attr]
            elif member.issym():
                result[member.name] = "-> " + member.linkname
    return result


REPO_FILES = {
    ".gitignore": b"*.log\n",
    "README.md": b"hello\n",
    "train.py": b"print('train')\n",
    "run.sh": b"#!/bin/sh\necho run\n",
    "pkg/model.py": b"MODEL = 1\n",
    "pkg/data/vocab.txt": b"a b c\n",
    "pkg/latest.py": "-> model.py",
}


# -- git: contents ---------------------------------------------------------------------------


def test_git_archive_holds_the_committed_files(repo: Path, tmp_path: Path) -> None:
    package = GitArchivePackager().package(repo, tmp_path / "out")
    assert isinstance(package, Package)
    assert contents(package.path) == REPO_FILES
    assert package.local_root == repo.resolve()
    assert package.path == tmp_path / "out" / f"code-{package.digest[:16]}.tar.gz"
    assert len(package.digest) == 64


def test_git_archive_headers_are_normalised(repo: Path, tmp_path: Path) -> None:
    infos = members(GitArchivePackager().package(repo, tmp_path / "out").path)
    assert infos["run.sh"].mode == 0o755
    assert infos["train.py"].mode == 0o644
    assert infos["pkg"].isdir() and infos["pkg"].mode == 0o755
    assert infos["pkg/latest.py"].issym()
    for info in infos.values():
        assert (info.mtime, info.uid, info.gid, info.uname, info.gname) == (0, 0, 0, "", "")
        assert not info.name.startswith("/") and ".." not in info.name.split("/")
    assert list(infos) == sorted(infos, key=lambda name: name.split("/"))


def test_git_root_may_be_any_folder_inside_the_repo(repo: Path, tmp_path: Path) -> None:
    package = GitArchivePackager().package(repo / "pkg" / "data", tmp_path / "out")
    assert contents(package.path) == REPO_FILES


def test_subpath_is_the_archive_root(repo: Path, tmp_path: Path) -> None:
    package = GitArchivePackager(subpath="pkg").package(repo, tmp_path / "out")
    assert contents(package.path) == {
        "model.py": b"MODEL = 1\n",
        "data/vocab.txt": b"a b c\n",
        "latest.py": "-> model.py",
    }
    assert package.local_root == repo.resolve() / "pkg"


def test_subpath_not_in_repo_is_refused(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="'missing' is not a folder"):
        GitArchivePackager(subpath="missing").package(repo, tmp_path / "out")
    with pytest.raises(UserError, match=re.escape("'train.py' is not a folder")):
        GitArchivePackager(subpath="train.py").digest(repo)
    with pytest.raises(UserError, match="'missing' is not a folder"):
        GitArchivePackager(subpath="missing", include_uncommitted=True).digest(repo)


def test_subpath_outside_the_repo_is_a_validation_error() -> None:
    with pytest.raises(pydantic.ValidationError, match=re.escape("without '..'")):
        GitArchivePackager(subpath="../elsewhere")
    with pytest.raises(pydantic.ValidationError):
        GitArchivePackager(subpath="/abs")


def test_not_a_git_repository(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(UserError, match=f"not a git repository: {plain}"):
        GitArchivePackager().package(plain, tmp_path / "out")


def test_unknown_ref_is_refused(repo: Path) -> None:
    with pytest.raises(UserError, match="unknown git ref 'nope'"):
        GitArchivePackager(ref="nope").digest(repo)


def test_ref_packages_an_older_commit(repo: Path, tmp_path: Path) -> None:
    git(repo, "tag", "v1")
    write(repo / "train.py", "print('v2')\n")
    commit_all(repo)
    package = GitArchivePackager(ref="v1", check_uncommitted_changes=False).package(repo, tmp_path / "out")
    assert contents(package.path)["train.py"] == b"print('train')\n"


# -- git: uncommitted and untracked files ------------------------------------------------------


def test_uncommitted_changes_are_refused_by_name(repo: Path, tmp_path: Path) -> None:
    write(repo / "train.py", "print('changed')\n")
    (repo / "README.md").unlink()
    write(repo / "pkg" / "staged.py", "x = 1\n")
    git(repo, "add", "pkg/staged.py")
    with pytest.raises(UserError) as error:
        GitArchivePackager().package(repo, tmp_path / "out")
    message = str(error.value)
    assert "uncommitted changes" in message
    for name in ("train.py", "README.md", "pkg/staged.py"):
        assert name in message
    assert "include_uncommitted=True" in (error.value.hint or "")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_changes_outside_the_subpath_do_not_block_it(repo: Path, tmp_path: Path) -> None:
    write(repo / "train.py", "print('changed')\n")
    package = GitArchivePackager(subpath="pkg").package(repo, tmp_path / "out")
    assert "model.py" in contents(package.path)


def test_without_the_check_the_committed_content_is_archived(repo: Path, tmp_path: Path) -> None:
    write(repo / "train.py", "print('changed')\n")
    package = GitArchivePackager(check_uncommitted_changes=False).package(repo, tmp_path / "out")
    assert contents(package.path)["train.py"] == b"print('train')\n"


def test_untracked_files_are_left_out_by_default(repo: Path, tmp_path: Path) -> None:
    write(repo / "notes.txt", "scratch\n")
    assert "notes.txt" not in contents(GitArchivePackager().package(repo, tmp_path / "out").path)


def test_untracked_files_are_refused_when_asked(repo: Path) -> None:
    write(repo / "notes.txt", "scratch\n")
    write(repo / "pkg" / "new.py", "y = 2\n")
    for packager in (
        GitArchivePackager(check_untracked_files=True),
        GitArchivePackager(check_untracked_files=True, include_uncommitted=True),
    ):
        with pytest.raises(UserError, match="untracked files") as error:
            packager.digest(repo)
        assert "notes.txt" in str(error.value) and "pkg/new.py" in str(error.value)
        assert "debug.log" not in str(error.value)  # ignored files are not untracked files


def test_include_uncommitted_archives_the_working_tree(repo: Path, tmp_path: Path) -> None:
    write(repo / "train.py", "print('changed')\n")
    (repo / "README.md").unlink()
    write(repo / "notes.txt", "scratch\n")
    package = GitArchivePackager(include_uncommitted=True).package(repo, tmp_path / "out")
    files = contents(package.path)
    assert files["train.py"] == b"print('changed')\n"
    assert files["notes.txt"] == b"scratch\n"
    assert "README.md" not in files
    assert "debug.log" not in files
    assert files["pkg/latest.py"] == "-> model.py"
    assert members(package.path)["run.sh"].mode == 0o755


def test_include_uncommitted_on_a_clean_tree_equals_the_commit(repo: Path) -> None:
    assert GitArchivePackager(include_uncommitted=True).digest(repo) == GitArchivePackager().digest(repo)
    sub = GitArchivePackager(subpath="pkg", include_uncommitted=True)
    assert sub.digest(repo) == GitArchivePackager(subpath="pkg").digest(repo)


def test_include_uncommitted_needs_head(repo: Path) -> None:
    with pytest.raises(UserError, match="working tree, not ref 'v1'"):
        GitArchivePackager(include_uncommitted=True, ref="v1").digest(repo)


# -- determinism -----------------------------------------------------------------------------


def test_packaging_twice_gives_identical_bytes(repo: Path, tmp_path: Path) -> None:
    first = GitArchivePackager().package(repo, tmp_path / "a")
    second = GitArchivePackager().package(repo, tmp_path / "b")
    assert first.digest == second.digest == GitArchivePackager().digest(repo)
    assert first.path.read_bytes() == second.path.read_bytes()
    header = first.path.read_bytes()[:10]
    assert header[4:8] == b"\0\0\0\0"  # gzip mtime 0
    assert header[3] & 0x08 == 0  # no file name in the gzip header
    assert [p.name for p in (tmp_path / "a").iterdir()] == [first.path.name]  # no temp file left


def test_touching_files_keeps_the_digest(repo: Path, tmp_path: Path) -> None:
    before = {
        "git": GitArchivePackager().digest(repo),
        "worktree": GitArchivePackager(include_uncommitted=True).digest(repo),
        "pattern": PatternPackager(include=["**/*.py", "*.md"]).digest(repo),
    }
    later = time.time() + 3600
    for path in repo.rglob("*"):
        if ".git" not in path.parts and not path.is_symlink():
            os.utime(path, (later, later))
    after = {
        "git": GitArchivePackager().digest(repo),
        "worktree": GitArchivePackager(include_uncommitted=True).digest(repo),
        "pattern": PatternPackager(include=["**/*.py", "*.md"]).digest(repo),
    }
    assert after == before


def test_one_changed_byte_changes_the_digest(repo: Path) -> None:
    before = GitArchivePackager().digest(repo)
    write(repo / "pkg" / "model.py", "MODEL = 2\n")
    commit_all(repo)
    assert GitArchivePackager().digest(repo) != before


def test_executable_bit_changes_the_digest(repo: Path) -> None:
    packager = PatternPackager(include=["train.py"])
    before = packager.digest(repo)
    (repo / "train.py").chmod(0o755)
    assert packager.digest(repo) != before


def test_gzip_round_trip_is_a_plain_tar(repo: Path, tmp_path: Path) -> None:
    package = GitArchivePackager().package(repo, tmp_path / "out", name="mycode")
    assert package.path.name.startswith("mycode-")
    with tarfile.open(fileobj=gzip.open(package.path), mode="r:") as tar:
        assert "train.py" in tar.getnames()


# -- patterns --------------------------------------------------------------------------------


def test_pattern_include_and_exclude(repo: Path, tmp_path: Path) -> None:
    packager = PatternPackager(include=["**/*.py", "README.md"], exclude=["pkg/latest.py"])
    package = packager.package(repo, tmp_path / "out")
    assert contents(package.path) == {
        "README.md": b"hello\n",
        "train.py": b"print('train')\n",
        "pkg/model.py": b"MODEL = 1\n",
    }
    assert package.local_root == repo


def test_pattern_folder_brings_its_contents_and_symlinks(repo: Path, tmp_path: Path) -> None:
    package = PatternPackager(include=["pkg"], exclude=["pkg/data"]).package(repo, tmp_path / "out")
    assert contents(package.path) == {"pkg/model.py": b"MODEL = 1\n", "pkg/latest.py": "-> model.py"}


def test_pattern_relative_path_is_the_archive_root(repo: Path, tmp_path: Path) -> None:
    package = PatternPackager(include=["**/*.txt", "*.py"], relative_path="pkg").package(repo, tmp_path / "out")
    assert contents(package.path) == {
        "data/vocab.txt": b"a b c\n",
        "model.py": b"MODEL = 1\n",
        "latest.py": "-> model.py",
    }
    assert package.local_root == repo / "pkg"


def test_pattern_matching_nothing_is_named(repo: Path) -> None:
    with pytest.raises(UserError, match=r"'\*\*/\*\.rs' matches nothing"):
        PatternPackager(include=["*.py", "**/*.rs"]).digest(repo)


def test_pattern_missing_relative_path(repo: Path) -> None:
    with pytest.raises(UserError, match="'nowhere' is not a folder"):
        PatternPackager(include=["*"], relative_path="nowhere").digest(repo)


def test_pattern_escaping_the_folder_is_a_validation_error() -> None:
    with pytest.raises(pydantic.ValidationError):
        PatternPackager(include=["../secrets/*"])
    with pytest.raises(pydantic.ValidationError):
        PatternPackager(include=["/etc/passwd"])


# -- hybrid ----------------------------------------------------------------------------------


def test_hybrid_puts_each_part_under_its_name(repo: Path, tmp_path: Path) -> None:
    packager = HybridPackager({"code": GitArchivePackager(subpath="pkg"), "docs": PatternPackager(include=["*.md"])})
    package = packager.package(repo, tmp_path / "out")
    assert contents(package.path) == {
        "code/model.py": b"MODEL = 1\n",
        "code/data/vocab.txt": b"a b c\n",
        "code/latest.py": "-> model.py",
        "docs/README.md": b"hello\n",
    }
    assert members(package.path)["code"].isdir()
    assert package.local_root == repo


def test_hybrid_extract_at_root_merges(repo: Path, tmp_path: Path) -> None:
    packager = HybridPackager(
        {"code": GitArchivePackager(subpath="pkg"), "extra": PatternPackager(include=["train.py"])},
        extract_at_root=True,
    )
    files = contents(packager.package(repo, tmp_path / "out").path)
    assert files == {
        "model.py": b"MODEL = 1\n",
        "data/vocab.txt": b"a b c\n",
        "latest.py": "-> model.py",
        "train.py": b"print('train')\n",
    }


def test_hybrid_extract_at_root_conflict_is_named(repo: Path) -> None:
    packager = HybridPackager(
        {"code": GitArchivePackager(), "again": PatternPackager(include=["train.py"])}, extract_at_root=True
    )
    with pytest.raises(UserError, match=re.escape("'train.py' is given by both sub-packagers 'again' and 'code'")):
        packager.digest(repo)


def test_hybrid_part_errors_propagate(repo: Path) -> None:
    write(repo / "train.py", "print('changed')\n")
    with pytest.raises(UserError, match=re.escape("train.py")):
        HybridPackager({"code": GitArchivePackager()}).digest(repo)


def test_hybrid_names_and_keyword_form() -> None:
    assert HybridPackager(sub_packagers={"a": PatternPackager(include=["*"])}).sub_packagers["a"].kind == "pattern"
    for bad in ({"a/b": PatternPackager(include=["*"])}, {"..": PatternPackager(include=["*"])}, {}):
        with pytest.raises(pydantic.ValidationError):
            HybridPackager(bad)


# -- serialisation ---------------------------------------------------------------------------


class Holder(pydantic.BaseModel):
    """Stands in for an executor holding a packager."""

    model_config = pydantic.ConfigDict(extra="forbid", validate_assignment=True)

    packager: GitArchivePackager | PatternPackager | HybridPackager | None = None


@pytest.mark.parametrize(
    "packager",
    [
        None,
        GitArchivePackager(subpath="pkg", ref="v1", check_untracked_files=True, fingerprint=True),
        PatternPackager(include=["**/*.py"], exclude=["tests/**"], relative_path="src"),
        HybridPackager(
            {"code": GitArchivePackager(include_uncommitted=True), "data": PatternPackager(include=["data/*"])},
            extract_at_root=True,
        ),
    ],
)
def test_round_trip_through_json(packager: object) -> None:
    holder = Holder(packager=packager)  # type: ignore[arg-type]
    dumped = holder.model_dump(mode="json")
    back = Holder.model_validate(dumped)
    assert back == holder
    assert type(back.packager) is type(packager)
    assert Holder.model_validate_json(holder.model_dump_json()) == holder


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(pydantic.ValidationError):
        GitArchivePackager(subpth="pkg")  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError):
        Holder.model_validate({"packager": {"kind": "zip"}})


# ---- the archive digest as the code fingerprint (the engine side) ------------------------------------------
def _fingerprint_plan(repo: Path, *, fingerprint: bool) -> str:
    import nemoflow
    from nemoflow.pipeline.plan import make_plan
    from nemoflow.store.targets import Store

    from targets_for_tests import read_many

    packager = GitArchivePackager(fingerprint=fingerprint, include_uncommitted=True)
    exp = nemoflow.Experiment("fingerprint")
    exp.add(nemoflow.Partial(read_many, paths=[]), name="add", executor=nemoflow.SlurmExecutor(packager=packager))
    plan = make_plan(exp, Store(repo.parent / "store"), workdir=repo)
    return plan.steps["add"].key


def test_packager_digest_is_the_code_fingerprint_when_picked(repo: Path) -> None:
    picked = _fingerprint_plan(repo, fingerprint=True)
    assert _fingerprint_plan(repo, fingerprint=True) == picked  # same code, same key
    for path in repo.rglob("*.py"):
        os.utime(path, (time.time() + 100, time.time() + 100))
    assert _fingerprint_plan(repo, fingerprint=True) == picked  # mtimes do not count
    default = _fingerprint_plan(repo, fingerprint=False)
    write(repo / "pkg" / "model.py", "MODEL = 2\n")
    assert _fingerprint_plan(repo, fingerprint=True) != picked  # any packaged change rebuilds
    assert _fingerprint_plan(repo, fingerprint=False) == default  # by default only the step's own code counts
