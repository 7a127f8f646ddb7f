"""Deterministic .tar.gz archives of files, folders and symlinks, and the git queries packagers make."""

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
from pathlib import Path, PurePosixPath
from typing import IO, Annotated, Literal, NamedTuple

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


def _refuse_files(
    names: list[str], what: str, hint: str, *, shown: int = 20, error: type[UserError] = UserError
) -> None:
    """Raise ``error`` (a UserError) naming (the first ``shown`` of) ``names``, when there are any."""
    if names:
        more = f" and {len(names) - shown} more" if len(names) > shown else ""
        raise error(f"{what}: {', '.join(sorted(names)[:shown])}{more}", hint=hint)


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
