"""The content-addressed store: ``<root>/<step>/<key>/`` with a manifest, published atomically.

A step writes into a private workspace under ``<root>/.tmp``; :meth:`Store.publish` hashes its
files, writes the manifest, and moves the folder into place with one rename. A folder without
a manifest does not exist for nemoflow, so a killed build never leaves a target that looks done.
"""

from __future__ import annotations

# dill is imported only to read back a pickled result.
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
LOG = "nemoflow.log"
JOB = "nemoflow-job.json"
METRICS = "metrics.jsonl"
RESULT_JSON = "result.json"
RESULT_PICKLE = "result.pkl"
MANIFEST_FORMAT = 1
SBATCH = "nemoflow-sbatch.sh"  # a Slurm step's script, kept with its log
META_FILES = frozenset({MANIFEST, LOG, JOB, SBATCH})  # not outputs: not hashed, not compared
_CANCEL_ALL = ".all"  # a step name never starts with "."


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

    # ---- reading ----------------------------------------------------------------------------
    def target_dir(self, step: str, key: str) -> Path:
        return self.root / step / key

    def is_complete(self, step: str, key: str) -> bool:
        """One stat: is there a manifest for this step and key?"""
        return os.path.exists(os.path.join(self._root, step, key, MANIFEST))

    def read_manifest(self, step: str, key: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.target_dir(step, key) / MANIFEST).read_text())
        except FileNotFoundError:
            return None

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
        return json.loads(best[1].read_text()) if best else None

    def locate(self, path: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
        """The target folder holding ``path`` and its manifest.

        Raises:
            FileNotFoundError: ``path`` is not inside a published target.
        """
        current = Path(path).absolute()
        for folder in [current, *current.parents]:
            manifest = folder / MANIFEST
            if manifest.is_file():
                return folder, json.loads(manifest.read_text())
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
        for rel in sorted(_outputs(folder)):
            sha256, size = _sha256_and_size(os.path.join(folder, rel))
            files.append({"path": rel, "sha256": sha256, "size": size})
        manifest = {
            "format": MANIFEST_FORMAT,
            "step": step,
            "key": key,
            **record,
            "files": files,
            "result": next((f["path"] for f in files if f["path"] in (RESULT_JSON, RESULT_PICKLE)), None),
            "published": time.time(),
        }
        with open(os.path.join(folder, MANIFEST), "w") as out:
            out.write(json.dumps(manifest, sort_keys=True))
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
        return manifest

    def keep_failed(self, workspace: Path, *, step: str, key: str, run_id: str) -> Path:
        """Move a failed attempt aside (its log stays readable); it is never a target."""
        dest = self.root / ".failed" / step / f"{key[:16]}.{run_id}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(workspace, dest)
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
        folder = self.root / ".cache"
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


def _sha256_and_size(path: str) -> tuple[str, int]:
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
        return digest, handle.tell()


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
