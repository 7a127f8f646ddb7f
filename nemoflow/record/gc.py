"""Garbage collection of the store: remove targets that no current pipeline reaches."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from nemoflow.pipeline.plan import Plan
from nemoflow.store.targets import Store

_HOUSEKEEPING = (".failed", ".trash")  # .tmp is swept by Store.sweep_workspaces


@dataclass
class Collected:
    """What a collection removed (or, in a dry run, would remove)."""

    targets: list[Path] = field(default_factory=list)
    housekeeping: list[Path] = field(default_factory=list)
    bytes: int = 0


def collect(store: Store, plans: Iterable[Plan], *, dry_run: bool = False, keep_failed: bool = False) -> Collected:
    """Remove every target of ``store`` that none of ``plans`` names, and stale housekeeping.

    A target is live when some plan has a step of that name with that key, whether it is up to
    date or not. Failed attempts' logs (``.failed``) go too unless ``keep_failed``; workspaces of
    builds still running are kept.
    """
    live = {(step.name, step.key) for plan in plans for step in plan}
    found = Collected()
    if not store.root.is_dir():
        return found
    for step_dir in sorted(os.scandir(store.root), key=lambda e: e.name):
        if not step_dir.is_dir() or step_dir.name.startswith("."):
            continue
        for key_dir in sorted(os.scandir(step_dir.path), key=lambda e: e.name):
            if key_dir.is_dir() and (step_dir.name, key_dir.name) not in live:
                found.targets.append(Path(key_dir.path))
    if not dry_run:
        store.sweep_workspaces()
    for name in _HOUSEKEEPING:
        if name == ".failed" and keep_failed:
            continue
        folder = store.root / name
        if folder.is_dir():
            found.housekeeping.append(folder)
    found.bytes = sum(_size(p) for p in [*found.targets, *found.housekeeping])
    if not dry_run:
        for path in [*found.targets, *found.housekeeping]:
            shutil.rmtree(path, ignore_errors=True)
        for step_dir in os.scandir(store.root):
            if step_dir.is_dir() and not step_dir.name.startswith(".") and not any(os.scandir(step_dir.path)):
                os.rmdir(step_dir.path)
    return found


def _size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):  # removed meanwhile
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total
