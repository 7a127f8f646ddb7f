"""Packagers: turn a project's code into one deterministic, content-addressed .tar.gz archive."""

from __future__ import annotations

import dataclasses
import os
import shlex
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic

from nemoflow.errors import UserError
from nemoflow.executors.archive import (
    Package,
    _disk_entry,
    _Entries,
    _expand,
    _git,
    _git_paths,
    _refuse_files,
    _RelPath,
    _repo_top,
    _run_git,
    _tar_entries,
    _with_parents,
    _write_archive,
)

__all__ = [
    "AnyPackager",
    "GitArchivePackager",
    "HybridPackager",
    "OptionalPackager",
    "Package",
    "Packager",
    "PatternPackager",
]


class UncommittedChanges(UserError, RuntimeError):
    """``check_uncommitted_changes`` found changes (a RuntimeError, as NeMo Run raises)."""


class UntrackedFiles(UserError, AssertionError):
    """``check_untracked_files`` found untracked files (an AssertionError, as NeMo Run raises)."""


class PackagerValueError(UserError, ValueError):
    """A packager setting that cannot work (a ValueError, as NeMo Run raises)."""


class Packager(pydantic.BaseModel):
    """Builds a deterministic .tar.gz of a project's code; subclasses choose what goes in.

    ``Packager()`` itself is NeMo Run's pass-through packager: an executor given it packages nothing and
    runs the code where it is, as with ``packager=None`` (which is what the executor keeps).
    """

    model_config = pydantic.ConfigDict(extra="forbid", validate_assignment=True)

    fingerprint: bool = False  # when True, the archive digest is the code fingerprint of the steps it packages

    def _collect(self, root: Path) -> tuple[Path, _Entries]:
        """The local folder the archive mirrors, and the archive's entries."""
        raise NotImplementedError

    def package(self, root: Path, dest_dir: Path, *, name: str = "code") -> Package:
        """Write ``dest_dir/<name>-<digest[:16]>.tar.gz`` atomically (temp file, then rename).

        Args:
            root: the project folder the build runs in (for git: any folder inside the repository).
            dest_dir: where the archive goes; created when missing.
            name: the archive's file name prefix.

        Raises:
            UserError: when the code cannot be packaged (see the subclass).
        """
        if not name or "/" in name or name.startswith("."):
            raise UserError(f"bad archive name {name!r}", hint="use a plain file name such as 'code'")
        local_root, entries = self._collect(Path(root).absolute())
        dest_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=".tmp", dir=dest_dir)
        try:
            with os.fdopen(fd, "w+b") as handle:
                digest = _write_archive(entries, handle)
                os.fsync(handle.fileno())
            path = dest_dir / f"{name}-{digest[:16]}.tar.gz"
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Package(path=path, digest=digest, local_root=local_root)

    def digest(self, root: Path) -> str:
        """The sha256 digest :meth:`package` would give, without keeping an archive (UserError as there)."""
        with tempfile.TemporaryFile() as handle:
            return _write_archive(self._collect(Path(root).absolute())[1], handle)


class GitArchivePackager(Packager):
    """The files git tracks at ``ref`` (or, with ``include_uncommitted``, the working tree).

    Attributes:
        subpath: a folder of the repository (relative to its top level) to package alone; the
            archive root is that folder. Only changes under it are checked.
        ref: the commit to package; with ``include_uncommitted`` it must stay "HEAD".
        include_uncommitted: archive the working tree instead: tracked files as they are on disk
            (deleted ones left out) plus untracked, non-ignored files.
        check_uncommitted_changes: refuse, naming them, when tracked files differ from ``ref``
            (unused with ``include_uncommitted``, which archives those changes).
        check_untracked_files: refuse, naming them, when untracked non-ignored files exist (in both
            modes: it guards against stray files reaching the archive or being left out).
    """

    kind: Literal["git"] = "git"
    subpath: _RelPath = ""
    ref: str = "HEAD"
    include_uncommitted: bool = False
    check_uncommitted_changes: bool = True
    check_untracked_files: bool = False
    include_pattern: str | list[str] = ""
    include_pattern_relative_path: str | list[str] = ""

    def _extra_files(self, top: Path) -> _Entries:
        """The files ``include_pattern`` adds (built artefacts git does not track), named relative to
        their ``include_pattern_relative_path`` (default: the repository's top level), at the archive root.

        A pattern is one or more space-separated globs, absolute or relative to its relative path; a
        matched folder brings every file under it.
        """
        patterns = [self.include_pattern] if isinstance(self.include_pattern, str) else self.include_pattern
        bases = self.include_pattern_relative_path
        bases = [bases] if isinstance(bases, str) else bases
        if len(patterns) != len(bases):
            raise PackagerValueError(
                "include_pattern and include_pattern_relative_path should have the same length "
                f"(got {len(patterns)} and {len(bases)})",
                hint="give one relative path per pattern ('' for the repository's top level)",
            )
        extra: _Entries = {}
        for pattern, base_text in zip(patterns, bases, strict=True):
            base = top / os.path.expanduser(base_text) if base_text else top
            words = [os.path.relpath(w, base) if os.path.isabs(w) else w for w in shlex.split(pattern)]
            outside = [w for w in words if w == ".." or w.startswith("../")]
            if outside:
                raise PackagerValueError(
                    f"include_pattern {pattern!r} reaches outside {base}: {', '.join(outside)}",
                    hint="set include_pattern_relative_path to a folder that holds the files",
                )
            if words:
                extra.update(_expand(base, words, required=True))
        return extra

    def _collect(self, root: Path) -> tuple[Path, _Entries]:
        top = _repo_top(root)
        spec = [self.subpath] if self.subpath else []
        self._check_source(top)
        if self.check_uncommitted_changes and not self.include_uncommitted:
            changed = _git_paths(top, "diff", "--name-only", "-z", "--no-renames", self.ref, "--", *spec)
            hint = "commit them, or set include_uncommitted=True to package the working tree"
            _refuse_files(changed, f"uncommitted changes in {top}", hint, error=UncommittedChanges)
        if self.check_untracked_files:
            untracked = _git_paths(top, "ls-files", "-z", "--others", "--exclude-standard", "--", *spec)
            hint = "commit them, add them to .gitignore, or set check_untracked_files=False"
            _refuse_files(untracked, f"untracked files in {top}", hint, error=UntrackedFiles)
        entries = self._worktree(top, spec) if self.include_uncommitted else self._committed(top)
        return top / self.subpath, {**entries, **self._extra_files(top)}

    def _check_source(self, top: Path) -> None:
        """Refuse an unknown ref, or a subpath that is not a folder (of the ref or the working tree)."""
        if self.include_uncommitted:
            if self.ref != "HEAD":
                raise UserError(
                    f"include_uncommitted packages the working tree, not ref {self.ref!r}",
                    hint="set ref='HEAD' or include_uncommitted=False",
                )
            is_folder = (top / self.subpath).is_dir()
        else:
            if _run_git(top, "rev-parse", "--verify", "--quiet", f"{self.ref}^{{commit}}").returncode != 0:
                raise UserError(f"unknown git ref {self.ref!r} in {top}", hint="use a branch, tag or commit")
            kind = _run_git(top, "cat-file", "-t", f"{self.ref}:{self.subpath}").stdout if self.subpath else b"tree"
            is_folder = kind.strip() == b"tree"
        if not is_folder:
            raise UserError(
                f"subpath {self.subpath!r} is not a folder of the git repository {top} at {self.ref}",
                hint="give a folder relative to the repository's top level",
            )

    def _committed(self, top: Path) -> _Entries:
        tree = f"{self.ref}:{self.subpath}" if self.subpath else self.ref
        return _tar_entries(_git(top, "archive", "--format=tar", tree))

    def _worktree(self, top: Path, spec: list[str]) -> _Entries:
        entries: _Entries = {}
        paths = _git_paths(top, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *spec)
        base = top / self.subpath
        for path in (top / rel for rel in paths if os.path.lexists(top / rel)):  # deleted files left out
            if (entry := _disk_entry(path, path.relative_to(base).as_posix())) is not None:
                entries[entry.name] = entry
        return entries


class PatternPackager(Packager):
    """The files matching glob patterns (``**`` recurses; ``*`` skips dot-files, as in a shell).

    Attributes:
        include: patterns relative to ``relative_path``; each must match something. A matched
            folder brings everything under it.
        exclude: patterns whose matches (and everything under matched folders) are left out.
        relative_path: the folder of the project the patterns start from; the archive root.
    """

    kind: Literal["pattern"] = "pattern"
    include: list[_RelPath]
    exclude: list[_RelPath] = []
    relative_path: _RelPath = ""

    def _collect(self, root: Path) -> tuple[Path, _Entries]:
        base = root / self.relative_path
        if not base.is_dir():
            raise UserError(f"relative_path {self.relative_path!r} is not a folder of {root}")
        included = _expand(base, self.include, required=True)
        excluded = _expand(base, self.exclude, required=False)
        return base, {name: entry for name, entry in included.items() if name not in excluded}


_Label = Annotated[str, pydantic.StringConstraints(pattern=r"^(?:[^/]*[^/.][^/]*|\.{3,})$")]  # a plain folder name


def _packager_kind(value: Any) -> str:
    """The kind of a packager, also from data without ``kind`` (dumped with ``exclude_defaults``)."""
    if not isinstance(value, dict):
        return getattr(value, "kind", "")
    if "kind" in value:
        return value["kind"]
    return "pattern" if "include" in value else "hybrid" if "sub_packagers" in value else "git"


SubPackager = Annotated[
    Annotated[GitArchivePackager, pydantic.Tag("git")] | Annotated[PatternPackager, pydantic.Tag("pattern")],
    pydantic.Discriminator(_packager_kind),
]


class HybridPackager(Packager):
    """Several packagers in one archive, e.g. ``HybridPackager({"code": GitArchivePackager()})``.

    Attributes:
        sub_packagers: the packagers by name; each sees the same project folder.
        extract_at_root: False puts each one's content under ``<name>/``; True merges them all at
            the root, and a path given by two of them is an error.

    The local root is the project folder (with ``extract_at_root``: the sub-packagers' one, if shared).
    """

    kind: Literal["hybrid"] = "hybrid"
    sub_packagers: Annotated[dict[_Label, SubPackager], pydantic.Field(min_length=1)]
    extract_at_root: bool = False

    def __init__(self, sub_packagers: dict[str, Packager] | None = None, /, **fields: Any) -> None:
        # pydantic also calls this when validating a dict, so every field stays a keyword too
        if sub_packagers is not None:
            fields["sub_packagers"] = sub_packagers
        super().__init__(**fields)

    def _collect(self, root: Path) -> tuple[Path, _Entries]:
        merged: _Entries = {}
        owners: dict[str, str] = {}
        local_roots = set()
        for label in sorted(self.sub_packagers):
            local_root, entries = self.sub_packagers[label]._collect(root)
            local_roots.add(local_root)
            for entry in _with_parents(entries).values():
                name = entry.name if self.extract_at_root else f"{label}/{entry.name}"
                previous = merged.get(name)
                if previous is not None and not (previous.kind == entry.kind == "dir"):
                    raise UserError(
                        f"{name!r} is given by both sub-packagers {owners[name]!r} and {label!r}",
                        hint="leave it out of one of them, or set extract_at_root=False",
                    )
                merged[name] = dataclasses.replace(entry, name=name)
                owners[name] = label
        shared = self.extract_at_root and len(local_roots) == 1
        return (local_roots.pop() if shared else root), merged


AnyPackager = Annotated[
    Annotated[GitArchivePackager, pydantic.Tag("git")]
    | Annotated[PatternPackager, pydantic.Tag("pattern")]
    | Annotated[HybridPackager, pydantic.Tag("hybrid")],
    pydantic.Discriminator(_packager_kind),
]


def _pass_through_is_none(value: Any) -> Any:
    """NeMo Run's pass-through ``Packager()`` packages nothing: it is kept as None."""
    return None if type(value) is Packager else value


OptionalPackager = Annotated[AnyPackager | None, pydantic.BeforeValidator(_pass_through_is_none)]
"""An executor's ``packager`` field: a packager, or None (also given as ``Packager()``) for none."""
