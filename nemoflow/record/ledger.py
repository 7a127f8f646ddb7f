"""The provenance ledger: SQLite (WAL) through sqlite-utils, one transaction per write."""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import sqlite_utils

from nemoflow.errors import LedgerError
from nemoflow.record.ledger_writer import WriteBehind
from nemoflow.record.provenance import Environment

# 2: the experiments' run details (module, sys_path, options, host, pid, status, ended); experiment_steps
# 3: runs.backend_state, runs.code_digest, runs.details (remote backends: Slurm, Docker)
# 4: steps.code_parts (every code part a key counts: nemoflow.pipeline.fingerprint), experiment_steps.declared
# 5: code_files (the source of every user module a build ran, kept in the store), reproductions (nemoflow reproduce)
SCHEMA_VERSION = 5
REUSED = "reused"  # a run's status: its build took the target another build published meanwhile
REUSED_NOTE = "built by another build"

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
            "module": str,
            "workdir": str,
            "sys_path": str,
            "options": str,
            "host": str,
            "pid": int,
            "status": str,
            "ended": float,
        },
        "id",
    ),
    # Which steps (name, key, executor) made up each experiment run: enough to reload it.
    "experiment_steps": (
        {
            "experiment_id": str,
            "name": str,
            "key": str,
            "position": int,
            "reason": str,
            "executor": str,
            "dependencies": str,
            "declared": str,  # JSON: extra_code (import paths), extra_files, version of exp.add
        },
        ("experiment_id", "name"),
    ),
    "steps": (
        {"key": str, "name": str, "kind": str, "config": str, "code": str, "code_parts": str, "created": float},
        "key",
    ),
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
            "backend_state": str,  # the backend's own final word (Slurm's COMPLETED / FAILED / TIMEOUT)
            "code_digest": str,  # the sha256 of the code archive a packager shipped
            "details": str,  # JSON: where the job lives on its backend (enough to find it again)
        },
        "id",
    ),
    "artifacts": ({"key": str, "path": str, "sha256": str, "size": int}, ("key", "path")),
    "environments": ({"id": str, "python": str, "platform": str, "host": str, "packages": str}, "id"),
    # the user's module files a build ran (label: path from its import root), by content: see nemoflow.record.code_store
    "code_files": ({"experiment_id": str, "label": str, "module": str, "sha256": str}, ("experiment_id", "label")),
    # each rebuild-and-compare of a target (outcome: identical, differs, failed); details: JSON per file
    "reproductions": (
        {"id": str, "key": str, "step": str, "checked": float, "outcome": str, "details": str},
        "id",
    ),
}
_INDEXES = [
    ("runs", ["key"]),
    ("runs", ["experiment_id"]),
    ("runs", ["status"]),
    ("steps", ["name"]),
    ("edges", ["upstream_key"]),
    ("experiments", ["name", "created"]),
    ("experiment_steps", ["key"]),
    ("reproductions", ["key"]),
]
_JSON_COLUMNS = ("tags", "options", "sys_path")  # of experiments


@functools.cache
def _insert_sql(table: str, columns: tuple[str, ...], verb: str = "insert") -> str:
    return f"{verb} into {table} ({', '.join(columns)}) values ({', '.join('?' * len(columns))})"


_INSERT_ARTIFACT = _insert_sql("artifacts", ("key", "path", "sha256", "size"), "insert or replace")


class Ledger:
    """A connection to ``ledger.db``; open one per process (connections must not cross a fork)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open (or create) the ledger at ``path``.

        Raises:
            LedgerError: the file is not a ledger, or it (or its folder) cannot be written: one line
                naming the path and what to do.
        """
        self.path = Path(path)
        self._behind: WriteBehind | None = None  # see steps_in_a_row
        with self._storage_errors():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._db = sqlite_utils.Database(self.path)
                self.db.execute("PRAGMA busy_timeout = 30000")
                self.db.execute("PRAGMA synchronous = NORMAL")
                self._enable_wal()
                self._ensure_schema()
            except sqlite3.OperationalError:
                if not self.path.is_file() or os.access(self.path.parent, os.W_OK):
                    raise
                self._open_read_only()

    def _open_read_only(self) -> None:
        """A ledger in a folder nobody may write (an archived store): read it as it is; any write is a LedgerError.

        SQLite cannot make the WAL's shared-memory file there, so the file is opened immutable.
        """
        self._db.close()
        self._db = sqlite_utils.Database(sqlite3.connect(f"{self.path.resolve().as_uri()}?immutable=1", uri=True))
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise LedgerError(
                f"the ledger {self.path} has schema {version} and cannot be upgraded to {SCHEMA_VERSION}: its folder"
                " is read-only (make the store writable, chmod -R u+w, and run the command again)"
            )

    @contextlib.contextmanager
    def _storage_errors(self) -> Iterator[None]:
        """Turn SQLite's and the disk's refusals (not a database, read-only, full) into a LedgerError."""
        try:
            yield
        except (sqlite3.DatabaseError, OSError) as exc:
            problem = storage_problem(exc, self.path)
            if problem is None:
                raise
            raise LedgerError(problem) from exc

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        """One transaction; a refusal of the disk is a LedgerError (see :meth:`_storage_errors`)."""
        with self._storage_errors(), self.db.conn:
            yield

    @property
    def db(self) -> sqlite_utils.Database:
        """The connection; inside :meth:`steps_in_a_row`, once the queued runs are committed."""
        if self._behind is not None:
            self._behind.flush()
        return self._db

    def _enable_wal(self) -> None:
        """Switch a new ledger to WAL. SQLite answers "database is locked" at once, without the busy
        timeout, when another process opens the same new file at the same moment: retry a while."""
        deadline = time.monotonic() + 30
        while True:
            try:
                self.db.enable_wal()  # a no-op once the file is in WAL mode
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _ensure_schema(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path} has ledger schema {version}; this nemoflow reads up to {SCHEMA_VERSION}")
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")  # one process creates or migrates; the others wait, then find it done
        try:
            if self.db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                self._create_or_migrate()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _create_or_migrate(self) -> None:
        """Create the missing tables and add the missing columns (from schema 1: see SCHEMA_VERSION)."""
        for name, (columns, pk) in _TABLES.items():
            table = self.db[name]
            if not table.exists():
                table.create(columns, pk=pk)
                continue
            present = table.columns_dict
            for column, kind in columns.items():
                if column not in present:
                    table.add_column(column, kind)
        for name, cols in _INDEXES:
            self.db[name].create_index(cols, if_not_exists=True)
        self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    # ---- writes: each one transaction ---------------------------------------------------------
    def record_experiment(self, row: dict[str, Any]) -> None:
        with self._write():
            self.db["experiments"].insert({**row, "tags": json.dumps(row.get("tags", []))}, replace=True)

    def create_experiment(self, row: dict[str, Any], steps: Iterable[dict[str, Any]]) -> bool:
        """Record a new experiment run and its steps in one transaction.

        Args:
            row: the experiments row (``tags``, ``options``, ``sys_path`` as Python values).
            steps: ``name``, ``key``, ``position``, ``reason``, ``executor`` (data or None) and
                ``dependencies`` (names) of every step of the run.

        Returns:
            False, with nothing written, when an experiment with this id exists already.
        """
        record = {**row, **{c: json.dumps(row.get(c)) for c in _JSON_COLUMNS}}
        columns = ", ".join(record)
        marks = ", ".join("?" * len(record))
        step_rows = [
            (
                row["id"],
                s["name"],
                s["key"],
                s["position"],
                s["reason"],
                None if s["executor"] is None else json.dumps(s["executor"], sort_keys=True),
                json.dumps(s["dependencies"]) if s["dependencies"] else None,
                json.dumps(s["declared"], sort_keys=True) if s.get("declared") else None,
            )
            for s in steps
        ]
        try:
            with self._write():
                self.db.execute(f"insert into experiments ({columns}) values ({marks})", list(record.values()))
                self.db.conn.executemany(
                    "insert into experiment_steps"
                    " (experiment_id, name, key, position, reason, executor, dependencies, declared)"
                    " values (?, ?, ?, ?, ?, ?, ?, ?)",
                    step_rows,
                )
        except sqlite3.IntegrityError:
            return False
        return True

    def finish_experiment(self, experiment_id: str, status: str) -> None:
        with self._write():
            self.db.execute(
                "update experiments set status = ?, ended = ? where id = ?", [status, time.time(), experiment_id]
            )

    def record_environment(self, env: Environment) -> None:
        with self._write():
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
                    "code_parts": json.dumps(s.get("code_parts") or {}, sort_keys=True),
                    "created": now,
                }
            )
            edge_rows.extend({"key": s["key"], "upstream_key": k, "upstream_name": n} for n, k in s["upstream"].items())
        with self._write():  # plain SQL: sqlite-utils' insert_all costs ~10x as much for 100,000 rows
            self.db.conn.executemany(
                "insert or ignore into steps (key, name, kind, config, code, code_parts, created)"
                " values (:key, :name, :kind, :config, :code, :code_parts, :created)",
                step_rows,
            )
            self.db.conn.executemany(
                "insert or ignore into edges (key, upstream_key, upstream_name) values (:key, :upstream_key, :upstream_name)",
                edge_rows,
            )

    @contextlib.contextmanager
    def steps_in_a_row(self) -> Iterator[None]:
        """Steps run one after another in this process: their runs' starts and ends are committed in
        batches by a writer thread (see nemoflow.record.ledger_writer), at most about 50 ms after they happen.

        Any other call on this ledger first waits until those are committed.
        """
        if self._behind is not None:  # nested: the outer one commits
            yield
            return
        self._behind = WriteBehind(str(self.path))
        try:
            yield
        finally:
            behind, self._behind = self._behind, None
            behind.close()

    def flush(self) -> None:
        """Wait until the runs queued by :meth:`steps_in_a_row` are committed."""
        if self._behind is not None:
            self._behind.flush()

    def start_run(self, row: dict[str, Any]) -> None:
        record = {**row, "status": "running", "started": row.get("started", time.time())}
        # plain SQL on the hot path: sqlite-utils' insert re-reads the schema each call
        sql = _insert_sql("runs", tuple(record))
        if self._behind is not None:
            self._behind.put(sql, tuple(record.values()))
            return
        with self._write():
            self.db.conn.execute(sql, tuple(record.values()))

    def set_job_id(self, run_id: str, job_id: str, details: dict[str, Any] | None = None) -> None:
        """The backend's id of a run's job (a local subprocess: its pid), so it can be cancelled or found again."""
        details = details or {}
        with self._write():
            self.db.execute(
                "update runs set job_id = ?, code_digest = ?, details = ? where id = ?",
                [job_id, details.get("code_digest"), json.dumps(details) if details else None, run_id],
            )

    def mark_submitted(self, run_id: str, job_id: str, details: dict[str, Any]) -> None:
        """A run whose job was handed to its cluster and left there (a detached build): see nemoflow.engine.detach."""
        with self._write():
            self.db.execute(
                "update runs set status = 'submitted', job_id = ?, code_digest = ?, details = ? where id = ?",
                [job_id, details.get("code_digest"), json.dumps(details), run_id],
            )

    def set_backend_state(self, run_id: str, state: str) -> None:
        """The backend's latest word on a submitted run (PENDING, RUNNING...)."""
        with self._write():
            self.db.execute("update runs set backend_state = ? where id = ?", [state, run_id])

    def submitted_runs(self) -> list[dict[str, Any]]:
        """Runs submitted by a detached build and not yet collected."""
        return list(self.rows("select * from runs where status = 'submitted' order by started"))

    def mark_cancelled(self, run_id: str, error: str = "cancelled") -> None:
        """Close a run nobody will close any more (its worker is gone) as cancelled."""
        with self._write():
            self.db.execute(
                "update runs set status = 'cancelled', ended = ?, error = ?"
                " where id = ? and status in ('running', 'submitted')",
                [time.time(), error, run_id],
            )

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
        backend_state: str | None = None,
    ) -> None:
        """Close a run, and record its outputs (``path``, ``sha256``, ``size``) in the same transaction."""
        statements: list[tuple[str, Any, bool]] = [
            (
                "update runs set status = ?, ended = ?, exit_code = ?, error = ?, log_path = ?,"
                " backend_state = coalesce(?, backend_state) where id = ?",
                (status, time.time(), exit_code, error, log_path, backend_state, run_id),
                False,
            )
        ]
        if key is not None:
            rows = [(key, a["path"], a["sha256"], a["size"]) for a in artifacts]
            statements.append((_INSERT_ARTIFACT, rows, True))
        if self._behind is not None:
            for sql, params, many in statements:
                self._behind.put(sql, params, many=many)
            return
        with self._write():
            for sql, params, many in statements:
                (self.db.conn.executemany if many else self.db.conn.execute)(sql, params)

    def restore_runs(self, runs: list[dict[str, Any]], artifacts: list[tuple[str, str, str, int]]) -> None:
        """Put back finished runs (and their outputs: key, path, sha256, size) a killed build did not commit."""
        with self._write():
            for row in runs:
                self.db.conn.execute(_insert_sql("runs", tuple(row), "insert or replace"), tuple(row.values()))
            self.db.conn.executemany(_INSERT_ARTIFACT, artifacts)

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
        row = next(self.rows(_EXPERIMENTS + " where id = ?", [experiment_id]), None)
        return _experiment_row(row) if row else None

    def experiments(self, name: str | None = None) -> list[dict[str, Any]]:
        """Experiment runs, newest first (of one name, or all), each with its number of steps."""
        where, params = (" where name = ?", [name]) if name is not None else ("", [])
        return [_experiment_row(r) for r in self.rows(_EXPERIMENTS + where + " order by created desc", params)]

    def experiment_steps(self, experiment_id: str) -> list[dict[str, Any]]:
        """The steps of an experiment run in the order they were added."""
        rows = list(
            self.rows("select * from experiment_steps where experiment_id = ? order by position", [experiment_id])
        )
        for row in rows:
            row["executor"] = json.loads(row["executor"]) if row["executor"] else None
            row["dependencies"] = json.loads(row["dependencies"]) if row["dependencies"] else []
            row["declared"] = json.loads(row["declared"]) if row.get("declared") else None
        return rows

    def step_configs(self, keys: Iterable[str]) -> dict[str, Any]:
        """key -> recorded config data, for the keys that have a steps row."""
        keys = list(keys)
        found: dict[str, Any] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.rows(f"select key, config from steps where key in ({marks})", chunk):
                found[row["key"]] = json.loads(row["config"])
        return found

    def code_parts(self, key: str) -> dict[str, str] | None:
        """The code parts the key of a step counted (None: not recorded, or built before schema 4)."""
        for row in self.rows("select code_parts from steps where key = ?", [key]):
            return json.loads(row["code_parts"]) if row["code_parts"] else None
        return None

    def artifacts_of(self, key: str) -> list[dict[str, Any]]:
        return list(self.rows("select * from artifacts where key = ? order by path", [key]))


_EXPERIMENTS = (
    "select e.*, (select count(*) from experiment_steps s where s.experiment_id = e.id) as steps from experiments e"
)


def _experiment_row(row: dict[str, Any]) -> dict[str, Any]:
    for column in _JSON_COLUMNS:
        row[column] = json.loads(row[column]) if row.get(column) else None
    row["tags"] = row["tags"] or []
    return row


# errno values of a store that cannot take a write; the hint says what to do about each
_DISK_HINTS = {
    errno.EROFS: "the store is on a read-only file system: build into a writable one with --store DIR"
    " (or NEMOFLOW_STORE)",
    errno.EACCES: "no permission to write there: make the store writable (chmod -R u+w), or use --store DIR",
    errno.EPERM: "no permission to write there: make the store writable (chmod -R u+w), or use --store DIR",
    errno.ENOSPC: "the disk is full: free some space (nemoflow gc removes unused targets), or use --store DIR",
    errno.EDQUOT: "the disk quota is used up: free some space (nemoflow gc removes unused targets), or use --store DIR",
}


def storage_problem(exc: BaseException, path: str | os.PathLike[str] | None = None) -> str | None:
    """One line for an error of the disk under the store or of its ledger, naming the path and what to do.

    Args:
        exc: an OSError (read-only, no permission, disk full) or an sqlite3.DatabaseError.
        path: the file it is about, when ``exc`` does not name one (SQLite's errors never do).

    Returns:
        None for any other error.
    """
    if isinstance(exc, OSError) and exc.errno in _DISK_HINTS:
        where = exc.filename2 or exc.filename or path  # a rename: where it was to go
        return f"cannot write {where}: {exc.strerror} ({_DISK_HINTS[exc.errno]})"
    if not isinstance(exc, sqlite3.DatabaseError) or path is None:
        return None
    text = str(exc)
    if "readonly" in text or "read-only" in text:
        return f"cannot write the ledger {path}: {text} ({_DISK_HINTS[errno.EACCES]})"
    if "disk is full" in text:
        return f"cannot write the ledger {path}: {text} ({_DISK_HINTS[errno.ENOSPC]})"
    if "not a database" in text or "malformed" in text:
        return (
            f"the ledger {path} is damaged: {text} (move it aside, e.g. mv {path} {path}.broken, and build again:"
            " the targets stay valid, the run history starts afresh)"
        )
    if isinstance(exc, sqlite3.OperationalError) and ("unable to open" in text or "disk I/O" in text):
        return f"cannot use the ledger {path}: {text} (check that the store and its folder can be written)"
    return None
