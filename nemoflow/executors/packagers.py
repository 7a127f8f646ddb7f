"""Packagers: turn a project's code into one deterministic, content-addressed .tar.gz archive."""

from __future__ import annotations

import dataclasses
import glob
import gzip
import hashlib
import io
import os
import stat
import subprocess
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import IO, Annotated, Any, Literal, NamedTuple

import pydantic

from nemoflow.errors import UserError


class Package(NamedTuple):
    """An archive written by a packager."""

    path: Path  # the .tar.gz file
    digest: str  # sha256 hex digest of the archive bytes
    local_root: Path  # the local folder whose contents the archive's root mirrors


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One archive member: a file (bytes in memory or a path on disk), a folder or a symlink."""

    name: str
    kind: Literal["file", "dir", "link"]
    data: bytes | None = None
    source: Path | None = None
    executable: bool = False
    target: str = ""


_Entries = dict[str, _Entry]


def _clean_relpath(value: str) -> str:
    """``value`` as a normalised relative posix path ("" for the folder itself)."""
    path = PurePosixPath(value.strip())
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"must be a relative path without '..', got {value!r}")
    text = path.as_posix()
    return "" if text == "." else text


_RelPath = Annotated[str, pydantic.AfterValidator(_clean_relpath)]


def _refuse_files(names: list[str], what: str, hint: str, *, shown: int = 20) -> None:
    """Raise a UserError naming (the first ``shown`` of) ``names``, when there are any."""
    if names:
        more = f" and {len(names) - shown} more" if len(names) > shown else ""
        raise UserError(f"{what}: {', '.join(sorted(names)[:shown])}{more}", hint=hint)


def _with_parents(entries: _Entries) -> _Entries:
    """``entries`` plus a folder entry for every parent folder of every entry."""
    result = dict(entries)
    for name in entries:
        for parent in PurePosixPath(name).parents:
            text = parent.as_posix()
            if text != "." and text not in result:
                result[text] = _Entry(text, "dir")
    return result


def _tarinfo(entry: _Entry) -> tarfile.TarInfo:
    """A normalised header: mtime 0, owner 0/"", mode 0o644 / 0o755 (0o777 for symlinks)."""
    info = tarfile.TarInfo(entry.name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    if entry.kind == "dir":
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    elif entry.kind == "link":
        info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, entry.target
    else:
        info.mode = 0o755 if entry.executable else 0o644
    return info


def _write_archive(entries: _Entries, out: IO[bytes]) -> str:
    """Write ``entries`` (and their parent folders) as a deterministic .tar.gz; return its sha256."""
    full = _with_parents(entries)
    with (
        gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name in sorted(full, key=lambda n: PurePosixPath(n).parts):
            entry = full[name]
            info = _tarinfo(entry)
            if entry.kind != "file":
                tar.addfile(info)
            elif entry.source is not None:
                with entry.source.open("rb") as handle:
                    info.size = os.fstat(handle.fileno()).st_size
                    tar.addfile(info, handle)
            else:
                data = entry.data or b""
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    out.flush()
    out.seek(0)
    return hashlib.file_digest(out, "sha256").hexdigest()  # type: ignore[arg-type]


def _disk_entry(path: Path, name: str) -> _Entry | None:
    """The entry for ``path`` (not following symlinks); None for sockets, fifos and the like."""
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        return _Entry(name, "link", target=os.readlink(path))
    if stat.S_ISDIR(mode):
        return _Entry(name, "dir")
    if stat.S_ISREG(mode):
        return _Entry(name, "file", source=path, executable=bool(mode & stat.S_IXUSR))
    return None


def _walk(base: Path, rel: str, into: _Entries) -> None:
    """Add the folder ``base/rel`` and everything under it, symlinks kept as symlinks."""
    into[rel] = _Entry(rel, "dir")
    for folder, dirnames, filenames in os.walk(base / rel, followlinks=False):
        for child in dirnames + filenames:
            path = Path(folder) / child
            entry = _disk_entry(path, path.relative_to(base).as_posix())
            if entry is not None:
                into[entry.name] = entry


def _through_symlink(base: Path, rel: str) -> bool:
    """True when a parent folder of ``rel`` (below ``base``) is a symlink."""
    return any((base / parent).is_symlink() for parent in PurePosixPath(rel).parents if str(parent) != ".")


def _expand(base: Path, patterns: list[str], *, required: bool) -> _Entries:
    """Entries matched by glob ``patterns`` under ``base``; a matched folder brings its contents."""
    found: _Entries = {}
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, root_dir=base, recursive=True))
        if required and not matches:
            raise UserError(f"include pattern {pattern!r} matches nothing in {base}", hint="check the pattern")
        for match in matches:
            rel = PurePosixPath(match).as_posix()
            if rel == "." or rel in found or _through_symlink(base, rel):
                continue
            path = base / rel
            if path.is_dir() and not path.is_symlink():
                _walk(base, rel, found)
            elif (entry := _disk_entry(path, rel)) is not None:
                found[rel] = entry
    return found


def _run_git(repo: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", "-C", str(repo), *args], check=False, capture_output=True)
    except FileNotFoundError as exc:
        raise UserError("git is not installed", hint="install git or use a PatternPackager") from exc


def _git(repo: Path, *args: str, error: str = "") -> bytes:
    """Run git in ``repo`` and return its output; a failure is a UserError (``error``, or git's message)."""
    proc = _run_git(repo, *args)
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip()
        raise UserError(error or f"git {args[0]} failed in {repo}: {message}", hint=message if error else None)
    return proc.stdout


def _git_paths(repo: Path, *args: str) -> list[str]:
    """The NUL-separated paths git prints for ``args``."""
    out = _git(repo, *args).decode("utf-8", errors="surrogateescape")
    return [path for path in out.split("\0") if path]


def _repo_top(root: Path) -> Path:
    if not root.is_dir():
        raise UserError(f"project folder does not exist: {root}")
    top = _git(root, "rev-parse", "--show-toplevel", error=f"not a git repository: {root}")
    return Path(top.decode().strip())


def _tar_entries(data: bytes) -> _Entries:
    """The files, folders and symlinks of an uncompressed tar held in memory."""
    entries: _Entries = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar.getmembers():
            name = member.name.rstrip("/")
            if member.isdir():
                entries[name] = _Entry(name, "dir")
            elif member.issym():
                entries[name] = _Entry(name, "link", target=member.linkname)
            elif member.isfile():
                content = tar.extractfile(member).read()  # type: ignore[union-attr]
                entries[name] = _Entry(name, "file", data=content, executable=bool(member.mode & 0o100))
    return entries


class Packager(pydantic.BaseModel):
    """Builds a deterministic .tar.gz of a project's code; subclasses choose what goes in."""

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

    def _collect(self, root: Path) -> tuple[Path, _Entries]:
        top = _repo_top(root)
        spec = [self.subpath] if self.subpath else []
        self._check_source(top)
        if self.check_uncommitted_changes and not self.include_uncommitted:
            changed = _git_paths(top, "diff", "--name-only", "-z", "--no-renames", self.ref, "--", *spec)
            hint = "commit them, or set include_uncommitted=True to package the working tree"
            _refuse_files(changed, f"uncommitted changes in {top}", hint)
        if self.check_untracked_files:
            untracked = _git_paths(top, "ls-files", "-z", "--others", "--exclude-standard", "--", *spec)
            hint = "commit them, add them to .gitignore, or set check_untracked_files=False"
            _refuse_files(untracked, f"untracked files in {top}", hint)
        entries = self._worktree(top, spec) if self.include_uncommitted else self._committed(top)
        return top / self.subpath, entries

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
