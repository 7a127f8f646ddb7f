"""Ctrl-C (to the whole process group, as a terminal sends it) or SIGINT to the build alone, with -j 4:
the build stops every worker and step, exits 130 with one line, and leaves every run in a final state."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers import running

PARALLEL = textwrap.dedent("""
    import os, time
    from pathlib import Path
    import nemoflow

    def slow(i: int, folder: str) -> int:
        Path(folder, f"started-{i}").write_text(f"{os.getpid()} {os.getppid()}")
        time.sleep(3)
        (nemoflow.output_dir() / "out.txt").write_text(str(i))
        return i

    def pipeline():
        exp = nemoflow.Experiment("interrupted")
        for i in range(8):
            exp.add(nemoflow.Partial(slow, i=i, folder=FOLDER), name=f"s{i}")
        return exp
""")


@pytest.mark.parametrize("trial", range(3))
@pytest.mark.parametrize("whom", ["process group", "build only"])
def test_an_interrupt_of_a_j4_build_stops_everything_and_records_it(tmp_path: Path, whom: str, trial: int) -> None:
    (tmp_path / "p.py").write_text(PARALLEL.replace("FOLDER", repr(str(tmp_path))))
    build = subprocess.Popen(
        [sys.executable, "-m", "nemoflow.cli", "build", "p.py", "-j", "4"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell job is
    )
    try:
        deadline = time.time() + 60
        while len(list(tmp_path.glob("started-*"))) < 4:
            assert time.time() < deadline and build.poll() is None, "the steps never started"
            time.sleep(0.02)
        time.sleep(0.1 * trial)
        if whom == "process group":
            os.killpg(build.pid, signal.SIGINT)
        else:
            os.kill(build.pid, signal.SIGINT)  # what `timeout -s INT` and supervisors send
        _, err = build.communicate(timeout=30)
    finally:
        if build.poll() is None:
            build.kill()
    assert build.returncode == 130, err
    assert err.strip().splitlines() == [f"store: {tmp_path / 'targets'}", "nemoflow: interrupted"], err
    pids = {int(pid) for p in tmp_path.glob("started-*") for pid in p.read_text().split()}
    deadline = time.time() + 5
    while any(running(pid) for pid in pids) and time.time() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in pids if running(pid)], "a step or worker outlived the interrupted build"
    time.sleep(3.2)  # a survivor would have published by now
    assert not list((tmp_path / "targets").glob("s*/*/nemoflow.json")), "nothing is published after the interrupt"
    db = sqlite3.connect(tmp_path / "targets" / "ledger.db")
    assert db.execute("select status from experiments").fetchall() == [("interrupted",)]
    assert {s for (s,) in db.execute("select status from runs")} <= {"interrupted"}
