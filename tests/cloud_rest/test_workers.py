"""``nemoflow worker --executor dgxcloud|lepton`` against a real luigid, each step submitted to a stub service.

No DGX Cloud or Lepton service can run here: the stubs (rest_stubs.py) speak the documented REST protocols and
run each workload's command on this machine when it is started; luigid is the real central scheduler.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from rest_stubs import SECRET, DGXStub, LeptonStub

from nemoflow.luigi.luigid import LuigidSettings, luigid_command, luigid_env, write_config

from helpers import last_json, names, published_target, runs_by_step

STEPS = """
import os
import nemoflow


def make(tag: str, up: str | None = None) -> str:
    text = tag + ("<" + open(up).read() if up else "")
    (nemoflow.output_dir() / "out.txt").write_text(text)
    return text
"""


@pytest.fixture
def luigid(tmp_path: Path) -> Iterator[str]:
    """A real luigid on a free loopback port; yields its URL."""
    folder = tmp_path / "luigid"
    config = write_config(folder, LuigidSettings(worker_disconnect_delay=3.0, retry_delay=1))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (folder / "luigid.out").open("w")
    proc = subprocess.Popen(
        luigid_command(folder, "127.0.0.1", port), cwd=folder, env=luigid_env(config), stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/task_list?data=%7B%7D", timeout=2).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "luigid did not answer"
            time.sleep(0.05)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def _worker(folder: Path, executor: str, url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "NEMOFLOW_STORE"}
    proc = subprocess.run(
        [sys.executable, "-m", "nemoflow.cli", "worker", "p.py", "--executor", executor, "--scheduler", url, "--json"],
        cwd=folder,
        env={**env, "COLUMNS": "200", "STUB_SECRET": SECRET},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"worker exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert SECRET not in proc.stdout + proc.stderr
    return last_json(proc.stdout)


def _run_on_worker(tmp_path: Path, luigid: str, executor: str, source: str) -> None:
    shared = tmp_path / "shared" / "nemoflow"
    shared.mkdir(parents=True)
    (tmp_path / "p.py").write_text(
        STEPS
        + textwrap.dedent(source).format(shared=str(shared), python=sys.executable)
        + textwrap.dedent("""
        def pipeline():
            exp = nemoflow.Experiment("cloud_worker")
            a = exp.add(nemoflow.Partial(make, tag="a"), name="a", executor=ex)
            exp.add(nemoflow.Partial(make, tag="b", up=a.output("out.txt")), name="b", executor=ex)
            return exp
        """)
    )
    result = _worker(tmp_path, executor, luigid)
    assert names(result["ran"]) == {"a", "b"}
    assert (published_target(tmp_path, "b") / "out.txt").read_text() == "b<a"
    runs = runs_by_step(tmp_path)
    assert {runs[s]["executor"] for s in ("a", "b")} == {executor}
    assert all(runs[s]["worker"] for s in ("a", "b"))  # run by the worker luigid handed them to
    assert SECRET.encode() not in (tmp_path / "targets" / "ledger.db").read_bytes()


def test_a_dgxcloud_worker_serves_luigid(tmp_path: Path, luigid: str, dgx: DGXStub) -> None:
    dgx.start_each_created()
    _run_on_worker(
        tmp_path,
        luigid,
        "dgxcloud",
        f"""
        ex = nemoflow.DGXCloudExecutor(
            base_url={dgx.url!r}, app_id="nemoflow-app", app_secret=os.environ.get("STUB_SECRET"),
            project_name="team-a", container_image="img", pvcs=[{{{{"claimName": "c", "path": "{{shared}}"}}}}],
            pvc_nemoflow_dir="{{shared}}", python="{{python}}", poll_interval=0.2,
        )
        """,
    )
    assert len([r for r in dgx.requests if r.method == "POST" and r.path.endswith("/trainings")]) == 2


def test_a_lepton_worker_serves_luigid(tmp_path: Path, luigid: str, lepton: LeptonStub) -> None:
    lepton.start_each_created()
    _run_on_worker(
        tmp_path,
        luigid,
        "lepton",
        f"""
        ex = nemoflow.LeptonExecutor(
            container_image="img", resource_shape="cpu.small", node_group="h100-pool",
            mounts=[{{{{"path": "/", "mount_path": "{{shared}}"}}}}], nemoflow_dir="{{shared}}",
            workspace_url={lepton.url!r}, workspace_token=os.environ.get("STUB_SECRET"), python="{{python}}",
            poll_interval=0.2,
        )
        """,
    )
    assert len([r for r in lepton.requests if r.method == "POST" and r.path.endswith("/jobs")]) == 2
