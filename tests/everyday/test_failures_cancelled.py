"""A cancelled step is listed as `cancelled` (not `failed`), without its last output line as the reason."""

from __future__ import annotations

import time
from pathlib import Path

from helpers import background_build, nemoflow

PIPELINE = """\
import time
from pathlib import Path

import nemoflow


def looping(marker: str) -> None:
    for tick in range(600):
        print(f"tick {tick}", flush=True)
        Path(marker).touch()
        time.sleep(0.1)


exp = nemoflow.Experiment("c")
exp.add(nemoflow.Partial(looping, marker=MARKER), name="loop")
"""


def test_a_cancelled_step_and_build_read_cancelled(tmp_path: Path) -> None:
    marker = tmp_path / "ticking"
    (tmp_path / "c.py").write_text(PIPELINE.replace("MARKER", repr(str(marker))))
    with background_build(tmp_path / "c.py", tmp_path) as build:
        deadline = time.time() + 120
        while not marker.exists() and time.time() < deadline:
            time.sleep(0.2)
        assert marker.exists(), "the step never started"
        time.sleep(0.5)  # a few ticks in its log
        nemoflow("cancel", "c", "loop", cwd=tmp_path, check=True)
        out, err = build.communicate(timeout=120)
    assert build.returncode == 1
    assert "tick" not in out + err, out + err
    assert "cancelled" in out + err

    experiments = nemoflow("experiments", "list", cwd=tmp_path, check=True).stdout
    experiments += nemoflow("experiments", "show", "c", cwd=tmp_path, check=True).stdout
    assert "cancelled" in experiments and "failed" not in experiments, experiments
    status = nemoflow("status", "c.py", cwd=tmp_path, check=True).stdout
    assert "cancelled" in status and "failed" not in status, status
    assert "tick" not in experiments + status
