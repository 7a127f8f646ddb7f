"""Environment and git state, as the ledger records them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nemoflow.record.provenance import GitState, capture_environment, git_state


def test_environment_lists_python_and_packages() -> None:
    env = capture_environment()
    assert env.python == sys.version.split()[0]
    assert "luigi" in env.packages and "pydantic" in env.packages
    assert len(env.id) == 64


def test_environment_cache_is_reused_until_a_package_folder_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packages = tmp_path / "lib" / "site-packages"
    packages.mkdir(parents=True)
    monkeypatch.syspath_prepend(str(packages))
    cache = tmp_path / "environment.json"
    first = capture_environment(cache)
    saved = json.loads(cache.read_text())
    saved["environment"]["python"] = "from-the-cache"
    cache.write_text(json.dumps(saved))
    assert capture_environment(cache).python == "from-the-cache"
    (packages / "new_dist-1.0.dist-info").mkdir()  # what an install does to a package folder
    os.utime(packages, ns=(0, os.stat(packages).st_mtime_ns + 10**9))
    assert capture_environment(cache).python == first.python


def test_git_state_sees_commit_and_uncommitted_changes(tmp_path: Path) -> None:
    assert git_state(tmp_path) == GitState(None, None)  # not a repository
    run = {"cwd": tmp_path, "check": True, "capture_output": True}
    subprocess.run(["git", "init", "-q"], **run)
    (tmp_path / "p.py").write_text("x = 1\n")
    subprocess.run(["git", "add", "p.py"], **run)
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x"], **run)
    clean = git_state(tmp_path / "p.py")
    assert clean.commit and len(clean.commit) == 40 and clean.dirty is False
    (tmp_path / "p.py").write_text("x = 2\n")
    assert git_state(tmp_path / "p.py").dirty is True
