"""A build killed with SIGKILL mid-step re-runs to completion and redoes only what had not finished."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

from helpers import kill_build_once_started, last_json, names, nemoflow, running

PIPELINE = textwrap.dedent("""
    import os, time
    from pathlib import Path
    import nemoflow

    def quick(tag: str) -> str:
        (nemoflow.output_dir() / "out.txt").write_text(tag)
        return tag

    def slow(upstream: str, gate: str, marker: str) -> str:
        Path(marker).write_text(str(os.getpid()))
        while Path(gate).exists():      # held open by the test
            time.sleep(0.05)
        (nemoflow.output_dir() / "out.txt").write_text("slow after " + open(upstream).read())
        return "slow"

    def pipeline():
        exp = nemoflow.Experiment("killed")
        a = exp.add(nemoflow.Partial(quick, tag="a"), name="a")
        b = exp.add(nemoflow.Partial(slow, upstream=a.output("out.txt"), gate=GATE, marker=MARKER), name="b")
        exp.add(nemoflow.Partial(quick, tag="d"), name="d", dependencies=[b])
        return exp
""")


def _complete(folder: Path, step: str) -> bool:
    return any((folder / "targets" / step).glob("*/nemoflow.json"))


def test_kill_9_mid_step_then_rebuild(tmp_path: Path) -> None:
    gate, marker = tmp_path / "gate", tmp_path / "marker"
    (tmp_path / "p.py").write_text(f"GATE = {str(gate)!r}\nMARKER = {str(marker)!r}\n" + PIPELINE)
    gate.write_text("closed")
    kill_build_once_started(["p.py"], tmp_path, marker)
    step_pid = int(marker.read_text())
    _wait_gone(step_pid)  # the step dies with its build

    assert _complete(tmp_path, "a")
    assert not _complete(tmp_path, "b"), "a killed step must not look complete"
    assert list((tmp_path / "targets" / ".tmp").iterdir()), "the interrupted workspace is left aside"
    status = last_json(nemoflow("status", "p.py", "--json", cwd=tmp_path, check=True).stdout)
    assert {r["name"]: r["state"] for r in status} == {"a": "done", "b": "interrupted", "d": "pending"}

    gate.unlink()
    result = last_json(nemoflow("build", "p.py", "--json", cwd=tmp_path, check=True).stdout)
    assert names(result["ran"]) == {"b", "d"}
    assert names(result["skipped"]) == {"a"}
    out = next((tmp_path / "targets" / "b").glob("*/out.txt"))
    assert out.read_text() == "slow after a"
    assert not list((tmp_path / "targets" / ".tmp").iterdir()), "the next build sweeps the killed build's workspace"


def _wait_gone(pid: int) -> None:
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"step process {pid} outlived its killed build")


PARALLEL = textwrap.dedent("""
    import os, time
    from pathlib import Path
    import nemoflow

    def slow(i: int, folder: str) -> int:
        Path(folder, f"started-{i}").write_text(f"{os.getpid()} {os.getppid()}")
        time.sleep(2.5)
        (nemoflow.output_dir() / "out.txt").write_text(str(i))
        return i

    def pipeline():
        exp = nemoflow.Experiment("parallel")
        for i in range(4):
            exp.add(nemoflow.Partial(slow, i=i, folder=FOLDER), name=f"s{i}")
        return exp
""")




def test_kill_9_of_a_j4_build_leaves_no_worker_or_step_running_and_publishes_nothing_more(tmp_path: Path) -> None:
    """luigi forks a worker per running step with -j N: a SIGKILL of the build must take them along."""
    (tmp_path / "p.py").write_text(PARALLEL.replace("FOLDER", repr(str(tmp_path))))
    kill_build_once_started(["p.py", "-j", "4"], tmp_path, tmp_path / "started-0")
    time.sleep(0.5)  # the other workers had time to start too
    started = [p.read_text().split() for p in tmp_path.glob("started-*")]
    pids = {int(pid) for pair in started for pid in pair}
    deadline = time.time() + 5
    while any(running(pid) for pid in pids) and time.time() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in pids if running(pid)], "steps or luigi workers outlived their killed build"
    time.sleep(3)  # longer than a step takes: a surviving worker would publish by now
    assert not [s for s in ("s0", "s1", "s2", "s3") if _complete(tmp_path, s)], "a killed build published targets"
    rebuilt = last_json(nemoflow("build", "p.py", "-j", "4", "--json", cwd=tmp_path, check=True).stdout)
    assert names(rebuilt["ran"]) == {"s0", "s1", "s2", "s3"}
