"""Docs test: every command of the README's ```bash blocks runs, as printed, in bash, in a fresh copy of pipelines/.

Each block runs in a folder of its own (a copy of the repo's ``pipelines/``), its commands in order, as a reader
following the README would type them. Only the commands in ``SKIPPED`` do not run, each with its reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import PIPELINES, REPO, published_target

README = REPO / "README.md"

SKIPPED = {
    "pip install -e . && nemoflow build pipelines/quickstart.py": "set-up: CI installs the package itself",
    'pip install -e ".[test,ray,kubernetes,dgxcloud,lepton,audit]" && python -m pytest -q': "set-up: the suite itself",
    "nemoflow scheduler --port 8082": "needs a service: starts luigid (tests/integration/test_central_scheduler.py)",
    "nemoflow worker pipelines/quickstart.py --executor local --scheduler http://127.0.0.1:8082": (
        "needs a service: a luigid scheduler (tests/integration/test_central_scheduler.py)"
    ),
    "nemoflow build pipelines/quickstart.py --scheduler http://127.0.0.1:8082 --no-run": (
        "needs a service: a luigid scheduler and a worker (tests/integration/test_central_scheduler.py)"
    ),
}

# What a reader checks in the output of a command, beyond its exit status of 0.
EXPECTED = {
    "'model=small_model(hidden_size=3)' 'lr*=2'": ["'hidden_size': 3", "'lr': 0.002"],
    "model.hidden_size=1024 lr=2e-4 data_path=/d": ["'hidden_size': 1024", "'data_path': '/d'"],
}

# The shell's `python` and `nemoflow` are this interpreter and this checkout (CI re-points the installed command).
PRELUDE = 'python() { "$NF_PYTHON" "$@"; }; nemoflow() { "$NF_PYTHON" -m nemoflow.cli "$@"; }\n'


def bash_blocks() -> list[tuple[int, list[str]]]:
    """Each ```bash block of the README as (its line number, its commands without their trailing comments)."""
    text = README.read_text()
    blocks = []
    for match in re.finditer(r"^```bash\n(.*?)^```", text, re.S | re.M):
        commands = []
        for line in match.group(1).splitlines():
            command = _strip_comment(line)
            if command:
                commands.append(command)
        blocks.append((text[: match.start()].count("\n") + 1, commands))
    return blocks


def _strip_comment(line: str) -> str:
    """The line as bash reads it, without its comment (so a ``#`` in quotes stays)."""
    # Cut at the first '#' bash would take as a comment: one that starts a word outside quotes.
    out, quote = [], ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            break
        out.append(ch)
    return "".join(out).strip()


BLOCKS = bash_blocks()


def test_the_skipped_commands_are_still_in_the_readme() -> None:
    commands = {c for _, block in BLOCKS for c in block}
    assert set(SKIPPED) <= commands, set(SKIPPED) - commands


@pytest.mark.parametrize("line, commands", BLOCKS, ids=[f"README.md:{n}" for n, _ in BLOCKS])
def test_every_readme_command_runs(line: int, commands: list[str], tmp_path: Path) -> None:
    shutil.copytree(PIPELINES, tmp_path / "pipelines", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "NEMOFLOW_STORE"}
    env.update({"NF_PYTHON": sys.executable, "COLUMNS": "200", "PYTHONPATH": str(REPO)})
    for command in commands:
        if command in SKIPPED:
            continue
        if "<key>" in command:  # the README's placeholder for the key a reader copies from `nemoflow status`
            command = command.replace("<key>", published_target(tmp_path, "evaluate-small").name)
        proc = subprocess.run(
            ["bash", "-c", PRELUDE + command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        shown = f"README.md:{line}: {command}\nexit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        assert proc.returncode == 0, shown
        for fragment, wanted in EXPECTED.items():
            if fragment in command:
                for text in wanted:
                    assert text in proc.stdout, shown
