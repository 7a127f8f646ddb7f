"""Compare a rebuilt target with the recorded one, file by file, and keep the verdict in the ledger.

The rebuild itself is nemoflow.runs.reproduce. Compared: every output the manifest lists (the
store's own files are not outputs: ``nemoflow.log``, the job files and ``metrics.times.jsonl``,
where ``log_metrics`` keeps the clock). A target whose rebuild differs is *nondeterministic*;
``nemoflow status`` and ``nemoflow audit`` say so.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nemoflow.record.ledger import Ledger

IDENTICAL, DIFFERS, FAILED = "identical", "differs", "failed"
_TEXT_SUFFIXES = (".json", ".jsonl", ".txt", ".csv", ".tsv", ".md", ".yaml", ".yml", ".toml", ".log", ".py")
_DIFF_LINES = 20
_DIFF_BYTES = 1 << 20  # a bigger file gets no diff, only its sizes and hashes


@dataclass
class FileComparison:
    """One output: recorded versus rebuilt (a hash None: absent on that side)."""

    path: str
    outcome: str  # identical or differs
    recorded_sha256: str | None
    rebuilt_sha256: str | None
    recorded_size: int | None
    rebuilt_size: int | None
    diff: str = ""


@dataclass
class TargetComparison:
    """A target and its rebuild; ``rebuilt_key`` differs from ``key`` when what the key hashes changed."""

    step: str
    key: str
    rebuilt_key: str | None
    files: list[FileComparison] = field(default_factory=list)
    problem: str = ""  # why there is nothing to compare (the rebuild failed, the original is gone)

    @property
    def outcome(self) -> str:
        if self.problem:
            return FAILED
        return IDENTICAL if all(f.outcome == IDENTICAL for f in self.files) else DIFFERS

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "outcome": self.outcome}


def compare_target(
    step: str,
    key: str,
    recorded: tuple[Path, dict[str, Any]],
    rebuilt: tuple[Path, dict[str, Any]],
    rebuilt_key: str,
) -> TargetComparison:
    """Compare every output of two published targets (folder and manifest of each)."""
    (old_dir, old), (new_dir, new) = recorded, rebuilt
    old_files = {f["path"]: f for f in old["files"]}
    new_files = {f["path"]: f for f in new["files"]}
    result = TargetComparison(step, key, rebuilt_key)
    for path in sorted(old_files.keys() | new_files.keys()):
        a, b = old_files.get(path), new_files.get(path)
        same = a is not None and b is not None and a["sha256"] == b["sha256"]
        entry = FileComparison(
            path,
            IDENTICAL if same else DIFFERS,
            a and a["sha256"],
            b and b["sha256"],
            a and a["size"],
            b and b["size"],
        )
        if not same and a is not None and b is not None:
            entry.diff = text_diff(old_dir / path, new_dir / path)
        result.files.append(entry)
    return result


def text_diff(old: Path, new: Path) -> str:
    """A short unified diff of two text (or JSON) files; "" for binary or big files."""
    if old.suffix not in _TEXT_SUFFIXES or max(old.stat().st_size, new.stat().st_size) > _DIFF_BYTES:
        return ""
    try:
        a, b = old.read_text(), new.read_text()
    except (UnicodeDecodeError, OSError):
        return ""
    if old.suffix == ".json":  # one value per line: the diff names what changed, not one long line
        with contextlib.suppress(ValueError):
            a, b = (json.dumps(json.loads(t), indent=1, sort_keys=True) + "\n" for t in (a, b))
    lines = list(difflib.unified_diff(a.splitlines(), b.splitlines(), "recorded", "rebuilt", lineterm="", n=1))
    if len(lines) > _DIFF_LINES:
        lines = [*lines[:_DIFF_LINES], f"... ({len(lines) - _DIFF_LINES} more lines)"]
    return "\n".join(lines)


def record_reproductions(ledger: Ledger, comparisons: Iterable[TargetComparison]) -> None:
    """Keep each verdict (one transaction for all)."""
    now = time.time()
    rows = [
        (uuid.uuid4().hex, c.key, c.step, now, c.outcome, json.dumps(c.as_dict(), sort_keys=True)) for c in comparisons
    ]
    with ledger.db.conn:
        ledger.db.conn.executemany(
            "insert into reproductions (id, key, step, checked, outcome, details) values (?, ?, ?, ?, ?, ?)", rows
        )


def nondeterministic(ledger: Ledger, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    """key -> its latest reproduction, for the keys whose latest rebuild differed (one query per 500 keys)."""
    keys = list(keys)
    latest: dict[str, dict[str, Any]] = {}
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        marks = ",".join("?" * len(chunk))
        for row in ledger.rows(
            f"select key, step, checked, outcome from reproductions where key in ({marks}) order by checked", chunk
        ):
            latest[row["key"]] = row
    return {k: row for k, row in latest.items() if row["outcome"] == DIFFERS}
