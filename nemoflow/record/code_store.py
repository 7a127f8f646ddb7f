"""The source of the user's modules a build ran, kept by content in the store (``.code/``) and named in the ledger.

``nemoflow reproduce`` rebuilds a target from this code, not from the working tree, so a rebuild
works after the tree moved on (uncommitted edits included). One blob per distinct file content,
written once; a build whose files are all known costs one stat per file (the hash is cached by stat).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

from nemoflow.pipeline.user_code import is_user_module, module_label
from nemoflow.record.ledger import Ledger
from nemoflow.store.targets import Store

CODE_DIR = ".code"


def blob_path(store: Store, sha256: str) -> Path:
    """Where the file content of hash ``sha256`` is kept."""
    return store.root / CODE_DIR / sha256[:2] / sha256


def user_module_files(modules: Mapping[str, ModuleType] | None = None) -> dict[str, tuple[str, str]]:
    """label (path from the import root, e.g. ``mylib/model.py``) -> (module name, file) of every user module."""
    found: dict[str, tuple[str, str]] = {}
    for name, module in list((modules if modules is not None else sys.modules).items()):
        file = getattr(module, "__file__", None)
        if name == "__main__" or not isinstance(file, str) or not file.endswith(".py") or not os.path.isfile(file):
            continue
        if is_user_module(name, file):
            found[module_label(name, file)] = (name, file)
    return found


def keep_code(ledger: Ledger, store: Store, experiment_id: str) -> int:
    """Keep the source of every user module imported now, and record it for ``experiment_id``; returns how many."""
    hashes = store.file_hash_cache()
    rows = []
    for label, (name, file) in sorted(user_module_files().items()):
        sha = hashes.sha256(file)
        blob = blob_path(store, sha)
        if not blob.exists():
            blob.parent.mkdir(parents=True, exist_ok=True)
            tmp = blob.with_name(f".{sha}.{uuid.uuid4().hex[:8]}")
            tmp.write_bytes(Path(file).read_bytes())
            os.replace(tmp, blob)  # another build writing the same blob writes the same bytes
        rows.append((experiment_id, label, name, sha))
    store.save_file_hash_cache(hashes)
    with ledger.db.conn:  # one transaction
        ledger.db.conn.executemany(
            "insert or replace into code_files (experiment_id, label, module, sha256) values (?, ?, ?, ?)", rows
        )
    return len(rows)


def recorded_code(ledger: Ledger, experiment_id: str) -> dict[str, dict[str, str]]:
    """label -> {module, sha256} of the code an experiment run kept (empty: built before it was kept)."""
    return {
        row["label"]: {"module": row["module"], "sha256": row["sha256"]}
        for row in ledger.rows("select * from code_files where experiment_id = ? order by label", [experiment_id])
    }


def lay_out(store: Store, code: Mapping[str, Mapping[str, str]], root: Path) -> list[str]:
    """Write the recorded files under ``root`` at their labels (an import root); returns the labels whose blob is gone."""
    missing = []
    for label, entry in code.items():
        blob = blob_path(store, entry["sha256"])
        target = root / label
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            target.write_bytes(blob.read_bytes())
        except FileNotFoundError:
            missing.append(label)
    return missing
