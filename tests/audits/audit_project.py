"""A small project for the audit tests: a pipeline file, a helper module of its own and two input files."""

from __future__ import annotations

import textwrap
from pathlib import Path

HELPERS = """
def scale(values, factor):
    return [v * factor for v in values]
"""

PIPELINE = """
import json
import time

import nemoflow
from mylib.helpers import scale


def load(path):
    values = [float(line) for line in open(path).read().split()]
    nemoflow.log_metrics(n=len(values))  # metrics rows: identical on a rebuild (the clock is kept apart)
    (nemoflow.output_dir() / "values.json").write_text(json.dumps(values))


def double(values):
    data = json.load(open(values))
    (nemoflow.output_dir() / "doubled.txt").write_text("\\n".join(str(v) for v in scale(data, 2)) + "\\n")
    return {"total": sum(scale(data, 2))}


def stamp(path):
    text = open(path).read()
    (nemoflow.output_dir() / "stamped.json").write_text(json.dumps({"lines": len(text.split()), "at": time.time_ns()}))


def pipeline():
    exp = nemoflow.Experiment("audited")
    loaded = exp.add(nemoflow.Partial(load, path=nemoflow.File("inputs/a.txt")), name="load")
    exp.add(nemoflow.Partial(double, values=loaded.output("values.json")), name="double")
    exp.add(nemoflow.Partial(stamp, path=nemoflow.File("inputs/c.txt")), name="stamp")
    return exp
"""


def make_project(folder: Path) -> Path:
    """Write the project into ``folder``; returns the pipeline file."""
    (folder / "mylib").mkdir()
    (folder / "mylib" / "__init__.py").write_text("")
    (folder / "mylib" / "helpers.py").write_text(textwrap.dedent(HELPERS))
    (folder / "inputs").mkdir()
    (folder / "inputs" / "a.txt").write_text("1\n2\n3\n")
    (folder / "inputs" / "c.txt").write_text("x\ny\n")
    pipeline = folder / "audited.py"
    pipeline.write_text(textwrap.dedent(PIPELINE))
    return pipeline
