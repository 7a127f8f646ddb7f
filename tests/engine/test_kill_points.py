"""kill -9 of a build at hypothesis-chosen moments, in each mode (-j 1, --direct, -j 4): 30 kill points.

After every kill: the ledger passes ``PRAGMA integrity_check``, every published target matches its
manifest (each file's sha256 and size, and the content its upstream outputs imply), no process of
the killed build is left, and a resume runs exactly the steps that were not published; then
everything is published and a further build runs nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import last_json, names, nemoflow, running

DAG = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": ["d"], "f": ["d"], "g": ["e", "f"], "h": ["g", "c"]}

PIPELINE = textwrap.dedent("""
    import os, time
    from pathlib import Path
    import nemoflow

    DAG = DAG_HERE

    def step(tag: str, upstream: list, pause: float) -> str:
        Path(PIDS, f"{tag}-{os.getpid()}").write_text(str(os.getppid()))  # the step and its parent (a worker)
        time.sleep(pause)
        text = tag + "(" + ",".join(Path(u).read_text() for u in upstream) + ")"
        (nemoflow.output_dir() / "out.txt").write_text(text)
        return tag

    def pipeline():
        exp = nemoflow.Experiment("kill-points")
        made = {}
        for i, (name, ups) in enumerate(DAG.items()):
            config = nemoflow.Partial(step, tag=name, upstream=[made[u].output("out.txt") for u in ups],
                                      pause=0.04 + 0.01 * (i % 3))
            made[name] = exp.add(config, name=name)
        return exp
""")

# About how long a whole build takes in each mode on a 2-core machine (the kill moments span it).
MODES = {"-j 1": ((), 1.9), "--direct": (("--direct",), 1.1), "-j 4": (("-j", "4"), 1.6)}


def _expected(step: str) -> str:
    return step + "(" + ",".join(_expected(u) for u in DAG[step]) + ")"




def _published(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for step in DAG:
        targets = [p for p in (folder / "targets" / step).glob("*") if (p / "nemoflow.json").exists()]
        assert len(targets) <= 1, f"{step} published twice: {targets}"
        if targets:
            found[step] = targets[0]
    return found


def _check_target(step: str, target: Path) -> None:
    manifest = json.loads((target / "nemoflow.json").read_text())
    assert manifest["step"] == step
    listed = {entry["path"] for entry in manifest["files"]}
    assert "out.txt" in listed, f"{step}'s manifest does not list out.txt: {sorted(listed)}"
    for entry in manifest["files"]:
        path = target / entry["path"]
        assert path.is_file(), f"{step}: {entry['path']} is in the manifest but missing"
        data = path.read_bytes()
        assert len(data) == entry["size"], f"{step}: {entry['path']} has {len(data)} bytes, not {entry['size']}"
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], f"{step}: {entry['path']} changed"
    assert (target / "out.txt").read_text() == _expected(step)


def _check_ledger(folder: Path) -> None:
    ledger = folder / "targets" / "ledger.db"
    if not ledger.exists():
        return
    conn = sqlite3.connect(ledger)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()


def _kill_after(folder: Path, options: tuple[str, ...], delay: float) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NEMOFLOW_STORE"}
    build = subprocess.Popen(
        [sys.executable, "-m", "nemoflow.cli", "build", "p.py", *options],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(delay)
        if build.poll() is None:
            os.kill(build.pid, signal.SIGKILL)
        build.wait(timeout=30)
    finally:
        if build.poll() is None:  # only the build this test started, by its pid
            build.kill()
            build.wait()


def _no_process_left(folder: Path) -> None:
    pids = set()
    for record in (folder / "pids").iterdir():
        pids.add(int(record.name.rsplit("-", 1)[1]))
        pids.add(int(record.read_text()))
    pids.discard(os.getpid())
    deadline = time.time() + 5
    while any(running(pid) for pid in pids) and time.time() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in pids if running(pid)], "a step or worker outlived its killed build"


@pytest.mark.parametrize("mode", list(MODES))
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(moment=st.floats(0.0, 1.0))
def test_kill_9_at_any_moment_then_resume_runs_exactly_the_unpublished_steps(mode: str, moment: float) -> None:
    options, duration = MODES[mode]
    delay = moment * duration  # from before the first step starts to about the build's end
    with tempfile.TemporaryDirectory(prefix="kill-points-") as tmp:
        folder = Path(tmp)
        (folder / "pids").mkdir()
        source = PIPELINE.replace("DAG_HERE", repr(DAG)).replace("PIDS", repr(str(folder / "pids")))
        (folder / "p.py").write_text(source)

        _kill_after(folder, options, delay)
        _no_process_left(folder)
        time.sleep(0.3)  # a surviving worker would publish by now

        _check_ledger(folder)
        published = _published(folder)
        for step, target in published.items():
            _check_target(step, target)

        resumed = nemoflow("build", "p.py", *options, "--json", cwd=folder)
        assert resumed.returncode == 0, f"resume after a kill at {delay:.3f}s exited {resumed.returncode}\n" + (
            resumed.stdout + resumed.stderr
        )
        result = last_json(resumed.stdout)
        assert names(result["ran"]) == set(DAG) - set(published), (
            f"killed at {delay:.3f}s with {sorted(published)} published: the resume ran {sorted(names(result['ran']))}"
        )
        assert not result.get("failed")

        _check_ledger(folder)
        final = _published(folder)
        assert set(final) == set(DAG)
        for step in published:  # what was published stays as it was
            assert final[step] == published[step]
        for step, target in final.items():
            _check_target(step, target)

        again = last_json(nemoflow("build", "p.py", *options, "--json", cwd=folder, check=True).stdout)
        assert names(again["ran"]) == set()
