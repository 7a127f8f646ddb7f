"""Figures beside the matrix: start-up time, import time, per-step cost of subprocess isolation."""

from __future__ import annotations

import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

from bench.procs import run_measured
from bench.suite import OverBudget, log, run_phases, work_dir
from bench.tools import Nemoflow, ToolError, clean_env


def time_command(command: list[str], repeats: int, label: str, timeout: float = 60.0) -> dict[str, Any]:
    """Minimum and median wall time of ``command`` over ``repeats`` runs (or the error it gave)."""
    times = []
    workdir = work_dir() / "startup"
    for _ in range(repeats):
        measured = run_measured(command, workdir, timeout=timeout, env=clean_env(), label=label)
        if measured.timed_out or measured.returncode != 0:
            lines = (measured.stderr.strip() or measured.stdout.strip() or "no output").splitlines()
            reason = "timed out" if measured.timed_out else f"exit {measured.returncode}"
            return {"command": shlex.join(command), "error": f"{reason}: {lines[-1]}"}
        times.append(measured.seconds)
    return {"command": shlex.join(command), "min": min(times), "median": statistics.median(times), "repeats": repeats}


def startup_times(repeats: int = 7) -> dict[str, dict[str, Any]]:
    """``nemoflow --help``, ``python -c "import nemoflow"`` and, for scale, a bare interpreter."""
    exe = Path(sys.executable).with_name("nemoflow")
    help_command = [str(exe), "--help"] if exe.exists() else [sys.executable, "-m", "nemoflow.cli", "--help"]
    return {
        "nemoflow --help": time_command(help_command, repeats, "help"),
        "import nemoflow": time_command([sys.executable, "-c", "import nemoflow"], repeats, "import"),
        "python (bare)": time_command([sys.executable, "-c", "pass"], repeats, "bare"),
    }


def isolation_overhead(n: int, runs: int, budget: float) -> dict[str, Any]:
    """Cold W(n) with steps in-process (--direct) and in a subprocess each; the cost per step."""
    found: dict[str, Any] = {"n": n, "runs": runs}
    for label, direct in (("direct", True), ("subprocess", False)):
        tool = Nemoflow("nemoflow", direct=direct)
        times = []
        for run in range(1, runs + 1):
            try:
                samples, _ = run_phases(tool, n, run, budget, work_dir() / "overhead" / label / str(n), ("cold",))
            except (OverBudget, ToolError, OSError) as exc:
                log(f"[overhead N={n}] {label}: {exc}")
                found[label] = {"error": str(exc)}
                return found
            if samples[0].ran != n + 1 or not samples[0].report_ok:
                found[label] = {"error": f"ran {samples[0].ran} of {n + 1} steps, report ok: {samples[0].report_ok}"}
                return found
            times.append(samples[0].seconds)
            log(f"[overhead N={n} run {run}/{runs}] nemoflow {label:10} cold {samples[0].seconds:8.3f} s")
        found[label] = {"min": min(times), "median": statistics.median(times)}
    steps = n + 1
    found["per_step_ms"] = (found["subprocess"]["median"] - found["direct"]["median"]) / steps * 1000
    found["per_step_ms_min"] = (found["subprocess"]["min"] - found["direct"]["min"]) / steps * 1000
    return found


NOOP_TARGET_N = 10_000  # issue 6 states the no-op target (under 1 s) at W(10,000)


def noop_at(n: int, runs: int, budget: float) -> dict[str, Any]:
    """nemoflow's no-op re-run of W(n), each after a cold build in a fresh folder: min and median."""
    tool = Nemoflow("nemoflow", direct=True)
    times = []
    for run in range(1, runs + 1):
        try:
            samples, _ = run_phases(tool, n, run, budget, work_dir() / "noop" / str(n), ("cold", "noop"))
        except (OverBudget, ToolError, OSError) as exc:
            return {"n": n, "error": str(exc)}
        noop = samples[1]
        if noop.ran != 0:
            return {"n": n, "error": f"the no-op re-run ran {noop.ran} steps"}
        times.append(noop.seconds)
        log(f"[no-op N={n} run {run}/{runs}] nemoflow noop {noop.seconds:8.3f} s")
    return {"n": n, "min": min(times), "median": statistics.median(times), "runs": runs}


HEAVY_MODULES = ("luigi", "sqlite_utils", "sqlite3", "pydantic", "numpy", "rich", "dill", "yaml")


def noop_imports(n: int, budget: float) -> dict[str, Any]:
    """Which heavy modules a no-op nemoflow build imports (``PYTHONPROFILEIMPORTTIME``)."""
    tool = Nemoflow("nemoflow", direct=True)
    workdir = work_dir() / "imports" / str(n)
    try:
        run_phases(tool, n, 1, budget, workdir, ("cold",))
    except (OverBudget, ToolError, OSError) as exc:
        return {"n": n, "error": str(exc)}
    env = {**tool.env(), "PYTHONPROFILEIMPORTTIME": "1"}
    measured = run_measured(
        tool.command(workdir), workdir, timeout=budget, env=env, log_dir=workdir / ".logs", label="noop-imports"
    )
    if measured.returncode != 0 or measured.timed_out:
        return {"n": n, "error": f"no-op build exited {measured.returncode}"}
    modules = set()
    for line in measured.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":  # the header line
                modules.add(name)
    tops = {m.split(".")[0] for m in modules}
    return {
        "n": n,
        "modules": len(modules),
        "watched": list(HEAVY_MODULES),
        "heavy": [m for m in HEAVY_MODULES if m in tops],
    }
