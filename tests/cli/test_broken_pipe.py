"""`nemoflow ... | head`: the command ends quietly when its reader goes away (no BrokenPipeError traceback)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import nemoflow

pytest.importorskip("prov", reason="needs prov: pip install 'nemoflow[audit]' (CI installs it)")


def test_a_closed_pipe_ends_the_command_without_a_traceback(tmp_path: Path) -> None:
    shutil.copy(Path(__file__).resolve().parents[2] / "pipelines" / "quickstart.py", tmp_path)
    nemoflow("build", "quickstart.py", cwd=tmp_path, check=True)
    command = f"{sys.executable} -m nemoflow.cli export-prov quickstart --format prov-json | true"  # the reader is gone before the first write
    done = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
