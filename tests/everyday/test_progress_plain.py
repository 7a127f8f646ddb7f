"""Off a terminal, a build prints a progress line at least every 2 s while a step runs."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from helpers import nemoflow

PIPELINE = """\
import time

import nemoflow


def slow() -> None:
    time.sleep(6)


exp = nemoflow.Experiment("p")
exp.add(nemoflow.Partial(slow), name="slow")
"""


def test_a_long_step_shows_a_line_every_two_seconds_off_a_terminal(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(PIPELINE)
    proc = nemoflow("build", "p.py", cwd=tmp_path, check=True)
    times = [float(t) for t in re.findall(r"^\[\s*([\d.]+)s\] \d+/1 done", proc.stdout, re.M)]
    running = re.findall(r"^\[\s*[\d.]+s\] 0/1 done, 1 running", proc.stdout, re.M)
    assert len(running) >= 2, proc.stdout
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) <= 2.6, proc.stdout
