"""luigi's central scheduler: a real luigid, `nemoflow worker` per executor, `nemoflow build --scheduler`."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nemoflow.luigi.luigid import LuigidSettings, luigid_command, luigid_env, write_config

from helpers import last_json, names, nemoflow

DISCONNECT_DELAY = 3.0  # seconds: luigid's worker_disconnect_delay in these tests
WAIT = 90.0  # seconds: the most any process in these tests may take

PIPELINE = textwrap.dedent("""
    import os, time
    import nemoflow


    class OtherExecutor(nemoflow.LocalExecutor):
        '''A second executor kind (registry name "other") that runs like the local one.'''


    def make(tag: str, up: str | None = None, pause: float = 0.0) -> str:
        time.sleep(pause)
        text = tag + ("<" + open(up).read() if up else "")
        (nemoflow.output_dir() / "out.txt").write_text(text)
        return text


    def pipeline():
        exp = nemoflow.Experiment("central")
        other = OtherExecutor()
        a = exp.add(nemoflow.Partial(make, tag="a", pause=PAUSE), name="a")
        b = exp.add(nemoflow.Partial(make, tag="b", up=a.output("out.txt"), pause=PAUSE), name="b", executor=other)
        exp.add(nemoflow.Partial(make, tag="c", up=b.output("out.txt"), pause=PAUSE), name="c")
        d = exp.add(nemoflow.Partial(make, tag="d", up=a.output("out.txt"), pause=PAUSE), name="d", executor=other)
        exp.add(nemoflow.Partial(make, tag="e", up=d.output("out.txt"), pause=PAUSE), name="e")
        return exp
""")
STEPS = {"a": "local", "b": "other", "c": "local", "d": "other", "e": "local"}

KILLED = textwrap.dedent("""
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
        exp.add(nemoflow.Partial(slow, upstream=a.output("out.txt"), gate=GATE, marker=MARKER), name="s")
        return exp
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(url: str, method: str, data: dict[str, Any] | None = None) -> Any:
    query = "?data=" + urllib.parse.quote(json.dumps(data)) if data is not None else ""
    with urllib.request.urlopen(f"{url}/api/{method}{query}", timeout=5) as response:
        return json.loads(response.read())["response"]


def _wait_answers(url: str, proc: subprocess.Popen[Any], timeout: float = 20) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            _api(url, "task_list", {"status": "DONE"})
            return
        except OSError:
            assert proc.poll() is None, f"luigid exited with {proc.returncode}"
            assert time.time() < deadline, f"luigid did not answer at {url} within {timeout}s"
            time.sleep(0.05)


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def luigid(tmp_path: Path) -> Iterator[str]:
    """A real luigid on a free loopback port (its own folder, pinned config); yields its URL."""
    folder = tmp_path / "luigid"
    config = write_config(folder, LuigidSettings(worker_disconnect_delay=DISCONNECT_DELAY, retry_delay=1))
    port = _free_port()
    log = (folder / "luigid.out").open("w")
    proc = subprocess.Popen(
        luigid_command(folder, "127.0.0.1", port),
        cwd=folder,
        env=luigid_env(config),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_answers(url, proc)
        yield url
    finally:
        _stop(proc)
        log.close()


def _start(folder: Path, *args: str, name: str) -> subprocess.Popen[str]:
    """``nemoflow ARGS`` in the background; its output goes to ``<name>.out`` / ``<name>.err``."""
    env = {k: v for k, v in os.environ.items() if k != "NEMOFLOW_STORE"}
    return subprocess.Popen(
        [sys.executable, "-m", "nemoflow.cli", *args],
        cwd=folder,
        env={**env, "COLUMNS": "200"},
        stdout=(folder / f"{name}.out").open("w"),
        stderr=(folder / f"{name}.err").open("w"),
        text=True,
    )


def _finish(proc: subprocess.Popen[str], folder: Path, name: str, timeout: float = WAIT) -> dict[str, Any]:
    """Wait for a process of :func:`_start`; it must succeed. Returns its last JSON line."""
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(
            f"{name} still running after {timeout}s:\n{(folder / f'{name}.err').read_text()}"
        ) from None
    out, err = (folder / f"{name}.out").read_text(), (folder / f"{name}.err").read_text()
    assert code == 0, f"{name} exited {code}\n{out}\n{err}"
    return last_json(out)


def _runs(folder: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(folder / "targets" / "ledger.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("select * from runs order by started")]


def _keys(folder: Path) -> dict[str, str]:
    dry = last_json(nemoflow("build", "p.py", "-n", "--json", cwd=folder, check=True).stdout)
    return {s["name"]: s["key"] for s in dry["steps"]}


def _pipeline(folder: Path, pause: float = 0.0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "p.py").write_text(f"PAUSE = {pause!r}\n" + PIPELINE)


def _two_workers_and_a_registering_build(folder: Path, url: str, *, build_first: bool = False) -> dict[str, int]:
    """Workers for `local` and `other`, and `build --scheduler --no-run` (started first, or last).

    Returns each worker's pid. The registering build must have waited for the workers.
    """
    args = ("build", "p.py", "--scheduler", url, "--no-run", "--timeout", "60", "--json")
    build = _start(folder, *args, name="build") if build_first else None
    if build is not None:  # every step registered, none runnable yet: no worker has registered it
        deadline = time.time() + WAIT
        while len(_api(url, "task_list", {"status": "PENDING"})) < len(STEPS):
            assert build.poll() is None and time.time() < deadline, "the build did not register the steps"
            time.sleep(0.1)
        assert all(t["workers"] == [] for t in _api(url, "task_list", {"status": "PENDING"}).values())
    workers = {
        executor: _start(folder, "worker", "p.py", "--executor", executor, "--scheduler", url, "--json", name=executor)
        for executor in ("local", "other")
    }
    try:
        build = build or _start(folder, *args, name="build")
        result = _finish(build, folder, "build")
        assert result["failed"] == []
        assert names(result["ran"]) | names(result["skipped"]) == set(STEPS)
        assert result["ran"], "the build waited for the workers"
        for executor, proc in workers.items():
            _finish(proc, folder, executor)
    finally:
        for proc in [*workers.values(), build]:
            if proc is not None:
                _stop(proc)
    return {executor: proc.pid for executor, proc in workers.items()}


def test_each_step_runs_on_a_worker_of_its_executor(luigid: str, tmp_path: Path) -> None:
    central, local = tmp_path / "central", tmp_path / "local"
    _pipeline(central, pause=0.5)
    _pipeline(local, pause=0.5)
    pids = _two_workers_and_a_registering_build(central, luigid)

    runs = _runs(central)
    assert sorted(r["step"] for r in runs) == sorted(STEPS), "each step ran exactly once"
    for run in runs:
        assert run["status"] == "succeeded"
        assert run["executor"] == STEPS[run["step"]]
        assert run["pid"] == pids[STEPS[run["step"]]], f"{run['step']} ran on the wrong worker"
        assert run["worker"] == f"{socket.gethostname()}:{pids[STEPS[run['step']]]}"
        assert run["host"] == socket.gethostname()

    nemoflow("build", "p.py", cwd=local, check=True)
    assert _keys(central) == _keys(local)
    for step in STEPS:
        [built] = (central / "targets" / step).glob("*/out.txt")
        [reference] = (local / "targets" / step).glob("*/out.txt")
        assert built.read_text() == reference.read_text()
    again = last_json(nemoflow("build", "p.py", "--json", cwd=central, check=True).stdout)
    assert again["ran"] == [] and names(again["skipped"]) == set(STEPS)


def test_the_json_api_agrees_with_the_ledger(luigid: str, tmp_path: Path) -> None:
    folder = tmp_path / "central"
    _pipeline(folder)
    _two_workers_and_a_registering_build(folder, luigid, build_first=True)
    keys = _keys(folder)
    ledger = {r["step"]: r["status"] for r in _runs(folder)}  # the latest run of each step
    by_status = {status: _api(luigid, "task_list", {"status": status}) for status in ("DONE", "PENDING", "RUNNING")}
    by_status["FAILED"] = _api(luigid, "task_list", {"status": "FAILED"})
    api = {task["params"]["step"]: (status, task) for status, tasks in by_status.items() for task in tasks.values()}
    assert set(api) == set(STEPS), "every step is listed by its step name"
    for step, (status, task) in api.items():
        assert task["name"] == step, "each task's luigi family is its step's name"
        assert task["params"]["key"] == keys[step]
        assert (status == "DONE") == (ledger[step] == "succeeded"), f"{step}: luigid {status}, ledger {ledger[step]}"
        assert status == "DONE"


def test_two_builds_at_once_run_each_step_once(luigid: str, tmp_path: Path) -> None:
    folder = tmp_path / "central"
    _pipeline(folder, pause=0.3)
    builds = [
        _start(folder, "build", "p.py", "--scheduler", luigid, "--timeout", "60", "--json", name=f"b{i}")
        for i in range(2)
    ]
    try:
        results = [_finish(proc, folder, f"b{i}") for i, proc in enumerate(builds)]
    finally:
        for proc in builds:
            _stop(proc)
    for result in results:
        assert result["failed"] == []
    runs = _runs(folder)
    assert sorted(r["step"] for r in runs) == sorted(STEPS), f"a step ran twice: {[r['step'] for r in runs]}"
    assert {r["status"] for r in runs} == {"succeeded"}
    assert {r["pid"] for r in runs} == {proc.pid for proc in builds}, "both builds ran steps (luigid shared them out)"


def test_a_killed_worker_step_is_finished_once_by_another_worker(luigid: str, tmp_path: Path) -> None:
    folder = tmp_path / "central"
    folder.mkdir()
    gate, marker = tmp_path / "gate", tmp_path / "marker"
    (folder / "p.py").write_text(f"GATE = {str(gate)!r}\nMARKER = {str(marker)!r}\n" + KILLED)
    gate.write_text("closed")
    args = ("worker", "p.py", "--executor", "local", "--scheduler", luigid, "--json", "--timeout", "60")
    first = _start(folder, *args, name="first")
    try:
        deadline = time.time() + WAIT
        while not marker.exists():
            assert time.time() < deadline, "step s never started"
            assert first.poll() is None, "the first worker ended before step s started"
            time.sleep(0.05)
        step_pid = int(marker.read_text())
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        _stop(first)
    _wait_gone(step_pid)  # the step dies with its worker
    assert not list((folder / "targets" / "s").glob("*/nemoflow.json")), "a killed step must not look complete"

    gate.unlink()
    started = time.time()
    second = _start(folder, *args, name="second")
    try:
        result = _finish(second, folder, "second")
    finally:
        _stop(second)
    assert names(result["ran"]) == {"s"}
    assert time.time() - started >= DISCONNECT_DELAY - 0.5, "luigid handed the step out before the worker was gone"
    runs = [r for r in _runs(folder) if r["step"] == "s"]
    assert [r["pid"] for r in runs] == [first.pid, second.pid]
    assert [r["status"] for r in runs] == ["running", "succeeded"], "the killed run stays as it was; one success"
    [target] = (folder / "targets" / "s").iterdir()
    assert (target / "nemoflow.json").is_file()
    assert (target / "out.txt").read_text() == "slow after a"


def _wait_gone(pid: int, timeout: float = 10) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still alive")


def test_nemoflow_scheduler_runs_luigid_with_its_state_under_the_store(tmp_path: Path) -> None:
    port = _free_port()
    proc = _start(
        tmp_path,
        "scheduler",
        "--port",
        str(port),
        "--store",
        "targets",
        "--worker-disconnect-delay",
        "7",
        name="scheduler",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_answers(url, proc)
        folder = tmp_path / "targets" / ".luigid"
        config = (folder / "luigid.cfg").read_text()
        assert "worker_disconnect_delay = 7" in config
        assert f"state_path = {folder / 'state.pickle'}" in config
        assert "[task_history]" not in config or "sqlite:///" in config
        assert (folder / "logs").is_dir()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        _stop(proc)
    assert (folder / "state.pickle").is_file(), "luigid saved its state on the way out"
    assert "warning" not in (tmp_path / "scheduler.err").read_text()


def test_luigid_goes_with_a_killed_nemoflow_scheduler(tmp_path: Path) -> None:
    """kill -9 of `nemoflow scheduler` must not leave luigid running and listening."""
    port = _free_port()
    proc = _start(tmp_path, "scheduler", "--port", str(port), "--store", "targets", name="scheduler")
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_answers(url, proc)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert children, "nemoflow scheduler runs luigid as its child"
        proc.kill()
        proc.wait(timeout=10)
        for child in children:
            _wait_gone(int(child))
        with pytest.raises(OSError):
            _api(url, "task_list", {"status": "DONE"})
    finally:
        _stop(proc)


def test_a_non_loopback_host_is_warned_about(tmp_path: Path) -> None:
    # 192.0.2.1 (TEST-NET-1) is never this machine's: luigid cannot bind it and exits, after the warning
    proc = nemoflow(
        "scheduler", "--host", "192.0.2.1", "--port", str(_free_port()), "--store", "t", cwd=tmp_path, timeout=30
    )
    assert "no authentication" in proc.stderr and "reverse proxy" in proc.stderr
    assert proc.returncode != 0


def test_a_failed_step_ends_workers_and_build_with_its_error(luigid: str, tmp_path: Path) -> None:
    folder = tmp_path / "central"
    _pipeline(folder)
    pipeline = folder / "p.py"
    pipeline.write_text(
        pipeline.read_text().replace("text = tag + (", 'assert tag != "d", "d breaks"\n    text = tag + (')
    )
    workers = {
        executor: _start(
            folder, "worker", "p.py", "--executor", executor, "--scheduler", luigid, "--json", name=executor
        )
        for executor in ("local", "other")
    }
    try:
        build = nemoflow("build", "p.py", "--scheduler", luigid, "--no-run", "--timeout", "60", "--json", cwd=folder)
        codes = {executor: proc.wait(timeout=WAIT) for executor, proc in workers.items()}
    finally:
        for proc in workers.values():
            _stop(proc)
    assert build.returncode == 1
    failed = {o["name"]: o["error"] for o in last_json(build.stdout)["failed"]}
    assert set(failed) == {"d", "e"}
    assert "d breaks" in failed["d"] and failed["e"] == "not run: upstream d failed"
    assert codes == {"local": 1, "other": 1}  # each worker reports the failed (or blocked) steps it would run
    assert {r["step"]: r["status"] for r in _runs(folder)} == {
        "a": "succeeded",
        "b": "succeeded",
        "c": "succeeded",
        "d": "failed",
    }


def test_a_registering_build_without_workers_gives_up_after_its_timeout(luigid: str, tmp_path: Path) -> None:
    folder = tmp_path / "central"
    _pipeline(folder)
    started = time.time()
    build = nemoflow(
        "build", "p.py", "--scheduler", luigid, "--no-run", "--timeout", "2", "--json", cwd=folder, timeout=60
    )
    assert build.returncode == 1
    assert 2 <= time.time() - started < 30
    failed = last_json(build.stdout)["failed"]
    assert names(failed) == set(STEPS)
    assert all("timed out" in o["error"] for o in failed)
    tasks = _api(luigid, "task_list", {"status": "PENDING"})
    assert {t["params"]["step"] for t in tasks.values()} == set(STEPS), "the steps were registered"


def test_scheduler_options_are_checked(tmp_path: Path) -> None:
    _pipeline(tmp_path)
    no_run = nemoflow("build", "p.py", "--no-run", cwd=tmp_path)
    assert no_run.returncode != 0 and "--no-run needs --scheduler" in no_run.stderr
    port = _free_port()  # nothing listens there
    for args in (("build", "p.py"), ("worker", "p.py", "--executor", "local")):
        proc = nemoflow(*args, "--scheduler", f"http://127.0.0.1:{port}", cwd=tmp_path, timeout=60)
        assert proc.returncode != 0 and "no luigi scheduler answers" in proc.stderr, proc.stderr


def test_task_history_goes_to_sqlite_under_the_store_when_sqlalchemy_1_is_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nemoflow.luigi import luigid as central

    assert central._history_supported("1.4.54") and not central._history_supported("2.1.9")
    monkeypatch.setattr(central, "history_available", lambda: True)
    config = write_config(tmp_path / ".luigid").read_text()
    assert "record_task_history = true" in config
    assert f"db_connection = sqlite:///{tmp_path / '.luigid' / 'history.db'}" in config
    monkeypatch.setattr(central, "history_available", lambda: False)
    config = write_config(tmp_path / ".luigid").read_text()
    assert "record_task_history = false" in config and "[task_history]" not in config


GATED = textwrap.dedent("""
    import os, time
    from pathlib import Path
    import nemoflow

    def quick(tag: str, up: str | None = None) -> str:
        text = tag + ("<" + open(up).read() if up else "")
        (nemoflow.output_dir() / "out.txt").write_text(text)
        return text

    def gated(upstream: str, gate: str, marker: str) -> str:
        Path(marker).write_text(str(os.getpid()))
        while Path(gate).exists():      # held open by the test
            time.sleep(0.05)
        (nemoflow.output_dir() / "out.txt").write_text("g<" + open(upstream).read())
        return "g"

    def pipeline():
        exp = nemoflow.Experiment("restarted")
        a = exp.add(nemoflow.Partial(quick, tag="a"), name="a")
        g = exp.add(nemoflow.Partial(gated, upstream=a.output("out.txt"), gate=GATE, marker=MARKER), name="g")
        exp.add(nemoflow.Partial(quick, tag="z", up=g.output("out.txt")), name="z")
        return exp
""")


OUTAGE = 8.0  # seconds without luigid: longer than luigi's RPC retries would wait by themselves
# a worker silent for longer than worker_disconnect_delay counts as gone once luigid is back, and
# its running step is handed out again: in this test (as with the default 60 s) the outage is shorter
OUTAGE_DISCONNECT_DELAY = 30.0


def _start_luigid(folder: Path, port: int, log_name: str, disconnect_delay: float) -> subprocess.Popen[Any]:
    """luigid on ``port`` with its config, state and logs under ``folder``; answers when this returns."""
    config = write_config(folder, LuigidSettings(worker_disconnect_delay=disconnect_delay, retry_delay=1))
    with (folder / log_name).open("w") as log:
        proc = subprocess.Popen(
            luigid_command(folder, "127.0.0.1", port), cwd=folder, env=luigid_env(config), stdout=log, stderr=log
        )
    _wait_answers(f"http://127.0.0.1:{port}", proc)
    return proc


def test_a_restarted_luigid_with_its_state_lets_the_build_and_workers_finish(tmp_path: Path) -> None:
    folder, luigid_folder = tmp_path / "central", tmp_path / "luigid"
    folder.mkdir()
    gate, marker = tmp_path / "gate", tmp_path / "marker"
    (folder / "p.py").write_text(f"GATE = {str(gate)!r}\nMARKER = {str(marker)!r}\n" + GATED)
    gate.write_text("closed")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    first = _start_luigid(luigid_folder, port, "first.out", OUTAGE_DISCONNECT_DELAY)
    second = None
    args = ("--scheduler", url, "--json", "--timeout", "80")
    build = _start(folder, "build", "p.py", "--no-run", *args, name="build")
    worker = None
    try:
        deadline = time.time() + WAIT
        # the worker starts once the build has registered the steps: two processes opening a new
        # ledger at the same moment can meet "database is locked" (ledger.py's enable_wal)
        while len(_api(url, "task_list", {"status": "PENDING"})) < 3:
            assert build.poll() is None and time.time() < deadline, "the build did not register the steps"
            time.sleep(0.1)
        worker = _start(folder, "worker", "p.py", "--executor", "local", *args, name="worker")
        while not marker.exists():
            assert time.time() < deadline, "step g never started"
            assert worker.poll() is None and build.poll() is None, "the worker or the build ended before g started"
            time.sleep(0.05)
        state = luigid_folder / "state.pickle"
        assert not state.exists()
        first.terminate()  # SIGTERM: luigid writes its state file on the way out
        first.wait(timeout=30)
        assert state.is_file(), "luigid saved its state"
        time.sleep(OUTAGE)  # the build and the worker meet a scheduler that is gone, and retry
        second = _start_luigid(luigid_folder, port, "second.out", OUTAGE_DISCONNECT_DELAY)
        gate.unlink()
        result = _finish(build, folder, "build")
        worked = _finish(worker, folder, "worker")
        done = _api(url, "task_list", {"status": "DONE"})
    finally:
        for proc in (worker, build, first, second):
            if proc is not None:
                _stop(proc)
    assert result["failed"] == [] and names(result["ran"]) == {"a", "g", "z"}
    assert worked["failed"] == [] and names(worked["ran"]) == {"a", "g", "z"}
    runs = _runs(folder)
    assert sorted(r["step"] for r in runs) == ["a", "g", "z"], "each step ran exactly once"
    assert {r["status"] for r in runs} == {"succeeded"}
    assert {r["pid"] for r in runs} == {worker.pid}
    for step in ("a", "g", "z"):
        [target] = (folder / "targets" / step).iterdir()
        assert (target / "nemoflow.json").is_file()
    assert (next((folder / "targets" / "z").iterdir()) / "out.txt").read_text() == "z<g<a"
    assert {t["params"]["step"] for t in done.values()} == {"a", "g", "z"}, "the new luigid knows the steps are done"


FOUR = textwrap.dedent("""
    import time
    import nemoflow

    def step(tag: str) -> str:
        time.sleep(1.0)
        (nemoflow.output_dir() / "out.txt").write_text(tag)
        return tag

    def pipeline():
        exp = nemoflow.Experiment("capped")
        for tag in "pqrs":
            exp.add(nemoflow.Partial(step, tag=tag), name=tag)
        return exp
""")


def test_an_executor_resource_on_luigid_caps_its_steps_across_workers(tmp_path: Path) -> None:
    folder = tmp_path / "central"
    folder.mkdir()
    (folder / "p.py").write_text(FOUR)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start(
        tmp_path, "scheduler", "--port", str(port), "--store", "luigid-store", "--resource", "executor_local=1",
        name="scheduler",
    )  # fmt: skip
    args = ("worker", "p.py", "--executor", "local", "--scheduler", url, "--jobs", "2", "--json", "--timeout", "60")
    workers = []
    try:
        _wait_answers(url, proc)
        config = (tmp_path / "luigid-store" / ".luigid" / "luigid.cfg").read_text()
        assert "[resources]\nexecutor_local = 1\n" in config
        assert [(r["name"], r["num_total"]) for r in _api(url, "resource_list")] == [("executor_local", 1)]
        workers = [_start(folder, *args, name=f"w{i}") for i in range(2)]
        for i, worker in enumerate(workers):
            _finish(worker, folder, f"w{i}")
    finally:
        for p in (*workers, proc):
            _stop(p)
    runs = _runs(folder)
    assert sorted(r["step"] for r in runs) == list("pqrs"), "each step ran exactly once"
    assert {r["status"] for r in runs} == {"succeeded"}
    spans = sorted((r["started"], r["ended"]) for r in runs)
    for (_, ended), (started, _) in itertools.pairwise(spans):
        assert started >= ended - 0.05, f"two local steps overlapped: {spans}"
    for step in "pqrs":
        [target] = (folder / "targets" / step).iterdir()
        assert (target / "out.txt").read_text() == step
    with pytest.raises(OSError):  # SIGTERM to `nemoflow scheduler` stopped its luigid too
        _api(url, "task_list", {"status": "DONE"})


def test_resources_are_checked_and_written_to_luigids_config(tmp_path: Path) -> None:
    from nemoflow.errors import UserError
    from nemoflow.luigi.luigid import parse_resource

    assert parse_resource("executor_local=2") == ("executor_local", 2)
    assert parse_resource(" nemoflow_steps = 0 ") == ("nemoflow_steps", 0)
    for bad in ("executor_local", "executor_local=-1", "=3", "a b=1", "x=1.5"):
        with pytest.raises(UserError):
            parse_resource(bad)
    settings = LuigidSettings(resources=(("executor_local", 2), ("nemoflow_steps", 5)))
    config = write_config(tmp_path / ".luigid", settings).read_text()
    assert config.endswith("[resources]\nexecutor_local = 2\nnemoflow_steps = 5\n")
    assert "[resources]" not in write_config(tmp_path / ".luigid").read_text()
