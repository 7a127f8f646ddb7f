"""`nemoflow dag`: the pipeline's real edges as text, Mermaid and Graphviz dot."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import copy_pipeline, nemoflow

EDGES = {("prepare", "train-small"), ("train-small", "evaluate-small"), ("evaluate-small", "report")}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dag")
    copy_pipeline("quickstart.py", folder)
    return folder


def test_text_lists_each_step_with_its_upstream(folder: Path) -> None:
    out = nemoflow("dag", "quickstart.py", cwd=folder, check=True).stdout
    lines = {line.split(" [")[0]: line for line in out.splitlines()}
    assert set(lines) >= {"prepare", "report"}
    assert lines["report"].endswith("<- evaluate-large, evaluate-medium, evaluate-small")
    assert "new step" in lines["prepare"]


def test_mermaid_and_dot_carry_the_edges(folder: Path) -> None:
    mermaid = nemoflow("dag", "quickstart.py", "--format", "mermaid", cwd=folder, check=True).stdout
    assert mermaid.startswith("graph TD")
    for up, down in EDGES:
        assert f"s_{up.replace('-', '_')} --> s_{down.replace('-', '_')}" in mermaid
    dot = nemoflow("dag", "quickstart.py", "--format", "dot", cwd=folder, check=True).stdout
    for up, down in EDGES:
        assert f'"{up}" -> "{down}";' in dot


def test_dot_output_is_valid_for_graphviz(folder: Path, tmp_path: Path) -> None:
    if shutil.which("dot") is None:
        pytest.skip("Graphviz `dot` is not installed (apt-get install graphviz)")
    png = tmp_path / "dag.png"
    nemoflow("dag", "quickstart.py", "--png", str(png), cwd=folder, check=True)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dot = nemoflow("dag", "quickstart.py", "--format", "dot", cwd=folder, check=True).stdout
    subprocess.run(["dot", "-Tsvg"], input=dot, text=True, check=True, capture_output=True)
