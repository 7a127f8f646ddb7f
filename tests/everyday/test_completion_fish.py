"""Completion in a real fish, as in bash and zsh: subcommands, step names, and `--install` that fish loads itself."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import copy_pipeline, nemoflow

FISH = shutil.which("fish")
pytestmark = pytest.mark.skipif(FISH is None, reason="fish is not installed")


def _complete(folder: Path, line: str, *, source: bool = True, home: Path | None = None) -> list[str]:
    """The words fish offers for ``line`` (what <TAB> shows), without their descriptions."""
    script = ("nemoflow completion fish | source; " if source else "") + f"complete -C {line!r}"
    env = dict(os.environ, **({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")} if home else {}))
    done = subprocess.run([FISH, "-c", script], cwd=folder, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [w.split("\t")[0] for w in done.stdout.splitlines() if w.strip()]


def test_fish_completes_subcommands_and_step_names(tmp_path: Path) -> None:
    copy_pipeline("quickstart.py", tmp_path)
    assert _complete(tmp_path, "nemoflow st") == ["status"]
    assert set(_complete(tmp_path, "nemoflow build quickstart.py --force train-")) == {
        "train-small",
        "train-medium",
        "train-large",
    }
    assert _complete(tmp_path, "nemoflow build quickstart.py --until rep") == ["report"]


def test_install_puts_it_where_fish_loads_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "SHELL": "/usr/bin/fish"}
    done = nemoflow("completion", "--install", cwd=tmp_path, env=env, check=True)
    installed = home / ".config" / "fish" / "completions" / "nemoflow.fish"
    assert str(installed) in done.stdout
    nemoflow("completion", "--install", cwd=tmp_path, env=env, check=True)
    assert installed.read_text().count("nemoflow completion fish") == 1, "installed twice"
    assert _complete(tmp_path, "nemoflow st", source=False, home=home) == ["status"]
