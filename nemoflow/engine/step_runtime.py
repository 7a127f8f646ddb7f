"""The step-side runtime: ``python -m nemoflow.run_step JOB.json`` and the in-process equivalent.

Inside a running step, :func:`output_dir` is the folder to write outputs into and
:func:`log_metrics` appends a row of metrics to ``metrics.jsonl`` there.
"""

from __future__ import annotations

# Imports inside functions keep a step's start-up to what its job needs (no pipeline import, no dill,
# no subprocess for Python steps).
import contextvars
import json
import os
import sys
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nemoflow.configs.core import Partial, Script, build, trusted_values
from nemoflow.configs.refs import File, StepOutput, StepResult
from nemoflow.store.targets import METRICS, METRICS_TIMES, RESULT_JSON, RESULT_PICKLE, load_result_from

OUTPUT_DIR_ENV = "NEMOFLOW_OUTPUT_DIR"
_current_output: contextvars.ContextVar[Path | None] = contextvars.ContextVar("nemoflow_output_dir", default=None)


def output_dir() -> Path:
    """The folder the running step writes its outputs into.

    Raises:
        RuntimeError: called outside a running step.
    """
    current = _current_output.get()
    if current is not None:
        return current
    env = os.environ.get(OUTPUT_DIR_ENV)
    if env:
        return Path(env)
    raise RuntimeError("nemoflow.output_dir() is only defined inside a running step")


def log_metrics(**values: Any) -> None:
    """Append one row of metrics to the step's ``metrics.jsonl``.

    When it was logged goes to ``metrics.times.jsonl`` (not an output: not hashed, not compared by
    ``nemoflow reproduce``), so the outputs of a step that logs metrics depend only on its inputs and code.
    """
    folder = output_dir()
    logged = time.time()
    with open(folder / METRICS, "a") as handle:
        handle.write(json.dumps(values, default=float) + "\n")
    with open(folder / METRICS_TIMES, "a") as handle:
        handle.write(json.dumps({"time": logged}) + "\n")


class _Named:
    """A stand-in for a step handle inside a job: only its name is needed."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.experiment = None


def make_resolver(upstream_dirs: Mapping[str, str], workdir: str) -> Any:
    """Turn references into run-time values: paths of upstream files, upstream results."""

    def resolve(ref: Any) -> Any:
        if isinstance(ref, File):
            return ref.path if os.path.isabs(ref.path) else os.path.join(workdir, ref.path)
        folder = upstream_dirs[ref.step.name]
        if isinstance(ref, StepOutput):
            return os.path.join(folder, ref.path) if ref.path else folder
        if isinstance(ref, StepResult):
            return load_result_from(Path(folder))
        raise TypeError(ref)

    return resolve


def script_command(script: Script, resolve: Any, workdir: str) -> list[str]:
    """The command line of a Script step, its references resolved and its path made absolute."""
    command = [str(resolve(a)) if isinstance(a, (File, StepOutput)) else str(a) for a in script.command()]
    if script.path is not None and not script.m and not os.path.isabs(script.path):
        command[1] = os.path.join(workdir, script.path)
    if command[0] == "python":
        command[0] = sys.executable
    return command


def run_script(script: Script, *, output: Path, upstream_dirs: Mapping[str, str], workdir: str) -> int:
    """Run a Script step as a child of this process (on a remote backend); its exit code."""
    import subprocess

    command = script_command(script, make_resolver(upstream_dirs, workdir), workdir)
    env = {**os.environ, **script.env, OUTPUT_DIR_ENV: str(output)}
    sys.stdout.flush()
    return subprocess.run(command, cwd=workdir, env=env, stdin=subprocess.DEVNULL, check=False).returncode


def execute_task(task: Any, *, output: Path, upstream_dirs: Mapping[str, str], workdir: str) -> Any:
    """Build and run one step's task in this process, and store its return value in ``output``."""
    if isinstance(task, Script):
        code = run_script(task, output=output, upstream_dirs=upstream_dirs, workdir=workdir)
        if code:
            raise SystemExit(code)
        return None
    token = _current_output.set(output)
    try:
        built = build(task, resolve=make_resolver(upstream_dirs, workdir))
        value = built() if isinstance(task, Partial) else built
    finally:
        _current_output.reset(token)
    save_result(value, output)
    return value


def save_result(value: Any, output: Path) -> None:
    if value is None:
        return
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        import dill

        (output / RESULT_PICKLE).write_bytes(dill.dumps(value, recurse=True))
        return
    (output / RESULT_JSON).write_text(text)


def execute_job(job: dict[str, Any]) -> Any:
    """Run a job written by the build (see ``runner.job_spec``) in this process."""
    from nemoflow.configs.serialize import from_data

    for entry in reversed(job.get("sys_path", [])):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    pipeline = job.get("pipeline")
    if pipeline and pipeline["module"] not in sys.modules:
        from nemoflow.pipeline.loading import import_pipeline_module

        import_pipeline_module(Path(pipeline["file"]))
    steps = {name: _Named(name) for name in job["upstream_dirs"]}
    with trusted_values():  # checked by the build that wrote the job
        task = from_data(job["task"], steps=steps, trusted=True)  # the job file is nemoflow's own: its pickles too
    return execute_task(
        task, output=Path(job["output_dir"]), upstream_dirs=job["upstream_dirs"], workdir=job["workdir"]
    )


PARENT_PID_ENV = "NEMOFLOW_PARENT_PID"
CODE_ROOT_ENV = "NEMOFLOW_CODE_ROOT"


def _at_code_root(job: dict[str, Any]) -> dict[str, Any]:
    """The job's code paths with ``${NEMOFLOW_CODE_ROOT}`` replaced: a backend that unpacks the code where only
    the job knows (Ray's working_dir) writes its paths relative to it. Config values are never touched."""
    root = os.environ.get(CODE_ROOT_ENV)
    marker = "${" + CODE_ROOT_ENV + "}"
    if not root:
        return job

    def at(path: str) -> str:
        return root + path[len(marker) :] if path.startswith(marker) else path

    job = {**job, "workdir": at(job["workdir"]), "sys_path": [at(p) for p in job.get("sys_path", [])]}
    if job.get("pipeline"):
        job["pipeline"] = {**job["pipeline"], "file": at(job["pipeline"]["file"])}
    return job


def die_with_parent(parent: int | None) -> None:
    """Outlive no build: when process ``parent`` dies (even by SIGKILL), this process gets SIGKILL too.

    Used by a step's process (``parent`` from ``NEMOFLOW_PARENT_PID``) and by luigi's forked workers
    (``parent``: the build's pid). Linux only; elsewhere it does nothing.
    """
    if not parent or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    except OSError:
        return
    if os.getppid() != parent:  # the parent died before we asked to follow it
        os._exit(1)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m nemoflow.run_step JOB.json", file=sys.stderr)
        return 2
    parent = os.environ.get(PARENT_PID_ENV)
    die_with_parent(int(parent) if parent else None)
    job = _at_code_root(json.loads(Path(args[0]).read_text()))
    os.environ[OUTPUT_DIR_ENV] = job["output_dir"]
    try:
        execute_job(job)
    except BaseException as exc:  # report every failure as the step's, with its traceback
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            return 0
        traceback.print_exc()
        print(f"nemoflow: step {job['step']!r} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 1
    return 0

