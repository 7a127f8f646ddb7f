"""The ledger agrees with the store after a killed build: runs it lost are put back from the manifests."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from helpers import kill_build_once_started, last_json, nemoflow

CHAIN = textwrap.dedent("""
    import nemoflow

    def step(i: int, previous: str | None = None) -> int:
        text = (open(previous).read() if previous else "") + f"{i}\\n"
        (nemoflow.output_dir() / "out.txt").write_text(text)
        return i

    def pipeline():
        exp = nemoflow.Experiment("chain")
        previous = None
        for i in range(COUNT):
            ref = previous.output("out.txt") if previous else None
            previous = exp.add(nemoflow.Partial(step, i=i, previous=ref), name=f"s{i}")
        return exp
""")

GATED = CHAIN.replace(
    "    return exp\n",
    '    exp.add(nemoflow.Partial(wait, marker=MARKER, gate=GATE), name="gated", dependencies=[previous])\n'
    "    return exp\n",
) + textwrap.dedent("""
    def wait(marker: str, gate: str) -> None:
        import os, time
        from pathlib import Path
        Path(marker).write_text(str(os.getpid()))
        while Path(gate).exists():
            time.sleep(0.05)
""")


def _ledger(folder: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(folder / "targets" / "ledger.db")
    conn.row_factory = sqlite3.Row
    return conn


def _manifests(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in (folder / "targets").glob("[!.]*/*/nemoflow.json")]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _assert_every_target_has_its_run(folder: Path) -> None:
    conn = _ledger(folder)
    try:
        runs = {row["id"]: dict(row) for row in conn.execute("select * from runs")}
        recorded = {(row["key"], row["path"]): row["sha256"] for row in conn.execute("select * from artifacts")}
    finally:
        conn.close()
    for manifest in _manifests(folder):
        run = runs.get(manifest["run_id"])
        assert run is not None, f"{manifest['step']}: its run {manifest['run_id']} is not in the ledger"
        assert (run["status"], run["key"], run["step"]) == ("succeeded", manifest["key"], manifest["step"])
        for entry in manifest["files"]:
            assert recorded[(manifest["key"], entry["path"])] == entry["sha256"]


def test_runs_lost_by_a_killed_build_are_restored_from_the_manifests(tmp_path: Path) -> None:
    """The commits a SIGKILL can lose, made to happen: the last runs of a build are deleted from the
    ledger and its process is dead. The next build puts them back and marks that build interrupted."""
    (tmp_path / "p.py").write_text("COUNT = 6\n" + CHAIN)
    first = last_json(nemoflow("build", "p.py", "--direct", "--json", cwd=tmp_path, check=True).stdout)
    conn = _ledger(tmp_path)
    with conn:
        lost = [row["key"] for row in conn.execute("select key from runs where step in ('s4', 's5')")]
        conn.execute("delete from runs where step = 's5'")  # never committed at all
        conn.execute("update runs set status = 'running', ended = null where step = 's4'")  # its end lost
        conn.execute("delete from artifacts where key in (?, ?)", lost)
        conn.execute(
            "update experiments set status = 'running', pid = ? where id = ?", [_dead_pid(), first["experiment_id"]]
        )
    conn.close()

    (tmp_path / "p.py").write_text("COUNT = 7\n" + CHAIN)  # one more step: the next build runs something
    second = last_json(nemoflow("build", "p.py", "--direct", "--json", cwd=tmp_path, check=True).stdout)
    assert [s["name"] for s in second["ran"]] == ["s6"]

    _assert_every_target_has_its_run(tmp_path)
    conn = _ledger(tmp_path)
    try:
        restored = conn.execute("select step, details, started, ended from runs where step in ('s4', 's5')").fetchall()
        status = conn.execute("select status from experiments where id = ?", [first["experiment_id"]]).fetchone()
    finally:
        conn.close()
    assert sorted(row["step"] for row in restored) == ["s4", "s5"]
    assert all(json.loads(row["details"]) == {"recovered_from": "manifest"} for row in restored)
    assert all(row["started"] <= row["ended"] for row in restored)
    assert status["status"] == "interrupted"


def _built_then_lost_run_of_s1(folder: Path, pid: int) -> Path:
    """A 2-step build whose run of s1 is gone from the ledger and which looks still running as ``pid``;
    the output file of s1."""
    (folder / "p.py").write_text("COUNT = 2\n" + CHAIN)
    first = last_json(nemoflow("build", "p.py", "--direct", "--json", cwd=folder, check=True).stdout)
    conn = _ledger(folder)
    with conn:
        conn.execute("delete from runs where step = 's1'")
        conn.execute("update experiments set status = 'running', pid = ? where id = ?", [pid, first["experiment_id"]])
    conn.close()
    return next((folder / "targets" / "s1").glob("*/out.txt"))


def test_audit_mends_the_ledger_too(tmp_path: Path) -> None:
    out = _built_then_lost_run_of_s1(tmp_path, _dead_pid())
    report = last_json(nemoflow("audit", str(out), "--json", cwd=tmp_path, check=True).stdout)
    assert report["ok"] is True
    assert report["chain"][0]["run"]["id"] == json.loads((out.parent / "nemoflow.json").read_text())["run_id"]


def test_a_running_build_is_left_alone(tmp_path: Path) -> None:
    """Only builds whose process is gone are mended: a live one may still commit its runs."""
    out = _built_then_lost_run_of_s1(tmp_path, os.getpid())
    nemoflow("audit", str(out), "--json", cwd=tmp_path)
    conn = _ledger(tmp_path)
    try:
        assert conn.execute("select count(*) from runs where step = 's1'").fetchone()[0] == 0
        assert conn.execute("select status from experiments").fetchone()[0] == "running"
    finally:
        conn.close()


def test_kill_9_of_an_in_process_build_leaves_a_ledger_the_next_build_makes_whole(tmp_path: Path) -> None:
    """A real SIGKILL while a direct build runs: whatever the writer had not committed, the next
    build ends with a run in the ledger for every published target."""
    gate, marker = tmp_path / "gate", tmp_path / "marker"
    header = f"COUNT = 300\nGATE = {str(gate)!r}\nMARKER = {str(marker)!r}\n"
    (tmp_path / "p.py").write_text(header + GATED)
    gate.write_text("closed")
    kill_build_once_started(["p.py", "--direct"], tmp_path, marker, timeout=120)
    assert len(_manifests(tmp_path)) == 300

    gate.unlink()
    result = last_json(nemoflow("build", "p.py", "--direct", "--json", cwd=tmp_path, check=True).stdout)
    assert [s["name"] for s in result["ran"]] == ["gated"]
    _assert_every_target_has_its_run(tmp_path)
    conn = _ledger(tmp_path)
    try:
        statuses = [row[0] for row in conn.execute("select status from experiments order by created")]
    finally:
        conn.close()
    assert statuses == ["interrupted", "succeeded"]
