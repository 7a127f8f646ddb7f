"""The provenance ledger: SQLite (WAL) through sqlite-utils, one transaction per write."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import sqlite_utils

from nemoflow.provenance import Environment

SCHEMA_VERSION = 1

_TABLES: dict[str, tuple[dict[str, Any], Any]] = {
    "experiments": (
        {
            "id": str,
            "name": str,
            "description": str,
            "tags": str,
            "pipeline_file": str,
            "pipeline_sha256": str,
            "git_commit": str,
            "git_dirty": int,
            "store": str,
            "created": float,
        },
        "id",
    ),
    "steps": ({"key": str, "name": str, "kind": str, "config": str, "code": str, "created": float}, "key"),
    "edges": ({"key": str, "upstream_key": str, "upstream_name": str}, ("key", "upstream_key")),
    "runs": (
        {
            "id": str,
            "experiment_id": str,
            "key": str,
            "step": str,
            "reason": str,
            "executor": str,
            "host": str,
            "worker": str,
            "pid": int,
            "status": str,
            "started": float,
            "ended": float,
            "exit_code": int,
            "log_path": str,
            "error": str,
            "environment_id": str,
            "job_id": str,
        },
        "id",
    ),
    "artifacts": ({"key": str, "path": str, "sha256": str, "size": int}, ("key", "path")),
    "environments": ({"id": str, "python": str, "platform": str, "host": str, "packages": str}, "id"),
}
_INDEXES = [("runs", ["key"]), ("runs", ["experiment_id"]), ("steps", ["name"]), ("edges", ["upstream_key"])]


class Ledger:
    """A connection to ``ledger.db``; open one per process (connections must not cross a fork)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite_utils.Database(self.path)
        self.db.execute("PRAGMA busy_timeout = 30000")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.enable_wal()
        self._ensure_schema()

    def _ensure_schema(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path} has ledger schema {version}; this nemoflow reads up to {SCHEMA_VERSION}")
        with self.db.conn:
            for name, (columns, pk) in _TABLES.items():
                self.db[name].create(columns, pk=pk, if_not_exists=True)
            for table, cols in _INDEXES:
                self.db[table].create_index(cols, if_not_exists=True)
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()

    # ---- writes: each one transaction ---------------------------------------------------------
    def record_experiment(self, row: dict[str, Any]) -> None:
        with self.db.conn:
            self.db["experiments"].insert({**row, "tags": json.dumps(row.get("tags", []))}, replace=True)

    def record_environment(self, env: Environment) -> None:
        with self.db.conn:
            self.db["environments"].insert(
                {
                    "id": env.id,
                    "python": env.python,
                    "platform": env.platform,
                    "host": env.host,
                    "packages": json.dumps(env.packages),
                },
                ignore=True,
            )

    def record_steps(self, steps: Iterable[dict[str, Any]]) -> None:
        """Steps with their edges (``upstream``: name -> key), all in one transaction."""
        now = time.time()
        step_rows, edge_rows = [], []
        for s in steps:
            step_rows.append(
                {
                    "key": s["key"],
                    "name": s["name"],
                    "kind": s["kind"],
                    "config": json.dumps(s["config"], sort_keys=True),
                    "code": s["code"],
                    "created": now,
                }
            )
            edge_rows.extend({"key": s["key"], "upstream_key": k, "upstream_name": n} for n, k in s["upstream"].items())
        with self.db.conn:
            self.db["steps"].insert_all(step_rows, ignore=True, batch_size=500)
            self.db["edges"].insert_all(edge_rows, ignore=True, batch_size=500)

    def start_run(self, row: dict[str, Any]) -> None:
        record = {**row, "status": "running", "started": row.get("started", time.time())}
        columns = ", ".join(record)
        marks = ", ".join("?" * len(record))
        with self.db.conn:  # plain SQL on the hot path: sqlite-utils' insert re-reads the schema each call
            self.db.execute(f"insert into runs ({columns}) values ({marks})", list(record.values()))

    def finish_run(
        self,
        run_id: str,
        *,
        status: str,
        exit_code: int | None = None,
        error: str | None = None,
        log_path: str | None = None,
        key: str | None = None,
        artifacts: Iterable[dict[str, Any]] = (),
    ) -> None:
        """Close a run, and record its outputs (``path``, ``sha256``, ``size``) in the same transaction."""
        with self.db.conn:
            self.db.execute(
                "update runs set status = ?, ended = ?, exit_code = ?, error = ?, log_path = ? where id = ?",
                [status, time.time(), exit_code, error, log_path, run_id],
            )
            if key is not None:
                self.db.conn.executemany(
                    "insert or replace into artifacts (key, path, sha256, size) values (?, ?, ?, ?)",
                    [(key, a["path"], a["sha256"], a["size"]) for a in artifacts],
                )

    # ---- queries ------------------------------------------------------------------------------
    def rows(self, sql: str, params: Iterable[Any] = ()) -> Iterator[dict[str, Any]]:
        return self.db.query(sql, list(params))

    def runs_of(self, key: str) -> list[dict[str, Any]]:
        return list(self.rows("select * from runs where key = ? order by started", [key]))

    def runs_in(self, experiment_id: str) -> list[dict[str, Any]]:
        return list(self.rows("select * from runs where experiment_id = ? order by started", [experiment_id]))

    def last_runs(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The latest run of each key, in one query per 500 keys."""
        keys = list(keys)
        found: dict[str, dict[str, Any]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.rows(f"select * from runs where key in ({marks}) order by started", chunk):
                found[row["key"]] = row
        return found

    def environment(self, env_id: str) -> dict[str, Any] | None:
        row = next(self.rows("select * from environments where id = ?", [env_id]), None)
        if row:
            row["packages"] = json.loads(row["packages"])
        return row

    def experiment(self, experiment_id: str) -> dict[str, Any] | None:
        row = next(self.rows("select * from experiments where id = ?", [experiment_id]), None)
        if row:
            row["tags"] = json.loads(row["tags"] or "[]")
        return row

    def artifacts_of(self, key: str) -> list[dict[str, Any]]:
        return list(self.rows("select * from artifacts where key = ? order by path", [key]))
