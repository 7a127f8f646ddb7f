"""The content-addressed store: ``<root>/<step>/<key>/`` with a manifest, published atomically.

A step writes into a private workspace under ``<root>/.tmp``; :meth:`Store.publish` hashes its
files, writes the manifest, and moves the folder into place with one rename. A folder without
a manifest does not exist for nemoflow, so a killed build never leaves a target that looks done.
"""

from __future__ import annotations

# dill is imported only to read back a pickled result.
import contextlib
import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nemoflow.store.hashing import FileHashCache, file_sha256

MANIFEST = "nemoflow.json"
CHECKED_CACHE = "targets.json"  # under .cache/: stat signatures of targets found intact
LOG = "nemoflow.log"
JOB = "nemoflow-job.json"
METRICS = "metrics.jsonl"
METRICS_TIMES = "metrics.times.jsonl"  # when each metrics row was logged: kept apart, so outputs do not hold the clock
RESULT_JSON = "result.json"
RESULT_PICKLE = "result.pkl"
MANIFEST_FORMAT = 1
SBATCH = "nemoflow-sbatch.sh"  # a Slurm step's script, kept with its log
META_FILES = frozenset({MANIFEST, LOG, JOB, SBATCH, METRICS_TIMES})  # not outputs: not hashed, not compared
_CANCEL_ALL = ".all"  # a step name never starts with "."


class ManifestUnreadable(ValueError):
    """A manifest that exists but does not parse: the target cannot be trusted."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"manifest {path} is unreadable: {reason}")
        self.path, self.reason = path, reason


@dataclass(frozen=True)
class TargetState:
    """What :meth:`Store.check` found: no target, an intact one, or a damaged one (``damage`` says how)."""

    exists: bool
    damage: str = ""

    @property
    def complete(self) -> bool:
        return self.exists and not self.damage


ABSENT = TargetState(False)
INTACT = TargetState(True)


@dataclass(frozen=True)
class Mismatch:
    """An output file that no longer matches its manifest."""

    path: str
    expected: str
    actual: str | None  # None: the file is gone


class Store:
    """A folder of targets; ``root`` defaults to ``targets/`` under the build's directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()
        self._root = str(self.root)  # os.path on the per-step paths: pathlib costs add up over 100,000 steps
        self._checked: dict[str, list[Any]] | None = None  # "step/key" -> stat signatures of an intact target
        self._checked_changed = False

    # ---- reading ----------------------------------------------------------------------------
    def target_dir(self, step: str, key: str) -> Path:
        return self.root / step / key

    def is_complete(self, step: str, key: str) -> bool:
        """One stat: is there a manifest for this step and key?"""
        return os.path.exists(os.path.join(self._root, step, key, MANIFEST))

    def read_manifest(self, step: str, key: str) -> dict[str, Any] | None:
        """The manifest of ``step``/``key``, or None when there is no target.

        Raises:
            ManifestUnreadable: the manifest is there but does not parse (truncated, overwritten).
        """
        path = f"{self._root}/{step}/{key}/{MANIFEST}"
        try:
            data = _read_bytes(path)
        except FileNotFoundError:
            return None
        return _parse_manifest(path, data)

    def check(self, step: str, key: str) -> TargetState:
        """Cheap: is there a target of ``step``/``key``, and does it still look as published?

        The manifest must parse and every file it lists must be there with the recorded size and
        stat signature (one ``stat`` each). A file whose signature changed is hashed, so a copied
        or touched store is not rebuilt for nothing; a file whose size changed is damaged.
        """
        folder = f"{self._root}/{step}/{key}"  # not os.path.join: this runs for every step of a no-op build
        if self._checked is None:
            self._checked = self.read_cache(CHECKED_CACHE)
        known = self._checked.get(f"{step}/{key}")
        if known is not None and _unchanged(folder, known):  # as intact as when last read: no manifest to parse
            return INTACT
        state = self._check_manifest(step, key, folder)
        if state is INTACT:
            self._remember_intact(step, key, folder)
        return state

    def _remember_intact(self, step: str, key: str, folder: str) -> None:
        """Note the stat signatures of an intact target's manifest and outputs, for the next check."""
        try:
            manifest = self.read_manifest(step, key) or {}
            files = [[e["path"], *_signature(os.stat(f"{folder}/{e['path']}"))] for e in manifest.get("files", [])]
            self._note_intact(step, key, [[MANIFEST, *_signature(os.stat(f"{folder}/{MANIFEST}"))], *files])
        except (OSError, ManifestUnreadable, KeyError, TypeError):
            return

    def _note_intact(self, step: str, key: str, signatures: list[list[Any]]) -> None:
        if self._checked is None:
            self._checked = self.read_cache(CHECKED_CACHE)
        self._checked[f"{step}/{key}"] = signatures
        self._checked_changed = True

    def save_check_cache(self) -> None:
        """Keep what the checks of this process found intact (only once the store exists)."""
        if self._checked_changed and self._checked is not None and self.root.exists():
            self.write_cache(CHECKED_CACHE, self._checked)
            self._checked_changed = False

    def _check_manifest(self, step: str, key: str, folder: str) -> TargetState:
        try:
            manifest = self.read_manifest(step, key)
        except ManifestUnreadable as exc:
            return TargetState(True, f"manifest unreadable: {exc.reason}")
        if manifest is None:
            return ABSENT
        try:
            stats = manifest.get("stats") or {}  # absent in manifests published before nemoflow recorded them
            for entry in manifest["files"]:
                damage = _file_damage(folder, entry, stats.get(entry["path"]))
                if damage:
                    return TargetState(True, damage)
        except (KeyError, TypeError, IndexError) as exc:
            return TargetState(True, f"manifest unreadable: bad file entry ({type(exc).__name__}: {exc})")
        return INTACT

    def latest_manifest(self, step: str) -> dict[str, Any] | None:
        """The most recently published manifest of any key of ``step``, if one exists."""
        folder = self.root / step
        if not folder.is_dir():
            return None
        best: tuple[float, Path] | None = None
        for entry in os.scandir(folder):
            manifest = Path(entry.path) / MANIFEST
            try:
                mtime = manifest.stat().st_mtime
            except (FileNotFoundError, NotADirectoryError):
                continue
            if best is None or mtime > best[0]:
                best = (mtime, manifest)
        if best is None:
            return None
        try:
            return _parse_manifest(str(best[1]), best[1].read_bytes())
        except ManifestUnreadable:  # a damaged target tells nothing about what was built
            return None

    def locate(self, path: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
        """The target folder holding ``path`` and its manifest.

        Raises:
            FileNotFoundError: ``path`` is not inside a published target.
        """
        current = Path(path).absolute()
        for folder in [current, *current.parents]:
            manifest = folder / MANIFEST
            if manifest.is_file():
                return folder, _parse_manifest(str(manifest), manifest.read_bytes())
            if folder == self.root:
                break
        raise FileNotFoundError(f"{path} is not inside a published target of {self.root}")

    def verify(self, step: str, key: str) -> list[Mismatch]:
        """Every output of a target whose content no longer matches the manifest."""
        folder = self.target_dir(step, key)
        manifest = self.read_manifest(step, key)
        if manifest is None:
            raise FileNotFoundError(f"no target {step}/{key}")
        mismatches = []
        for entry in manifest["files"]:
            try:
                actual: str | None = file_sha256(folder / entry["path"])
            except FileNotFoundError:
                actual = None
            if actual != entry["sha256"]:
                mismatches.append(Mismatch(entry["path"], entry["sha256"], actual))
        return mismatches

    def load_result(self, step: str, key: str) -> Any:
        """A step's stored return value (None when it returned nothing)."""
        folder = self.target_dir(step, key)
        return load_result_from(folder)

    # ---- writing ----------------------------------------------------------------------------
    def new_workspace(self, step: str, key: str, *, detached: bool = False) -> Path:
        """A fresh private folder for one attempt at building ``step``/``key``.

        Its name ends in ``<host>.<pid>.<random>`` so that :meth:`sweep_workspaces` can tell
        the leftovers of killed builds from the folders of builds still running. A detached job's
        (one the build submits and leaves to its cluster) outlives its build: no sweep removes it.
        """
        owner = "detached.0" if detached else f"{socket.gethostname()}.{os.getpid()}"
        workspace = os.path.join(self._root, ".tmp", f"{step}.{key[:16]}.{owner}.{uuid.uuid4().hex[:8]}")
        _mkdir_in_place(workspace)
        return Path(workspace)

    def mark_detached(self, run_id: str) -> None:
        """Note a run left to its cluster, so later builds know to look for it (one stat when there is none)."""
        folder = self.root / ".detached"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / run_id).touch()

    def unmark_detached(self, run_id: str) -> None:
        (self.root / ".detached" / run_id).unlink(missing_ok=True)

    def has_detached(self) -> bool:
        """Whether a detached run may still be waiting to be collected."""
        try:
            return any(os.scandir(self.root / ".detached"))
        except FileNotFoundError:
            return False

    def sweep_workspaces(self) -> int:
        """Remove workspaces left by builds of this host that no longer run; returns how many."""
        folder = self.root / ".tmp"
        if not folder.is_dir():
            return 0
        host = socket.gethostname()
        removed = 0
        for entry in os.scandir(folder):
            parts = entry.name.rsplit(".", 3)
            if len(parts) == 4 and parts[1] == host and parts[2].isdigit() and not pid_alive(int(parts[2])):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed += 1
        return removed

    def publish(
        self, workspace: Path, *, step: str, key: str, record: dict[str, Any], replace: bool = False
    ) -> dict[str, Any]:
        """Hash the workspace's outputs, write the manifest, and move it into place.

        Args:
            workspace: the folder the step wrote into.
            record: manifest fields (config, code, upstream, run_id, ...).
            replace: replace an existing target of the same key (a forced rebuild).

        Returns:
            The manifest now in place (another worker's, if it published this key first).
        """
        folder = os.fspath(workspace)
        files = []
        stats = {}  # path -> stat signature: what says "unchanged" without reading (not part of the content)
        for rel in sorted(_outputs(folder)):  # a name that is not UTF-8 stays lossless: JSON escapes it
            sha256, st = _sha256_and_stat(os.path.join(folder, rel))
            files.append({"path": rel, "sha256": sha256, "size": st.st_size})
            stats[rel] = _signature(st)
        manifest = {
            "format": MANIFEST_FORMAT,
            "step": step,
            "key": key,
            **record,
            "files": files,
            "stats": stats,
            "result": next((f["path"] for f in files if f["path"] in (RESULT_JSON, RESULT_PICKLE)), None),
            "published": time.time(),
        }
        with open(os.path.join(folder, MANIFEST), "w") as out:
            out.write(json.dumps(manifest, sort_keys=True))
            out.flush()
            manifest_signature = _signature(os.fstat(out.fileno()))
        final = os.path.join(self._root, step, key)
        if replace and os.path.exists(final):
            self._set_aside(Path(final))
        _mkdir_in_place(os.path.dirname(final), exist_ok=True)
        try:
            os.rename(folder, final)
        except OSError:  # published meanwhile by another worker: theirs stands
            if not self.is_complete(step, key):
                self._set_aside(Path(final))
                os.rename(folder, final)
                return manifest
            shutil.rmtree(folder, ignore_errors=True)
            return self.read_manifest(step, key) or manifest
        self._note_intact(step, key, [[MANIFEST, *manifest_signature], *([rel, *sig] for rel, sig in stats.items())])
        return manifest

    def keep_failed(self, workspace: Path, *, step: str, key: str, run_id: str) -> Path:
        """Move a failed attempt aside (its log stays readable); it is never a target."""
        dest = self.root / ".failed" / step / f"{key[:16]}.{run_id}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(workspace, dest)
        return dest

    def set_aside_damaged(self, step: str, key: str) -> Path | None:
        """Move a damaged target out of the way, kept for inspection under ``.corrupt/<step>/<key>.<time>``.

        Returns:
            Where it was moved, or None when it was gone already (another build set it aside).
        """
        dest = self.root / ".corrupt" / step / f"{key}.{time.strftime('%Y%m%d-%H%M%S')}.{uuid.uuid4().hex[:6]}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(self.target_dir(step, key), dest)
        except FileNotFoundError:
            return None
        return dest

    def _set_aside(self, folder: Path) -> None:
        trash = self.root / ".trash" / uuid.uuid4().hex
        trash.parent.mkdir(parents=True, exist_ok=True)
        os.rename(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)

    # ---- cancellation -----------------------------------------------------------------------
    def request_cancel(self, experiment_id: str, step: str | None = None) -> None:
        """Ask the build of ``experiment_id`` to start no more steps (or, with ``step``, not that one).

        A marker file under ``.cancel/``; the runner looks for it before and after it starts a step.
        """
        folder = self.root / ".cancel" / experiment_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / (step or _CANCEL_ALL)).touch()

    def cancel_requested(self, experiment_id: str, step: str) -> bool:
        """Was the experiment run, or this step of it, cancelled? (One stat when it was not.)"""
        folder = os.path.join(self.root, ".cancel", experiment_id)
        if not os.path.isdir(folder):
            return False
        return os.path.exists(os.path.join(folder, _CANCEL_ALL)) or os.path.exists(os.path.join(folder, step))

    # ---- caches -----------------------------------------------------------------------------
    def file_hash_cache(self) -> FileHashCache:
        return FileHashCache(self.read_cache("files.json"))

    def save_file_hash_cache(self, cache: FileHashCache) -> None:
        if cache.changed:
            self.write_cache("files.json", cache.entries)

    def read_cache(self, name: str) -> dict[str, Any]:
        """A cache kept under ``.cache/`` (empty when missing or unreadable: a cache only ever saves time)."""
        try:
            entries = json.loads((self.root / ".cache" / name).read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return entries if isinstance(entries, dict) else {}

    def write_cache(self, name: str, entries: dict[str, Any]) -> None:
        """Keep a cache under ``.cache/``; one that cannot be written (a read-only store) is only slower."""
        folder = self.root / ".cache"
        with contextlib.suppress(OSError):
            folder.mkdir(parents=True, exist_ok=True)
            write_atomic(folder / name, json.dumps(entries))


def _outputs(folder: str) -> list[str]:
    """The output files under ``folder`` (relative, ``/``-separated), without nemoflow's own files.

    Like ``os.walk``: a symlink to a folder is not followed.
    """
    found = []
    pending = [""]
    while pending:
        prefix = pending.pop()
        with os.scandir(os.path.join(folder, prefix) if prefix else folder) as entries:
            for entry in entries:
                rel = prefix + entry.name
                if entry.is_dir():
                    if not entry.is_symlink():
                        pending.append(rel + "/")
                elif rel not in META_FILES:
                    found.append(rel)
    return found


def _sha256_and_stat(path: str) -> tuple[str, os.stat_result]:
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
        return digest, os.fstat(handle.fileno())


def _signature(st: os.stat_result) -> list[int]:
    """What :meth:`Store.check` compares without reading a file: size, mtime_ns, inode."""
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _unchanged(folder: str, known: list[Any]) -> bool:
    """Do the manifest and every output still have the stat signatures recorded when they were last found intact?"""
    try:
        return all(_signature(os.stat(f"{folder}/{rel}")) == signature for rel, *signature in known)
    except (OSError, TypeError, ValueError):
        return False


def _file_damage(folder: str, entry: dict[str, Any], recorded: list[int] | None) -> str:
    """What is wrong with one listed output ("" when nothing): one stat, a hash only when its signature moved."""
    rel = entry["path"]
    path = f"{folder}/{rel}"
    try:
        st = os.stat(path)
    except OSError:
        return f"output gone: {printable_name(rel)}"
    if st.st_size != entry["size"]:
        return f"output changed on disk: {printable_name(rel)}"
    if recorded is not None and recorded != _signature(st) and file_sha256(path) != entry["sha256"]:
        return f"output changed on disk: {printable_name(rel)}"
    return ""


def _read_bytes(path: str) -> bytes:
    """A whole file in as few syscalls as can be (no buffered file object: a no-op build reads every manifest)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = [os.read(fd, 1 << 16)]
        while len(chunks[-1]) == 1 << 16:
            chunks.append(os.read(fd, 1 << 16))
    finally:
        os.close(fd)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _parse_manifest(path: str, data: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        raise ManifestUnreadable(path, str(exc)) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        raise ManifestUnreadable(path, "not a nemoflow manifest (no list of files)")
    return manifest


def printable_name(rel: str) -> str:
    """A file name as UTF-8 text: unchanged when it is UTF-8, else its undecodable bytes as ``\\xNN``.

    Names come from the file system as ``str`` with surrogate escapes (``os.fsdecode``); the
    manifest keeps them exactly (JSON escapes the surrogates), the ledger and messages get this form.
    """
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(rel).decode("utf-8", "backslashreplace")
    return rel


def _mkdir_in_place(path: str, *, exist_ok: bool = False) -> None:
    """``mkdir``, making the parent folders only when they are missing (one syscall in the usual case)."""
    try:
        os.mkdir(path)
    except FileExistsError:
        if not exist_ok:
            raise
    except FileNotFoundError:
        os.makedirs(path, exist_ok=exist_ok)


def process_alive(host: str | None, pid: int | None) -> bool:
    """Is the process ``pid`` of ``host`` still there? (On another host, or unknown: cannot tell, so yes.)"""
    if host != socket.gethostname() or not pid:
        return True
    return pid_alive(pid)


def pid_alive(pid: int) -> bool:
    """Is process ``pid`` (on this host) still there?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_result_from(folder: Path) -> Any:
    if (folder / RESULT_JSON).exists():
        return json.loads((folder / RESULT_JSON).read_text())
    if (folder / RESULT_PICKLE).exists():
        import dill

        return dill.loads((folder / RESULT_PICKLE).read_bytes())
    return None


def write_atomic(path: Path, text: str) -> None:
    """Write a file so readers see the old or the new content, never a half."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(text)
    os.replace(tmp, path)
