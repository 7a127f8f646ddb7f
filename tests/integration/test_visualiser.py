"""luigi's visualiser in a real headless Chromium (Debian `chromium`) while a build runs on a real luigid.

The DOM is read with Chromium's ``--dump-dom`` and a screenshot is saved to ``tests/artifacts/`` (git-ignored).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import struct
import subprocess
import textwrap
import time
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import pytest
import test_central_scheduler as central_tests

luigid = central_tests.luigid  # the fixture: a real luigid on a free loopback port

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WAIT = 90.0  # seconds: the most any wait in this test may take

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason="needs the Debian package chromium (/usr/bin/chromium): apt-get install chromium",
)

PIPELINE = textwrap.dedent("""
    import time
    from pathlib import Path
    import nemoflow

    def make(tag: str, up: str | None = None, gate: str | None = None) -> str:
        while gate and Path(gate).exists():      # held open by the test
            time.sleep(0.05)
        text = tag + ("<" + open(up).read() if up else "")
        (nemoflow.output_dir() / "out.txt").write_text(text)
        return text

    def pipeline():
        exp = nemoflow.Experiment("visualiser")
        prep = exp.add(nemoflow.Partial(make, tag="prep"), name="prepare_data")
        train = exp.add(nemoflow.Partial(make, tag="train", up=prep.output("out.txt"), gate=GATE), name="train_model")
        ev = exp.add(nemoflow.Partial(make, tag="eval", up=train.output("out.txt")), name="evaluate_model")
        exp.add(nemoflow.Partial(make, tag="report", up=ev.output("out.txt")), name="write_report")
        return exp
""")
STEPS = ("prepare_data", "train_model", "evaluate_model", "write_report")


class _TaskTable(HTMLParser):
    """The rows of the visualiser's ``#taskTable``: per row, the cells' text and the ``param-name=param-value`` pairs."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, object]] = []
        self._in_table = self._in_body = False
        self._depth = 0  # open <table> elements inside #taskTable
        self._span: str | None = None  # class of the open param span
        self._name: str | None = None
        self._cells: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            if self._in_table:
                self._depth += 1
            elif a.get("id") == "taskTable":
                self._in_table = True
        elif not self._in_table:
            return
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self._cells = []
            self.rows.append({"cells": self._cells, "params": {}})
        elif tag == "td" and self._cells is not None:
            self._cells.append("")
        elif tag == "span" and a.get("class") in ("param-name", "param-value"):
            self._span = a["class"]

    def handle_endtag(self, tag: str) -> None:
        if not self._in_table:
            return
        if tag == "table":
            if self._depth:
                self._depth -= 1
            else:
                self._in_table = self._in_body = False
        elif tag == "tbody":
            self._in_body = False
        elif tag == "tr":
            self._cells = None
        elif tag == "span":
            self._span = None

    def handle_data(self, data: str) -> None:
        if not self._in_body or self._cells is None:
            return
        if self._cells:
            self._cells[-1] += data
        params = self.rows[-1]["params"]
        assert isinstance(params, dict)
        if self._span == "param-name":
            self._name = data
        elif self._span == "param-value" and self._name is not None:
            params[self._name] = params.get(self._name, "") + data


class _GraphNodes(HTMLParser):
    """The labels of the nodes the visualiser's SVG dependency graph draws (``<a class="graph-node-a"><text>``)."""

    def __init__(self) -> None:
        super().__init__()
        self.labels: list[str] = []
        self._in_node = self._in_text = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a" and "graph-node-a" in (dict(attrs).get("class") or ""):
            self._in_node = True
        elif tag == "text" and self._in_node:
            self._in_text = True
            self.labels.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "text":
            self._in_text = False
        elif tag == "a":
            self._in_node = False

    def handle_data(self, data: str) -> None:
        if self._in_text:
            self.labels[-1] += data


def _screenshot(page: str, name: str, profile: Path) -> None:
    """A 1280x900 screenshot of ``page`` in ``tests/artifacts/NAME``, checked to be a PNG with something drawn."""
    ARTIFACTS.mkdir(exist_ok=True)
    png = ARTIFACTS / name
    png.unlink(missing_ok=True)
    shot = _chromium(f"--screenshot={png}", page, profile=profile)
    assert shot.returncode == 0, shot.stderr
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    assert struct.unpack(">II", data[16:24]) == (1280, 900)
    assert len(data) > 20_000, f"a {len(data)}-byte PNG of {page} is too small to show it"


def _chromium(*args: str, profile: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """One headless Chromium run in its own process group, which is gone when this returns."""
    profile.mkdir(parents=True, exist_ok=True)
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        "--window-size=1280,900",
        *args,
    ]
    env = {**os.environ, "HOME": str(profile)}  # crash reports and caches stay in the profile folder
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out, err = "", f"chromium still running after {timeout}s"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its zygote / renderer children, if any are left
        proc.wait(timeout=10)
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def _graph_edges(url: str) -> set[tuple[str, str]]:
    """(upstream, downstream) step names of the dependency graph the visualiser draws (its dep_graph API)."""
    done = central_tests._api(url, "task_list", {"status": "DONE"})
    last = next(task_id for task_id, task in done.items() if task["params"]["step"] == STEPS[-1])
    graph = central_tests._api(url, "dep_graph", {"task_id": last})
    name = {task_id: task["params"]["step"] for task_id, task in graph.items()}
    return {(name[dep], name[task_id]) for task_id, task in graph.items() for dep in task["deps"]}


def _listed(url: str) -> dict[str, str]:
    """Every step task luigid knows: step name -> status."""
    listed = {}
    for status in ("PENDING", "RUNNING", "DONE", "FAILED"):
        for task in central_tests._api(url, "task_list", {"status": status}).values():
            listed[task["params"]["step"]] = status
    return listed


def test_chromium_shows_every_step_of_a_running_build(luigid: str, tmp_path: Path) -> None:
    folder = tmp_path / "build"
    folder.mkdir()
    gate = tmp_path / "gate"
    gate.write_text("closed")
    (folder / "p.py").write_text(f"GATE = {str(gate)!r}\n" + PIPELINE)
    worker = central_tests._start(
        folder, "worker", "p.py", "--executor", "local", "--scheduler", luigid, "--json", "--timeout", "120", name="w"
    )
    build = central_tests._start(
        folder, "build", "p.py", "--scheduler", luigid, "--no-run", "--timeout", "120", "--json", name="build"
    )
    try:
        deadline = time.time() + WAIT
        while (listed := _listed(luigid)).keys() != set(STEPS) or listed["train_model"] != "RUNNING":
            assert worker.poll() is None and build.poll() is None, "the worker or the build ended early"
            assert time.time() < deadline, f"luigid never listed every step with train_model running: {listed}"
            time.sleep(0.1)
        assert listed == {
            "prepare_data": "DONE",
            "train_model": "RUNNING",
            "evaluate_model": "PENDING",
            "write_report": "PENDING",
        }

        page = f"{luigid}/static/visualiser/index.html"
        profile = tmp_path / "chromium"
        dom = _chromium("--dump-dom", page, profile=profile)
        assert dom.returncode == 0, dom.stderr
        table = _TaskTable()
        table.feed(dom.stdout)
        shown = {row["params"].get("step"): row for row in table.rows}  # type: ignore[union-attr]
        assert set(shown) == set(STEPS), f"task rows: {[r['cells'] for r in table.rows]}"
        for step, row in shown.items():
            cells = row["cells"]
            assert isinstance(cells, list)
            assert cells[1] == step, f"the task's name must be its step's: {cells}"
            params = cells[2]
            assert params.index(f"step={step}") < params.index("key="), f"the step name comes before the key: {cells}"
            assert "experiment=visualiser" in params and "executor=local" in params, cells
            assert listed[step] in cells[0], f"{step} shown as {cells[0]!r}, luigid says {listed[step]}"
        _screenshot(page, "visualiser-task-list.png", profile)

        gate.unlink()
        result = central_tests._finish(build, folder, "build", timeout=WAIT)
        assert result["failed"] == [] and {o["name"] for o in result["ran"]} == set(STEPS)
        central_tests._finish(worker, folder, "w", timeout=WAIT)
        assert _listed(luigid) == dict.fromkeys(STEPS, "DONE")
        assert _graph_edges(luigid) == set(itertools.pairwise(STEPS)), "the graph view must draw the pipeline's edges"

        done = central_tests._api(luigid, "task_list", {"status": "DONE"})
        last = next(task_id for task_id, task in done.items() if task["params"]["step"] == STEPS[-1])
        graph_page = f"{page}#tab=graph&visType=svg&taskId={urllib.parse.quote(last)}"
        graph = _chromium("--dump-dom", graph_page, profile=profile)
        assert graph.returncode == 0, graph.stderr
        nodes = _GraphNodes()
        nodes.feed(graph.stdout)
        assert sorted(nodes.labels) == sorted(STEPS), f"each graph node is labelled with its step: {nodes.labels}"
        _screenshot(graph_page, "visualiser-graph.png", profile)
    finally:
        gate.unlink(missing_ok=True)
        for proc in (worker, build):
            central_tests._stop(proc)
