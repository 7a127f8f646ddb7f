"""The measurement matrix: for each N, run and tool, a fresh work dir and the three build phases."""

from __future__ import annotations

import shutil
import sys
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import workload
from bench.procs import run_measured
from bench.tools import Tool, ToolError

PHASES = ("cold", "noop", "incremental")
DEFAULT_WORK_DIR = Path(__file__).resolve().parent / ".work"
_work_dir = [DEFAULT_WORK_DIR]


def work_dir() -> Path:
    """Where the tools build (``--work-dir``; ``bench/.work`` by default)."""
    return _work_dir[0]


def use_work_dir(path: Path) -> None:
    _work_dir[0] = path.absolute()


@dataclass
class Sample:
    """One phase of one run of one tool at one N."""

    tool: str
    n: int
    run: int
    phase: str
    seconds: float
    max_rss_mb: float
    ran: int | None
    expected_ran: int
    report_ok: bool | None  # None: this phase has no report to check (no-op keeps the previous one)


@dataclass
class Matrix:
    """Every sample, each tool's status per N, and the content problems found."""

    samples: list[Sample] = field(default_factory=list)
    status: dict[str, dict[int, str]] = field(default_factory=dict)  # tool -> N -> "ok" | "over budget" | ...
    reports: dict[str, dict[int, str]] = field(default_factory=dict)  # tool -> N -> cold report text
    content_errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "samples": [asdict(s) for s in self.samples],
            "status": {t: {str(n): s for n, s in per.items()} for t, per in self.status.items()},
            "reports": {t: {str(n): s for n, s in per.items()} for t, per in self.reports.items()},
            "content_errors": self.content_errors,
        }


class OverBudget(Exception):
    """A phase ran past the time budget and was killed."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def expected_ran(phase: str, n: int) -> int:
    """Tasks a correct tool runs in ``phase``: all N + 1, none, or the cone of root 0 (N / 5)."""
    return {"cold": n + 1 if n else 0, "noop": 0, "incremental": workload.incremental_cone(n)}[phase]


def fresh_workdir(path: Path, tool: Tool, n: int) -> Path:
    """An empty work dir with W(n)'s inputs and ``tool``'s pipeline (a previous one is moved aside)."""
    set_aside(path)
    path.mkdir(parents=True)
    workload.write_inputs(path, n)
    tool.prepare(path, n)
    return path


def set_aside(path: Path) -> None:
    """Move ``path`` into the trash, which :func:`empty_trash` deletes once everything is measured.

    Deleting a W(20,000) build's ~100,000 files right before timing the next tool would charge
    that tool for it: ext4 without a journal (this machine's disk) skips recently deleted inodes
    when it allocates one, scanning them all, and a file-creating build then spends seconds of
    system time there (``perf``: ``recently_deleted`` in ``find_inode_bit``).
    """
    if path.exists():
        trash = work_dir() / ".trash"
        trash.mkdir(parents=True, exist_ok=True)
        path.rename(trash / uuid.uuid4().hex)


def empty_trash() -> None:
    shutil.rmtree(work_dir() / ".trash", ignore_errors=True)


def run_phases(
    tool: Tool, n: int, run: int, budget: float, workdir: Path, phases: tuple[str, ...] = PHASES
) -> tuple[list[Sample], bytes | None]:
    """Cold build, no-op re-run and incremental re-run of W(n) in a fresh ``workdir``.

    Returns the samples and the cold build's report.

    Raises:
        OverBudget: a phase took longer than ``budget`` seconds.
        ToolError: a build failed or its output could not be read.
    """
    fresh_workdir(workdir, tool, n)
    samples, cold_report = [], None
    for phase in phases:
        if phase == "incremental":
            workload.change_root0(workdir)
        measured = run_measured(
            tool.command(workdir), workdir, timeout=budget, env=tool.env(), log_dir=workdir / ".logs", label=phase
        )
        if measured.timed_out:
            raise OverBudget(f"{phase} over {budget:g} s")
        if measured.returncode != 0:
            tail = (measured.stderr.strip() or measured.stdout.strip()).splitlines()[-5:]
            raise ToolError(f"{phase} exited {measured.returncode}: " + " | ".join(tail))
        ran = tool.tasks_ran(measured)
        report_ok = None
        if phase != "noop":  # a no-op build keeps the cold build's report
            report = tool.report(workdir, measured)
            report_ok = report == workload.expected_report(n, changed=phase == "incremental")
            if phase == "cold":
                cold_report = report
        samples.append(
            Sample(
                tool.name,
                n,
                run,
                phase,
                round(measured.seconds, 4),
                round(measured.max_rss_mb, 1),
                ran,
                expected_ran(phase, n),
                report_ok,
            )
        )
    return samples, cold_report


def run_matrix(tools: list[Tool], sizes: list[int], runs: int, budget: float) -> Matrix:
    """Interleave tools within each run so that drift on the machine hits every tool alike."""
    matrix = Matrix(status={t.name: {} for t in tools}, reports={t.name: {} for t in tools})
    blocked: dict[str, str] = {}
    for n in sizes:
        for run in range(1, runs + 1):
            for tool in tools:
                if tool.name in blocked or matrix.status[tool.name].get(n, "ok") != "ok":
                    matrix.status[tool.name].setdefault(n, blocked.get(tool.name, "skipped"))
                    continue
                workdir = work_dir() / tool.name / str(n)
                try:
                    samples, cold_report = run_phases(tool, n, run, budget, workdir)
                except OverBudget as exc:
                    log(f"[N={n} run {run}/{runs}] {tool.name}: OVER BUDGET ({exc})")
                    matrix.status[tool.name][n] = "over budget"
                    blocked[tool.name] = f"skipped (over budget at N={n})"
                    continue
                except (ToolError, OSError) as exc:
                    log(f"[N={n} run {run}/{runs}] {tool.name}: ERROR {exc}")
                    matrix.status[tool.name][n] = f"error: {exc}"
                    blocked[tool.name] = f"skipped (error at N={n})"
                    continue
                matrix.status[tool.name][n] = "ok"
                matrix.samples.extend(samples)
                _check_content(matrix, tool.name, n, workdir, cold_report)
                for s in samples:
                    mark = "" if s.ran == s.expected_ran else f" (expected {s.expected_ran})"
                    content = {True: "", False: ", report not as expected", None: ""}[s.report_ok]
                    log(
                        f"[N={n} run {run}/{runs}] {tool.name:9} {s.phase:11} {s.seconds:8.3f} s  "
                        f"rss {s.max_rss_mb:6.1f} MB  ran {s.ran}{mark}{content}"
                    )
    return matrix


def _check_content(matrix: Matrix, tool: str, n: int, workdir: Path, report: bytes | None) -> None:
    """The cold report must be bit-identical across tools (and to the reference); say so loudly if not."""
    matrix.reports[tool][n] = report.decode(errors="replace").strip() if report is not None else "(missing)"
    expected = workload.expected_report(n)
    if report != expected:
        message = f"{tool} W({n}) cold: report {report!r} differs from the reference {expected!r} (see {workdir})"
        if message not in matrix.content_errors:
            matrix.content_errors.append(message)
            log(f"!!! CONTENT MISMATCH: {message}")
    others = {t: r[n] for t, r in matrix.reports.items() if n in r}
    if len(set(others.values())) > 1:
        message = f"W({n}) cold reports differ across tools: {others}"
        if message not in matrix.content_errors:
            matrix.content_errors.append(message)
            log(f"!!! CONTENT MISMATCH: {message}")
