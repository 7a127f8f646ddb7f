"""One adapter per tool: how to build W(N) with it, how many tasks it ran, and its report's bytes."""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import peers
from bench.pipelines import DOIT_FILE, LUIGI_FILE, NEMOFLOW_FILE, SNAKEFILE, write_pipeline
from bench.procs import Measured

TOOLS = ("nemoflow", "snakemake", "luigi", "doit")


class ToolError(RuntimeError):
    """A build did not succeed, or its output could not be understood."""


def last_json_object(text: str) -> dict[str, Any]:
    """The last JSON object printed on stdout (one line or pretty-printed over several)."""
    decoder = json.JSONDecoder()
    tail = text.rstrip()
    for match in reversed(list(re.finditer(r"(?m)^\{", tail))):
        try:
            value, end = decoder.raw_decode(tail, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and not tail[end:].strip():
            return value
    raise ToolError("no JSON object at the end of stdout")


def clean_env(extra_path: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NEMOFLOW_STORE", "PYTHONPATH", "VIRTUAL_ENV")}
    if extra_path is not None:
        env["PATH"] = f"{extra_path}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(extra_path.parent)
    return env


@dataclass
class Tool:
    """The parts every adapter shares."""

    name: str

    def prepare(self, workdir: Path, n: int) -> Path:
        return write_pipeline(self.name, workdir, n)

    def env(self) -> dict[str, str]:
        return clean_env(peers.VENV / "bin")

    def command(self, workdir: Path) -> list[str]:
        raise NotImplementedError

    def tasks_ran(self, measured: Measured) -> int:
        """Tasks this build ran (executed), from the tool's own account."""
        raise NotImplementedError

    def report(self, workdir: Path, measured: Measured) -> bytes | None:
        path = workdir / "out" / "report.txt"
        return path.read_bytes() if path.exists() else None


# ---- nemoflow ---------------------------------------------------------------------------------


def nemoflow_command(pipeline: Path, *, direct: bool) -> list[str]:
    """The one place that decides how nemoflow is invoked: its CLI."""
    exe = Path(sys.executable).with_name("nemoflow")
    launcher = [str(exe)] if exe.exists() else [sys.executable, "-m", "nemoflow.cli"]
    # the store beside the pipeline: a work folder inside a git checkout would otherwise use the checkout's targets/
    store = ["--store", str(pipeline.parent / "targets")]
    return [*launcher, "build", str(pipeline), "--json", *store, *(["--direct"] if direct else [])]


@dataclass
class Nemoflow(Tool):
    """nemoflow from the current interpreter; ``direct`` runs steps in-process."""

    direct: bool = True

    def env(self) -> dict[str, str]:
        return clean_env()

    def command(self, workdir: Path) -> list[str]:
        return nemoflow_command(workdir / NEMOFLOW_FILE, direct=self.direct)

    def _result(self, measured: Measured) -> dict[str, Any]:
        result = last_json_object(measured.stdout)
        if result.get("failed"):
            first = result["failed"][0]
            raise ToolError(f"{len(result['failed'])} steps failed, first {first.get('name')}: {first.get('error')}")
        return result

    def tasks_ran(self, measured: Measured) -> int:
        return len(self._result(measured)["ran"])

    def report(self, workdir: Path, measured: Measured) -> bytes | None:
        """targets/report/<key>/report.txt for the report's key in this build (a folder counts with a manifest)."""
        result = self._result(measured)
        keys = [o["key"] for o in result["ran"] + result["skipped"] if o["name"] == "report"]
        folders = [workdir / "targets" / "report" / key for key in keys]
        if not folders:  # older outputs: the newest published report folder
            folders = sorted((workdir / "targets" / "report").glob("*"), key=lambda p: _mtime(p / "nemoflow.json"))
            folders = folders[-1:]
        for folder in folders:
            if (folder / "nemoflow.json").exists() and (folder / "report.txt").exists():
                return (folder / "report.txt").read_bytes()
        return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


# ---- peers --------------------------------------------------------------------------------------

# Snakemake 9 runs each ``run:`` job in a freshly spawned ``python -m snakemake`` process unless told to
# use threads (about 1.7 s per job on the 2-core machine: W(100) would take ~3 min, W(1,000) ~half an
# hour). ``--force-use-threads`` runs the Python ``run:`` blocks in-process, like nemoflow's --direct.
SNAKEMAKE_FLAGS = ("--cores", "1", "--force-use-threads")
# Snakemake builds its DAG recursively: from W(5,000) on (500 layers) it stops with "RecursionError:
# maximum recursion depth exceeded". It is run with Python's recursion limit raised, as a user would
# have to; nothing else changes.
SNAKEMAKE_RECURSION_LIMIT = 100_000
_SNAKEMAKE_MAIN = (
    f"import sys; sys.setrecursionlimit({SNAKEMAKE_RECURSION_LIMIT}); sys.argv[0] = 'snakemake'; "
    "from snakemake.cli import main; sys.exit(main())"
)
_SNAKEMAKE_FINISHED = re.compile(r"(?m)^Finished jobid: \d+ \(Rule: (\w+)\)")
_SNAKEMAKE_DONE = re.compile(r"(\d+) of \d+ steps \(\d+%\) done")


@dataclass
class Snakemake(Tool):
    """Snakemake with Python ``run:`` rules, ``--cores 1`` (see SNAKEMAKE_FLAGS)."""

    def command(self, workdir: Path) -> list[str]:
        return [str(peers.venv_bin("python")), "-c", _SNAKEMAKE_MAIN, *SNAKEMAKE_FLAGS, "--snakefile", SNAKEFILE]

    def tasks_ran(self, measured: Measured) -> int:
        """Finished jobs of the W(N) rules; the ``all`` target rule is not a task of W(N)."""
        text = measured.stderr + measured.stdout
        finished = _SNAKEMAKE_FINISHED.findall(text)
        if finished:
            return sum(1 for rule in finished if rule != "all")
        done = _SNAKEMAKE_DONE.findall(text)
        if done:  # older log format: the progress line counts the ``all`` job too
            return max(0, int(done[-1]) - 1)
        if "Nothing to be done" in text:
            return 0
        raise ToolError("no progress line in Snakemake's output")


@dataclass
class Luigi(Tool):
    """Plain luigi: local scheduler, 1 worker, LocalTargets; the script counts SUCCESS events."""

    def command(self, workdir: Path) -> list[str]:
        return [str(peers.venv_bin("python")), LUIGI_FILE]

    def tasks_ran(self, measured: Measured) -> int:
        return int(last_json_object(measured.stdout)["ran"])


_DOIT_RAN = re.compile(r"(?m)^\. ")


@dataclass
class Doit(Tool):
    """doit, ``-n 1``; a ``.`` line is a task executed, ``--`` one up to date."""

    def command(self, workdir: Path) -> list[str]:
        return [str(peers.venv_bin("doit")), "-n", "1", "-f", DOIT_FILE]

    def tasks_ran(self, measured: Measured) -> int:
        return len(_DOIT_RAN.findall(measured.stdout))


def make_tool(name: str, *, direct: bool = True) -> Tool:
    """The adapter for ``name`` (one of TOOLS)."""
    if name == "nemoflow":
        return Nemoflow(name, direct=direct)
    classes: dict[str, type[Tool]] = {"snakemake": Snakemake, "luigi": Luigi, "doit": Doit}
    if name not in classes:
        raise ValueError(f"unknown tool {name!r}; known: {', '.join(TOOLS)}")
    return classes[name](name)
