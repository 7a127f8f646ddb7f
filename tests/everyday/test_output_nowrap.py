"""Off a terminal (a pipe, a file, CI) nothing is hard-wrapped at 80 columns: ids, paths and errors stay whole."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from helpers import copy_pipeline


def _piped(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`nemoflow ARGS | cat`: stdout and stderr are pipes, and $COLUMNS is not set (as under cron or CI)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NEMOFLOW_STORE")}
    return subprocess.run(
        [sys.executable, "-m", "nemoflow.cli", *args], cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_build_summary_keeps_the_experiment_id_on_its_line(tmp_path: Path) -> None:
    copy_pipeline("quickstart.py", tmp_path)
    done = _piped(tmp_path, "build", "quickstart.py", "--direct")
    assert done.returncode == 0, done.stderr
    summary = [line for line in done.stdout.splitlines() if line.startswith("done:")]
    assert len(summary) == 1 and re.search(r"\(experiment quickstart_\d+\)$", summary[0]), done.stdout


def test_status_shows_each_full_output_path_on_one_line(tmp_path: Path) -> None:
    copy_pipeline("quickstart.py", tmp_path)
    assert _piped(tmp_path, "build", "quickstart.py", "--direct").returncode == 0
    shown = _piped(tmp_path, "status", "quickstart.py").stdout
    paths = re.findall(r"targets/[\w-]+/[0-9a-f]+", shown)
    assert paths and all(len(p.rsplit("/", 1)[1]) == 64 for p in paths), shown
