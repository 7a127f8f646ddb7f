"""``python -m bench``: build W(N) with nemoflow and its peers, write bench/results/RESULTS.md and plot.png."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import extras, peers, report, workload
from bench.suite import DEFAULT_WORK_DIR, empty_trash, log, run_matrix, set_aside, use_work_dir, work_dir
from bench.tools import TOOLS, make_tool

BENCH_DIR = Path(__file__).resolve().parent
QUICK_SIZES = [100, 1000]
FULL_SIZES = [100, 1000, 5000, 20000]
OVERHEAD_N = 100


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"N in {QUICK_SIZES}, 1 run unless --runs is given (a smoke run of about 1-2 min)",
    )
    parser.add_argument(
        "--sizes", help=f"comma-separated N, multiples of 10 (default {','.join(map(str, FULL_SIZES))})"
    )
    parser.add_argument("--runs", type=int, help="runs per tool and N; min and median are reported (default 3)")
    parser.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated subset of {','.join(TOOLS)}")
    parser.add_argument(
        "--budget",
        type=float,
        default=300.0,
        help="seconds for one build; a tool over it is marked 'over budget' and skipped at larger N",
    )
    parser.add_argument(
        "--out", default=str(BENCH_DIR / "results"), help="folder for RESULTS.md, results.json, plot.png"
    )
    parser.add_argument(
        "--work-dir",
        default=str(DEFAULT_WORK_DIR),
        help="where the tools build (a tmpfs such as /dev/shm/nf-bench takes the disk out of the figures)",
    )
    parser.add_argument(
        "--overhead-n",
        type=int,
        default=OVERHEAD_N,
        help="N for the subprocess-vs-direct per-step overhead figure (0: skip)",
    )
    args = parser.parse_args(argv)
    if args.sizes:
        args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    else:
        args.sizes = QUICK_SIZES if args.quick else FULL_SIZES
    for n in [*args.sizes, args.overhead_n]:
        try:
            workload.layers(n)
        except ValueError as exc:
            parser.error(str(exc))
    args.runs = args.runs if args.runs is not None else (1 if args.quick else 3)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [t for t in args.tools if t not in TOOLS]
    if unknown:
        parser.error(f"unknown tools {unknown}; known: {', '.join(TOOLS)}")
    return args


def machine() -> str:
    """CPU model, cores, memory and OS, for the record."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
        with open("/proc/meminfo") as handle:
            kib = int(next(line.split()[1] for line in handle if line.startswith("MemTotal")))
        memory = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        memory = "unknown memory"
    return f"{cpu}, {os.cpu_count()} cores, {memory}, {platform.platform()}"


def git_state() -> str:
    """The commit measured, and whether nemoflow/ had uncommitted changes (others may be editing it)."""
    root = BENCH_DIR.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "nemoflow"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return f"{commit or 'unknown'}" + (" with uncommitted changes in nemoflow/" if dirty else "")


def file_system(path: Path) -> str:
    """The type of the file system ``path`` is on (``df --output=fstype``), e.g. ext4 or tmpfs."""
    try:
        done = subprocess.run(["df", "--output=fstype", str(path)], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown file system"
    lines = done.stdout.split()
    return lines[-1] if done.returncode == 0 and len(lines) > 1 else "unknown file system"


def plot(results_json: Path, png: Path) -> str | None:
    """Draw the plot with the peers' venv (it has matplotlib); the error text if that failed."""
    done = subprocess.run(
        [str(peers.venv_bin("python")), str(BENCH_DIR / "plot.py"), str(results_json), str(png)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["plot failed"])[-1]


def problems_found(results: dict[str, Any]) -> list[str]:
    """Content mismatches, build errors, and wrong answers of nemoflow itself (peers' are only reported)."""
    problems = list(results["matrix"]["content_errors"])
    for tool, per_n in results["matrix"]["status"].items():
        problems += [f"{tool} W({n}): {status}" for n, status in per_n.items() if status.startswith("error")]
    for s in results["matrix"]["samples"]:
        if s["tool"] == "nemoflow" and (s["ran"] != s["expected_ran"] or s["report_ok"] is False):
            problems.append(
                f"nemoflow W({s['n']}) run {s['run']} {s['phase']}: ran {s['ran']} "
                f"(want {s['expected_ran']}), report ok: {s['report_ok']}"
            )
    overhead = results["extras"].get("overhead", {})
    problems += [
        f"overhead {mode}: {overhead[mode]['error']}"
        for mode in ("direct", "subprocess")
        if "error" in overhead.get(mode, {})
    ]
    return problems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.time()
    out = Path(args.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    use_work_dir(Path(args.work_dir))
    for old in [p for p in work_dir().glob("*") if p.name != ".trash"] if work_dir().is_dir() else []:
        set_aside(old)  # deleted at the end, not while tools are timed (see suite.set_aside)
    work_dir().mkdir(parents=True, exist_ok=True)
    peers.ensure_venv(log)
    tools = [make_tool(name) for name in args.tools]
    commands = {t.name: shlex.join(t.command(Path("."))) for t in tools}
    meta = {
        "work_dir": str(work_dir()),
        "work_fs": file_system(work_dir()),
        "command": shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "git": git_state(),
        "sizes": args.sizes,
        "runs": args.runs,
        "budget": args.budget,
        "tools": args.tools,
        "commands": commands,
        "versions": {"main": peers.main_versions(), "peers": peers.peer_versions()},
    }
    extra: dict[str, Any] = {}
    if "nemoflow" in args.tools:
        extra["startup"] = extras.startup_times()
    matrix = run_matrix(tools, args.sizes, args.runs, args.budget)
    if "nemoflow" in args.tools and args.overhead_n:
        extra["overhead"] = extras.isolation_overhead(args.overhead_n, args.runs, args.budget)
    if "nemoflow" in args.tools and not args.quick:
        extra["noop_target"] = extras.noop_at(extras.NOOP_TARGET_N, args.runs, args.budget)
    if "nemoflow" in args.tools:  # what a no-op imports does not depend on N: the smallest will do
        extra["noop_imports"] = extras.noop_imports(min([n for n in args.sizes if n] or [100]), args.budget)
    meta["seconds"] = round(time.time() - started, 1)
    results = {
        "meta": meta,
        "matrix": matrix.as_dict(),
        "extras": extra,
        "reference_reports": {str(n): (workload.expected_report(n) or b"").decode().strip() for n in args.sizes},
    }
    empty_trash()
    results["problems"] = problems_found(results)
    results_json, results_md, png = out / "results.json", out / "RESULTS.md", out / "plot.png"
    results_json.write_text(json.dumps(results, indent=1))
    plot_error = plot(results_json, png)
    if plot_error:
        results["problems"].append(f"plot failed: {plot_error}")
    results_md.write_text(report.render(results) + f"\nWhole benchmark run: {meta['seconds']:.0f} s.\n")
    log(f"wrote {results_md}, {results_json}" + ("" if plot_error else f", {png}"))
    if results["problems"]:
        log("!!! PROBLEMS:\n" + "\n".join(f"  - {p}" for p in results["problems"]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
