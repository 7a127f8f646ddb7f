"""The workload W(N) of shared/bench/W.md: its shape, its input files and the expected report."""

from __future__ import annotations

import hashlib
from pathlib import Path

WIDTH = 10  # tasks per layer


def layers(n: int) -> int:
    """L = N // 10; N must be a non-negative multiple of 10."""
    if n < 0 or n % WIDTH:
        raise ValueError(f"N must be a non-negative multiple of {WIDTH}, got {n}")
    return n // WIDTH


def task_name(layer: int, i: int) -> str:
    """The name of task (l, i), also the stem of its output file."""
    return f"t_{layer}_{i}"


def parents(layer: int, i: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The two upstream tasks of (l, i) for l >= 1, in the order their texts are concatenated."""
    return (layer - 1, i), (layer - 1, i ^ 1)


def digest(name: str, texts: list[bytes]) -> bytes:
    """A task's output: sha1("<taskname>|" + concatenated input texts)[:16] + newline."""
    return hashlib.sha1(name.encode() + b"|" + b"".join(texts)).hexdigest()[:16].encode() + b"\n"


def root_text(i: int, changed: bool = False) -> bytes:
    """The content of inputs/root_<i>.txt (``changed``: after the incremental edit of root 0)."""
    return f"root {i}{' changed' if changed else ''}\n".encode()


def write_inputs(workdir: Path, n: int, changed: bool = False) -> None:
    """Write inputs/root_<i>.txt for the 10 roots (nothing for the empty DAG)."""
    if n == 0:
        return
    inputs = workdir / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    for i in range(WIDTH):
        (inputs / f"root_{i}.txt").write_bytes(root_text(i, changed and i == 0))


def change_root0(workdir: Path) -> None:
    """The incremental scenario: change the content of inputs/root_0.txt."""
    (workdir / "inputs" / "root_0.txt").write_bytes(root_text(0, changed=True))


def expected_report(n: int, changed: bool = False) -> bytes | None:
    """The report every tool must produce for W(N) (None for the empty DAG)."""
    depth = layers(n)
    if depth == 0:
        return None
    current = [digest(task_name(0, i), [root_text(i, changed and i == 0)]) for i in range(WIDTH)]
    for layer in range(1, depth):
        current = [digest(task_name(layer, i), [current[a] for _, a in parents(layer, i)]) for i in range(WIDTH)]
    return digest("report", current)


def incremental_cone(n: int) -> int:
    """Tasks affected by changing root 0: 2 * L = N / 5."""
    return 2 * layers(n)
