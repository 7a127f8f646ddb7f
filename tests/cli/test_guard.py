"""A store that breaks under a command (damaged ledger, read-only, disk full): one line naming the path and
what to do, exit code 2 (1 for a failed step), no run left ``running``, and ``--json`` still one object."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import last_json, nemoflow

PIPELINE = """
import nemoflow


def make(n: int = 1) -> int:
    with open(nemoflow.output_dir() / "x.bin", "wb") as f:
        f.write(b"x" * n)
    return n


def pipeline():
    exp = nemoflow.Experiment("tiny")
    exp.add(nemoflow.Partial(make), name="a")
    return exp
"""

# Root ignores file modes; without these capabilities (in the bounding set, so they are gone after exec)
# it obeys them like any user. Python itself lives under /root here, which `nobody` could not even run.
NO_OVERRIDE = ["--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]


@pytest.fixture
def built(tmp_path: Path) -> Path:
    (tmp_path / "p.py").write_text(PIPELINE)
    nemoflow("build", "p.py", "--direct", cwd=tmp_path, check=True)
    return tmp_path


def run_unprivileged(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``nemoflow ARGS`` obeying file modes even when the tests run as root."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv (util-linux) is missing: root would write to the read-only store anyway")
        prefix = [setpriv, *NO_OVERRIDE]
    env = {k: v for k, v in os.environ.items() if k != "NEMOFLOW_STORE"}
    proc = subprocess.run(
        [*prefix, sys.executable, "-m", "nemoflow.cli", *args],
        cwd=cwd,
        env={**env, "COLUMNS": "400"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if prefix and "setpriv:" in proc.stderr:
        pytest.skip(f"setpriv could not drop root's file-mode override: {proc.stderr.strip()}")
    return proc


@pytest.fixture
def read_only() -> Iterator[list[Path]]:
    """Folders made read-only (chmod -R a-w) by the test; writable again afterwards, so they can be removed."""
    folders: list[Path] = []
    yield folders
    for folder in folders:
        subprocess.run(["chmod", "-R", "u+w", str(folder)], check=True)


def make_read_only(folder: Path, read_only: list[Path]) -> None:
    read_only.append(folder)
    subprocess.run(["chmod", "-R", "a-w", str(folder)], check=True)


def runs(folder: Path, store: str = "targets") -> list[tuple[str, str, str | None]]:
    with contextlib.closing(sqlite3.connect(folder / store / "ledger.db")) as db:
        return db.execute("select step, status, error from runs order by started").fetchall()


def one_error_line(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_a_damaged_ledger_is_named_with_what_to_do(built: Path):
    ledger = built / "targets" / "ledger.db"
    ledger.write_bytes(os.urandom(4096))
    for args in (("build", "p.py", "a.n=3"), ("status", "p.py"), ("experiments", "list")):
        proc = nemoflow(*args, "--json", cwd=built)
        assert proc.returncode == 2, proc.stderr
        one_error_line(proc, str(ledger), "file is not a database", "mv ")
        assert "not a database" in last_json(proc.stdout)["error"]
    assert not (built / "targets" / "a").joinpath("..", ".failed").exists()  # nothing ran


def test_a_read_only_store_refuses_a_build_in_one_line_and_still_shows_status(built: Path, read_only: list[Path]):
    make_read_only(built / "targets", read_only)
    proc = run_unprivileged("build", "p.py", "a.n=7", "--json", cwd=built)
    assert proc.returncode == 2, proc.stderr
    one_error_line(proc, "ledger.db", "readonly", "chmod -R u+w")
    assert last_json(proc.stdout)["exit_code"] == 2
    status = run_unprivileged("status", "p.py", "--json", cwd=built)  # reading needs no write
    assert status.returncode == 0, status.stderr
    assert [row["state"] for row in json.loads(status.stdout)] == ["done"]
    assert [r[1] for r in runs(built)] == ["succeeded"]  # the ledger is as it was


@pytest.mark.parametrize("how", [[], ["--direct"], ["-j", "2"]])
def test_a_read_only_step_folder_fails_the_step_with_its_path(built: Path, read_only: list[Path], how: list[str]):
    make_read_only(built / "targets" / "a", read_only)
    proc = run_unprivileged("build", "p.py", "a.n=7", "--json", *how, cwd=built)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    failed = last_json(proc.stdout)["failed"]
    assert [f["name"] for f in failed] == ["a"]
    assert str(built / "targets" / "a") in failed[0]["error"] and "Permission denied" in failed[0]["error"]
    assert "luigi did not hand it out" not in failed[0]["error"]
    last = runs(built)[-1]
    assert last[:2] == ("a", "failed") and "chmod -R u+w" in (last[2] or "")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs: a disk that fills up."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root, CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=True)  # lazy: a stray open file cannot keep it


def test_a_full_disk_fails_the_step_and_the_ledger_stays_right(tmp_path: Path, small_disk: Path):
    (tmp_path / "p.py").write_text(PIPELINE)
    store = str(small_disk / "targets")
    proc = nemoflow("build", "p.py", "a.n=3000000", "--store", store, "--json", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    result = last_json(proc.stdout)
    assert [f["name"] for f in result["failed"]] == ["a"]
    assert "disk was full" in result["failed"][0]["error"]
    with contextlib.closing(sqlite3.connect(small_disk / "targets" / "ledger.db")) as db:
        assert db.execute("select status from runs").fetchall() == [("failed",)]  # not left "running"
        assert db.execute("select status from experiments").fetchall() == [("failed",)]
    again = nemoflow("build", "p.py", "a.n=10", "--store", store, "--json", cwd=tmp_path)  # room was made
    assert again.returncode == 0, again.stderr
