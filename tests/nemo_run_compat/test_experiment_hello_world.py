"""NeMo Run's examples/hello-world (the script and both notebooks, cell by cell) with only the import changed.

The examples are copied into hello_world/ as NeMo Run ships them (simple/add.py with the import changed);
each test copies that folder into a temporary directory and runs it in a subprocess, with its own store.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE / "hello_world"
REPO = HERE.parent.parent
IMPORT = "import nemo_run as run"


def ported(source: str) -> str:
    """The program with its one import line changed, as a NeMo Run user moves over."""
    assert IMPORT in source
    return source.replace(IMPORT, "import nemoflow as run")


def run_python(folder: Path, source: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    program = folder / "program.py"
    program.write_text(source)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(folder)]),
        "NEMOFLOW_STORE": str(folder / "store"),
    }
    return subprocess.run(  # one stream, in order, as a notebook shows it
        [sys.executable, str(program)],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


# Runs the cells of a notebook in one namespace, showing the value of a cell's last expression as
# Jupyter does, with a marker line before each cell.
NOTEBOOK_RUNNER = textwrap.dedent("""
    import ast, json, sys
    cells = json.load(open(sys.argv[1]))
    namespace = {"__name__": "__main__"}
    for index, source in enumerate(cells):
        print(f"=== cell {index}", flush=True)
        tree = ast.parse(source)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, f"<cell {index}>", "exec"), namespace)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), f"<cell {index}>", "eval"), namespace)
            if value is not None:
                print(repr(value), flush=True)
""")


def notebook_cells(name: str) -> list[str]:
    notebook = json.loads((EXAMPLE / name).read_text())
    return [
        ported("".join(c["source"])) if IMPORT in "".join(c["source"]) else "".join(c["source"])
        for c in notebook["cells"]
        if c["cell_type"] == "code" and "".join(c["source"]).strip()
    ]


def run_notebook(folder: Path, name: str) -> tuple[subprocess.CompletedProcess[str], dict[int, str]]:
    (folder / "cells.json").write_text(json.dumps(notebook_cells(name)))
    done = run_python(folder, NOTEBOOK_RUNNER.replace("sys.argv[1]", repr(str(folder / "cells.json"))))
    cells: dict[int, str] = {}
    current = -1
    for line in done.stdout.splitlines(keepends=True):
        if line.startswith("=== cell "):
            current = int(line.split()[-1])
            cells[current] = ""
        elif current >= 0:
            cells[current] += line
    return done, cells


@pytest.fixture
def example(tmp_path: Path) -> Path:
    folder = tmp_path / "hello-world"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def test_hello_scripts_runs_two_scripts_and_a_partial_and_shows_their_output(example: Path) -> None:
    source = ported((example / "hello_scripts.py").read_text())
    first = run_python(example, source)
    assert first.returncode == 0, first.stdout
    for line in ("Hello", "Hello 1", "Hello 2", "result = SomeObject(value_1=15, value_2=30, value_3=45)"):
        assert any(out.endswith(line) for out in first.stdout.splitlines()), (line, first.stdout)
    assert "served from the store" not in first.stdout
    again = run_python(example, source)
    assert again.returncode == 0, again.stdout
    assert again.stdout.count("served from the store") == 3, again.stdout
    assert "result = SomeObject(value_1=15, value_2=30, value_3=45)" in again.stdout


def test_hello_world_notebook_cell_by_cell(example: Path) -> None:
    done, cells = run_notebook(example, "hello_world.ipynb")
    assert done.returncode == 0, done.stdout[-3000:]
    dry_and_direct = next(text for text in cells.values() if "Now real run" in text)
    before, after = dry_and_direct.split("Now real run")
    assert "Dry run for task simple.add" in before and "add_object" in before
    assert "result = SomeObject(value_1=15, value_2=30, value_3=45)" not in before, "a dry run runs nothing"
    assert "result = SomeObject(value_1=15, value_2=30, value_3=45)" in after
    last = cells[max(cells)]  # run.run(fn, executor): the task's print on the screen
    assert "result = SomeObject(value_1=15, value_2=30, value_3=45)" in last


def test_hello_experiments_notebook_cell_by_cell(example: Path) -> None:
    done, cells = run_notebook(example, "hello_experiments.ipynb")
    assert done.returncode == 0, done.stdout[-3000:]
    ran = cells[3]  # the experiment with fn_1 and fn_2, tail_logs=True
    assert "result = SomeObject(value_1=15, value_2=30, value_3=45)" in ran
    assert "result = SomeObject(value_1=1010, value_2=1020, value_3=1030)" in ran
    catalog = eval(cells[4])  # the printed list of ids
    assert len(catalog) == 1 and catalog[0].startswith("add_object_")
    inspected = cells[5]  # status, then logs(job_id="simple.add.add_object")
    assert "Experiment Status for " + catalog[0] in inspected and "SUCCEEDED" in inspected
    assert "result = SomeObject(value_1=15, value_2=30, value_3=45)" in inspected.split("SUCCEEDED")[-1]
    rerun = cells[6]  # reset, tasks[0].obj_1 = tasks[1].obj_1.clone(), run(sequential=True)
    assert "result = SomeObject(value_1=1010, value_2=1020, value_3=1030)" in rerun.split("served from the store")[0]
    assert rerun.count("served from the store") == 1, "the second task did not change: it comes from the store"
    assert "add_object.obj_1.value_1" in cells[9], "exp.diff(old_exp) names the changed values"
