"""Two builds of one pipeline in one workspace: each step runs once, whoever asks, and both builds succeed."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

PIPELINE = textwrap.dedent("""
    import os, time
    from pathlib import Path
    import nemoflow

    def work(i: int, folder: str) -> int:
        Path(folder, f"started-{i}-{os.getpid()}").touch()
        time.sleep(0.3)
        (nemoflow.output_dir() / "out.txt").write_text(str(i))
        return i

    def pipeline():
        exp = nemoflow.Experiment("shared")
        for i in range(N):
            exp.add(nemoflow.Partial(work, i=i, folder=FOLDER), name=f"s{i}")
        return exp
""")


def _start(folder: Path, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "nemoflow.cli", "build", "p.py", "--json", *options],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(proc: subprocess.Popen[str]) -> dict:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _succeeded_runs(folder: Path) -> Counter[str]:
    db = sqlite3.connect(folder / "targets" / "ledger.db")
    return Counter(step for (step,) in db.execute("select step from runs where status = 'succeeded'"))


@pytest.mark.parametrize("options", [(), ("-j", "4"), ("--direct",)], ids=["local", "-j 4", "--direct"])
def test_two_builds_started_together_run_each_step_once(tmp_path: Path, options: tuple[str, ...]) -> None:
    n = 12
    (tmp_path / "p.py").write_text(PIPELINE.replace("N)", f"{n})").replace("FOLDER", repr(str(tmp_path))))
    first = _start(tmp_path, *options)
    time.sleep(0.4)
    second = _start(tmp_path, *options)
    a, b = _result(first), _result(second)
    assert _succeeded_runs(tmp_path) == Counter({f"s{i}": 1 for i in range(n)}), "each step ran exactly once"
    assert len(list(tmp_path.glob("started-*"))) == n
    ran = [o["name"] for o in a["ran"] + b["ran"]]
    assert sorted(ran) == sorted(f"s{i}" for i in range(n)), "between them the builds claim each run once"
    for result in (a, b):
        assert sorted(o["name"] for o in result["ran"] + result["skipped"]) == sorted(f"s{i}" for i in range(n))
        assert {o["reason"] for o in result["skipped"]} <= {"up to date", "built by another build"}
    assert any(o["reason"] == "built by another build" for o in a["skipped"] + b["skipped"]), "they overlapped"


def test_a_step_whose_builder_is_killed_is_taken_over_by_the_waiting_build(tmp_path: Path) -> None:
    n = 3
    (tmp_path / "p.py").write_text(
        PIPELINE.replace("N)", f"{n})").replace("time.sleep(0.3)", "time.sleep(3)").replace(
            "FOLDER", repr(str(tmp_path))
        )
    )
    first = _start(tmp_path)
    deadline = time.time() + 30
    while not list(tmp_path.glob("started-0-*")):
        assert time.time() < deadline and first.poll() is None
        time.sleep(0.02)
    second = _start(tmp_path)
    time.sleep(1.0)  # the second build is waiting for s0's lock now
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    b = _result(second)
    assert sorted(o["name"] for o in b["ran"]) == [f"s{i}" for i in range(n)]
    assert _succeeded_runs(tmp_path) == Counter({f"s{i}": 1 for i in range(n)})
