"""A failed build says where each failed step's log is, and `nemoflow logs EXP STEP` finds the step."""

from __future__ import annotations

import re
from pathlib import Path

from helpers import nemoflow

PIPELINE = """\
import nemoflow


def prepare() -> int:
    return 1


def report(n: object) -> None:
    print("about to report", flush=True)
    raise RuntimeError("the report template is missing")


exp = nemoflow.Experiment("f")
data = exp.add(nemoflow.Partial(prepare), name="prepare")
exp.add(nemoflow.Partial(report, n=data), name="report")
"""


def test_a_failed_build_prints_the_logs_command_and_it_shows_the_cause(tmp_path: Path) -> None:
    (tmp_path / "f.py").write_text(PIPELINE)
    build = nemoflow("build", "f.py", cwd=tmp_path)
    assert build.returncode == 1
    command = re.search(r"nemoflow logs (\S+) report", build.stderr)
    assert command, build.stderr
    log = nemoflow("logs", command.group(1), "report", cwd=tmp_path, check=True).stdout
    assert "the report template is missing" in log

    nemoflow("build", "f.py", "--until", "prepare", "--force", "prepare", cwd=tmp_path, check=True)  # a run without `report`
    log = nemoflow("logs", "f", "report", cwd=tmp_path, check=True).stdout
    assert "the report template is missing" in log
