"""The ledger's schema: migration from schema 1, and experiment runs created atomically."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from nemoflow.record.ledger import SCHEMA_VERSION, Ledger

SCHEMA_1 = """
create table experiments (id text primary key, name text, description text, tags text, pipeline_file text,
    pipeline_sha256 text, git_commit text, git_dirty integer, store text, created float);
create table runs (id text primary key, experiment_id text, key text, step text, reason text, executor text,
    host text, worker text, pid integer, status text, started float, ended float, exit_code integer,
    log_path text, error text, environment_id text, job_id text);
insert into experiments (id, name, tags, created) values ('old_1', 'old', '["a"]', 1.0);
pragma user_version = 1;
"""


def test_a_schema_1_ledger_is_migrated_in_place(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "ledger.db")
    db.executescript(SCHEMA_1)
    db.close()
    ledger = Ledger(tmp_path / "ledger.db")
    assert ledger.db.execute("pragma user_version").fetchone()[0] == SCHEMA_VERSION == 5
    assert {"code_files", "reproductions"} <= set(ledger.db.table_names())
    old = ledger.experiment("old_1")
    assert old is not None and (old["name"], old["tags"], old["steps"], old["options"]) == ("old", ["a"], 0, None)
    assert {"module", "sys_path", "options", "status", "ended"} <= set(ledger.db["experiments"].columns_dict)
    assert ledger.experiment_steps("old_1") == []
    ledger.close()
    Ledger(tmp_path / "ledger.db").close()  # opening again finds it done


def test_an_experiment_id_is_taken_once(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    step = {"name": "s", "key": "k" * 64, "position": 0, "reason": "new config", "executor": None, "dependencies": []}
    row = {"id": "e_1", "name": "e", "tags": ["x"], "created": 1.0, "options": {"jobs": 2}}
    assert ledger.create_experiment(row, [step])
    assert not ledger.create_experiment({**row, "name": "other"}, [])
    assert ledger.experiment("e_1")["name"] == "e"
    assert ledger.experiment_steps("e_1") == [{**step, "experiment_id": "e_1", "declared": None}]
    ledger.finish_experiment("e_1", "succeeded")
    assert ledger.experiments("e")[0]["status"] == "succeeded"
