"""Shell completion in a real bash: subcommands and the pipeline's step names."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import copy_pipeline, nemoflow

BASH = shutil.which("bash")


def _complete(folder: Path, words: list[str]) -> list[str]:
    """COMPREPLY of bash's completion function for ``words`` (the last one being completed)."""
    line = " ".join(words)
    script = (
        "source <(nemoflow completion bash)\n"
        f"COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        f"_python_argcomplete nemoflow {words[-1]!r} {words[-2]!r}\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run([BASH, "-c", script], cwd=folder, capture_output=True, text=True, timeout=60, check=True)
    return [w.strip() for w in done.stdout.splitlines() if w.strip()]


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_bash_completes_subcommands_and_step_names(tmp_path: Path) -> None:
    copy_pipeline("quickstart.py", tmp_path)
    assert _complete(tmp_path, ["nemoflow", "st"]) == ["status"]
    assert set(_complete(tmp_path, ["nemoflow", "build", "quickstart.py", "--force", "train-"])) == {
        "train-small",
        "train-medium",
        "train-large",
    }
    assert _complete(tmp_path, ["nemoflow", "build", "quickstart.py", "--until", "rep"]) == ["report"]
    keys = _complete(tmp_path, ["nemoflow", "build", "quickstart.py", "train-small.mo"])
    assert "train-small.model.hidden_size=" in keys


def test_install_adds_one_line_to_the_rc_file(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "SHELL": "/bin/bash"}
    for _ in range(2):
        nemoflow("completion", "--install", cwd=tmp_path, env=env, check=True)
    rc = (tmp_path / ".bashrc").read_text()
    assert rc.count('eval "$(nemoflow completion bash)"') == 1
    zsh = nemoflow("completion", "zsh", cwd=tmp_path, check=True).stdout
    assert "compdef" in zsh or "_python_argcomplete" in zsh
