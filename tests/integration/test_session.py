"""The build's session: with ``-j N`` forked workers share the build process's one SSH connection and one Slurm
poller (real sshd and Slurm of .ci/services.sh, no mocks)."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nemoflow.errors import ExecutorError
from nemoflow.executors import session, slurm_poll, tunnels
from nemoflow.executors.tunnels import HostKeyError, SSHTunnel

from helpers import nemoflow

ACCEPTED = "Accepted publickey for "


def sshd_log(sshd: Any) -> Path:
    """The sshd log next to its pid file (``LogLevel VERBOSE`` names every accepted login)."""
    return Path(sshd.pid_file).parent / "sshd.log"


def logins(sshd: Any) -> int:
    return sshd_log(sshd).read_text(errors="replace").count(ACCEPTED + sshd.user + " ")


def ssh_tunnel(sshd: Any, **changes: Any) -> SSHTunnel:
    fields = dict(host=sshd.host, port=sshd.port, user=sshd.user, identity=sshd.identity)
    return SSHTunnel(**{**fields, "known_hosts": sshd.known_hosts, "job_dir": "~/jobs", **changes})


@pytest.fixture(autouse=True)
def fresh_pool() -> Iterator[None]:
    tunnels.close_all()
    yield
    tunnels.close_all()


# --- a real build -----------------------------------------------------------------------------------------

PIPELINE = """
import time

import nemoflow


def nap(i: int, pause: float = 3.0) -> int:
    time.sleep(pause)
    (nemoflow.output_dir() / "nap.txt").write_text(str(i))
    return i


tunnel = nemoflow.SSHTunnel(
    host={host!r}, user={user!r}, port={port}, identity={identity!r}, known_hosts={known_hosts!r}, job_dir={job_dir!r},
)
ex = nemoflow.SlurmExecutor(partition={partition!r}, time="00:05:00", poll_interval=0.5, tunnel=tunnel, python={python!r})
exp = nemoflow.Experiment("session_fanout")
for i in range(4):
    exp.add(nemoflow.Partial(nap, i=i), name=f"nap{{i}}", executor=ex)
"""


def test_build_with_four_workers_opens_one_ssh_connection(tmp_path, sshd_service, slurm_service) -> None:
    job_dir = f"/home/{sshd_service.user}/nemoflow-tests/{uuid.uuid4().hex[:10]}"
    pipeline = tmp_path / "fanout.py"
    fields = {k: getattr(sshd_service, k) for k in ("host", "user", "port", "identity", "known_hosts")}
    text = PIPELINE.format(
        **fields, job_dir=job_dir, partition=slurm_service.partition, python=slurm_service.remote_python
    )
    pipeline.write_text(textwrap.dedent(text))
    before = logins(sshd_service)
    here = {"PYTHONPATH": str(Path(session.__file__).parents[2])}  # the CLI runs the nemoflow under test
    nemoflow("build", str(pipeline), "-j", "4", cwd=tmp_path, check=True, env=here)
    opened = logins(sshd_service) - before
    try:
        conn = sqlite3.connect(tmp_path / "targets" / "ledger.db")
        runs = conn.execute("select step, status, started, ended from runs order by started").fetchall()
        conn.close()
        assert sorted(r[0] for r in runs) == ["nap0", "nap1", "nap2", "nap3"]
        assert {r[1] for r in runs} == {"succeeded"}
        assert all((tmp_path / "targets" / f"nap{i}").is_dir() for i in range(4))
        assert max(r[2] for r in runs) < min(r[3] for r in runs), runs  # all four were running at one moment
        assert opened == 1, f"the build opened {opened} SSH connections"
    finally:
        ssh_tunnel(sshd_service).run(f"rm -rf {job_dir}", check=False)


# --- a forked worker, in this process ---------------------------------------------------------------------


def _in_forks(works: list[Callable[[], Any]]) -> list[tuple[str, Any]]:
    """Each ``work()`` in its own forked child, all at once: its result or the exception it raised, in order."""
    context = multiprocessing.get_context("fork")
    queue = context.SimpleQueue()

    def child(index: int, work: Callable[[], Any]) -> None:
        try:
            queue.put((index, "ok", work()))
        except Exception as exc:  # the test looks at its type and message
            queue.put((index, "error", exc))

    processes = [context.Process(target=child, args=(i, work)) for i, work in enumerate(works)]
    for process in processes:
        process.start()
    outcomes = sorted(queue.get() for _ in processes)
    for process in processes:
        process.join(timeout=30)
    return [(kind, value) for _, kind, value in outcomes]


def _in_fork(work: Callable[[], Any]) -> tuple[str, Any]:
    return _in_forks([work])[0]


def test_forked_worker_uses_the_serving_process_connection(sshd_service) -> None:
    tunnel = ssh_tunnel(sshd_service)
    with session.serving():
        assert session.client() is None  # the serving process uses its own pool
        mine = tunnel.run("echo $SSH_CONNECTION").stdout.split()[1]
        kind, theirs = _in_fork(lambda: ssh_tunnel(sshd_service).run("echo $SSH_CONNECTION").stdout.split()[1])
        home = _in_fork(lambda: ssh_tunnel(sshd_service).expand_path("~/x"))
    assert (kind, theirs) == ("ok", mine)
    assert home == ("ok", tunnel.expand_path("~/x"))
    assert session.client() is None


def test_forked_worker_copies_files_through_the_session(sshd_service, tmp_path) -> None:
    tunnel = ssh_tunnel(sshd_service)
    far = f"~/nf-session-tests/{uuid.uuid4().hex}"
    (tmp_path / "in.txt").write_text("payload")

    def copy_there_and_back() -> str:
        worker = ssh_tunnel(sshd_service)
        worker.put(tmp_path / "in.txt", f"{far}/sub/in.txt")
        worker.get(f"{far}/sub/in.txt", tmp_path / "back" / "out.txt")
        return (tmp_path / "back" / "out.txt").read_text()

    try:
        with session.serving():
            assert _in_fork(copy_there_and_back) == ("ok", "payload")
    finally:
        tunnel.run(f"rm -rf {far}", check=False)


def test_errors_travel_to_the_worker_with_their_type_and_message(sshd_service, tmp_path) -> None:
    (tmp_path / "empty_known_hosts").write_text("")
    stranger = ssh_tunnel(sshd_service, known_hosts=str(tmp_path / "empty_known_hosts"))
    with session.serving():
        refused = _in_fork(lambda: stranger.run("true"))  # first: the pool has no connection to reuse yet
        failed = _in_fork(lambda: ssh_tunnel(sshd_service).run("echo no >&2; exit 3"))
        missing = _in_fork(lambda: ssh_tunnel(sshd_service).get(f"~/{uuid.uuid4().hex}", tmp_path / "x"))
    tunnels.close_all()
    kind, exc = failed
    assert kind == "error" and type(exc) is ExecutorError and exc.exit_code == 3
    assert "exit 3" in str(exc) and "no" in str(exc)
    kind, exc = missing  # raised in the server (a timeout would be too, but fabric sometimes reports exit -1)
    assert kind == "error" and type(exc) is ExecutorError and "get /home/" in str(exc) and "No such file" in str(exc)
    kind, exc = refused
    assert kind == "error" and type(exc) is HostKeyError and "not in" in str(exc) and exc.hint
    with pytest.raises(HostKeyError) as direct:
        stranger.run("true")
    assert str(direct.value) == str(exc)


def test_serving_twice_is_a_no_op_and_cleans_up(sshd_service) -> None:
    with session.serving():
        address = session._SERVED["address"]
        with session.serving():
            assert session._SERVED["address"] == address
        assert session._SERVED["address"] == address
        assert (os.stat(os.path.dirname(address)).st_mode & 0o777) == 0o700
    assert session._SERVED["address"] is None
    assert not os.path.exists(os.path.dirname(address))


def test_forked_workers_share_one_slurm_poller(sshd_service, slurm_service) -> None:
    tunnel = ssh_tunnel(sshd_service)
    slurm_poll._POLLERS.pop(tunnel.key, None)
    submit = f"sbatch --parsable -p {slurm_service.partition} -t 1 -o /dev/null --wrap 'sleep 2'"
    ids = [tunnel.run(submit).stdout.strip().split(";")[0] for _ in range(3)]

    def follow(job_id: str) -> Callable[[], tuple[int, str]]:
        def work() -> tuple[int, str]:  # like SlurmExecutor._follow, but asking 5 times per interval
            for asked in range(1, 300):
                state = slurm_poll.job_state(ssh_tunnel(sshd_service), 0.5, job_id)
                if state is not None and state.state.finished:
                    return asked, state.slurm
                time.sleep(0.1)
            raise AssertionError(f"job {job_id} did not finish")

        return work

    started = time.monotonic()
    with session.serving():
        outcomes = _in_forks([follow(i) for i in ids])
    seconds = time.monotonic() - started
    poller = slurm_poll._POLLERS.pop(tunnel.key)
    assert [(kind, value[1]) for kind, value in outcomes] == [("ok", "COMPLETED")] * 3
    asked = sum(value[0] for _, value in outcomes)
    assert poller.calls <= seconds / 0.5 + 4, f"{poller.calls} queries for {asked} asks in {seconds:.1f} s"
    assert asked > 2 * poller.calls
