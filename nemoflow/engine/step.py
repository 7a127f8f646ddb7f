"""Run one planned step: workspace, executor, publish or keep the failure, ledger rows."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import os
import socket
import sqlite3
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from nemoflow.configs.core import Script
from nemoflow.configs.serialize import to_data
from nemoflow.engine.limits import TimedOut, alarm_after, stopped_after
from nemoflow.engine.step_runtime import (
    OUTPUT_DIR_ENV,
    PARENT_PID_ENV,
    die_with_parent,
    execute_task,
    make_resolver,
    script_command,
)
from nemoflow.errors import ExecutorError, LedgerError, StepFailed, UserError
from nemoflow.executors import Executor, Job, JobResult, JobState, executor_to_data
from nemoflow.executors.local import LocalExecutor
from nemoflow.pipeline.keys import KEY_VERSION
from nemoflow.pipeline.plan import Plan, PlannedStep, executor_name
from nemoflow.record.ledger import REUSED, REUSED_NOTE, Ledger, storage_problem
from nemoflow.store.hashing import FileHashCache
from nemoflow.store.locks import key_lock
from nemoflow.store.targets import JOB, LOG, Store, printable_name


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:8]


@dataclass
class BuildContext:
    """Everything a worker needs to run steps of one build (it crosses forks: no connections)."""

    plan: Plan
    store: Store
    ledger_path: Path
    experiment_id: str
    environment_id: str
    started: float
    direct: bool = False
    tail_logs: bool | frozenset[str] = False  # every step's output to the screen, or these steps'
    max_concurrent: int | None = None  # at most this many steps run at once (a luigi resource)
    central: bool = False  # luigid hands out the steps: other processes build the same plan
    executor_filter: str | None = None  # run only steps of this executor (``nemoflow worker``)
    register_only: bool = False  # run nothing here: register the steps and wait (``--no-run``)
    scheduler_resources: frozenset[str] = frozenset()  # (central) the luigi resources luigid lists
    detached: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> a live run a detached build submitted
    step_timeout: float | None = None  # seconds a step may run when its executor sets no ``timeout``
    wait_detached: Callable[[BuildContext, PlannedStep, dict[str, Any]], None] | None = field(default=None, repr=False)
    build_pid: int = field(default_factory=os.getpid)  # the build's own process (luigi may fork workers)
    _followed: int = field(default=0, repr=False)  # the forked worker that already follows the build
    _ledger: Ledger | None = field(default=None, repr=False)
    _ledger_pid: int = field(default=0, repr=False)
    _built: set[str] = field(default_factory=set, repr=False)  # keys this process published in this build

    def tails(self, step: PlannedStep) -> bool:
        """Whether the step's output goes to the screen too."""
        return self.tail_logs is True or (isinstance(self.tail_logs, frozenset) and step.name in self.tail_logs)

    def build_step(self, step: PlannedStep) -> None:
        """Run ``step`` here, or wait for the job a detached build submitted for it (how the luigi adapter builds one).

        Raises:
            StepFailed: the step did not succeed.
        """
        if os.getpid() != self.build_pid and self._followed != os.getpid():  # a worker luigi forked
            die_with_parent(self.build_pid)  # a killed build takes its workers (and so their steps) along
            self._followed = os.getpid()
        live = self.detached.get(step.key)
        try:
            if live is not None and self.wait_detached is not None:
                self.wait_detached(self, step, live)
            else:
                run_planned_step(self, step)
        except (OSError, sqlite3.DatabaseError, LedgerError) as exc:  # the store refused, not the step
            raise store_refused(self, step, exc) from exc

    def ledger(self) -> Ledger:
        """This process's ledger connection (a forked worker opens its own)."""
        if self._ledger is None or self._ledger_pid != os.getpid():
            self._ledger = Ledger(self.ledger_path)
            self._ledger_pid = os.getpid()
        return self._ledger

    def runs_here(self, step: PlannedStep) -> bool:
        """Whether this process may run ``step`` (else it registers it as not runnable by it)."""
        if self.register_only:
            return False
        return self.executor_filter is None or executor_name(step) == self.executor_filter

    def upstream_dirs(self, step: PlannedStep) -> dict[str, str]:
        root = str(self.store.root)  # os.path, not pathlib: this runs for every step
        return {name: os.path.join(root, name, key) for name, key in step.upstream.items()}

    def mark_built(self, step: PlannedStep) -> None:
        """Note that this process published ``step`` in this build (``is_done`` then needs no stat)."""
        self._built.add(step.key)

    def is_done(self, step: PlannedStep) -> bool:
        """Complete for this build: published, and after the build began when it was forced."""
        if step.key in self._built:
            return True
        if step.reason.value not in ("forced", "target damaged"):  # a damaged target stays in place until it runs
            return self.store.is_complete(step.name, step.key)
        try:
            manifest = self.store.read_manifest(step.name, step.key)
        except ValueError:  # an unreadable manifest: the damaged target itself
            return False
        return manifest is not None and manifest.get("published", 0) >= self.started


def run_planned_step(ctx: BuildContext, step: PlannedStep) -> None:
    """Build ``step`` and publish its target; record the run in the ledger.

    Raises:
        StepFailed: the step did not succeed (nothing is published).
    """
    with key_lock(ctx.store.root, step.key):  # one builder per key, whichever build or worker asks
        if ctx.is_done(step):  # another build published it while we planned or waited: use its target
            _record_reused(ctx, step)
            return
        _run_and_publish(ctx, step)


def _record_reused(ctx: BuildContext, step: PlannedStep) -> None:
    """A run that says this build took ``step``'s target from the build that made it meanwhile."""
    run_id = new_run_id()
    host = socket.gethostname()
    ledger = ctx.ledger()
    ledger.start_run(
        {
            "id": run_id,
            "experiment_id": ctx.experiment_id,
            "key": step.key,
            "step": step.name,
            "reason": step.reason.value,
            "executor": "none",
            "host": host,
            "worker": f"{host}:{os.getpid()}",
            "pid": os.getpid(),
            "environment_id": ctx.environment_id,
        }
    )
    ledger.finish_run(run_id, status=REUSED, error=REUSED_NOTE, key=None)


def _run_and_publish(ctx: BuildContext, step: PlannedStep) -> None:
    in_process = ctx.direct and not isinstance(step.task, Script)
    executor = None if in_process else (step.executor or LocalExecutor())
    run_id, workspace = start_run(ctx, step, "direct" if executor is None else executor.name)
    if executor is not None:
        ctx.ledger().flush()  # a job outside this process: its run is on record before it exists
    started = time.time()
    try:
        if ctx.store.cancel_requested(ctx.experiment_id, step.name):
            result = JobResult(JobState.CANCELLED, None, "cancelled")
        elif in_process:
            result = _run_in_process(ctx, step, workspace)
        else:
            assert executor is not None
            result = _run_with_executor(ctx, step, workspace, executor, run_id)
    except KeyboardInterrupt:
        interrupted = JobResult(JobState.CANCELLED, None, "interrupted")
        fail_run(ctx.store, ctx.ledger(), step.name, step.key, workspace, run_id, interrupted)
        raise
    except Exception as exc:  # a backend's unexpected error: the run ends failed, never stays "running"
        result = JobResult(JobState.FAILED, None, f"{type(exc).__name__}: {exc}")
    record = step_record(ctx, step, run_id, started)
    finish_run(ctx.store, ctx.ledger(), workspace, run_id, record, result, hashes=ctx.plan.file_hashes)
    ctx.mark_built(step)


def start_run(ctx: BuildContext, step: PlannedStep, executor: str, *, detached: bool = False) -> tuple[str, Path]:
    """A new run of ``step`` in the ledger, and its private workspace."""
    run_id = new_run_id()
    if step.reason.value == "target damaged":  # kept for inspection, out of the way of the new target
        ctx.store.set_aside_damaged(step.name, step.key)
    workspace = ctx.store.new_workspace(step.name, step.key, detached=detached)
    host, pid = socket.gethostname(), os.getpid()
    ctx.ledger().start_run(
        {
            "id": run_id,
            "experiment_id": ctx.experiment_id,
            "key": step.key,
            "step": step.name,
            "reason": step.reason.value,
            "executor": executor,
            "host": host,
            "worker": f"{host}:{pid}",
            "pid": pid,
            "environment_id": ctx.environment_id,
            "log_path": os.path.join(workspace, LOG),
        }
    )
    return run_id, workspace


def step_record(ctx: BuildContext, step: PlannedStep, run_id: str, started: float) -> dict[str, Any]:
    """What the manifest of ``step``'s target records (besides its files)."""
    return {
        "step": step.name,
        "key": step.key,
        "replace": step.reason.value == "forced",
        "kind": step.kind,
        "config": step.config,
        "code": step.code,
        "code_parts": step.code_parts,
        "key_version": KEY_VERSION,
        "salt": ctx.plan.salt,
        "upstream": step.upstream,
        "inputs": step.files,
        "run_id": run_id,
        "experiment_id": ctx.experiment_id,
        "started": started,
        "workdir": str(ctx.plan.workdir),  # where the inputs are read from: not in the manifest
        "outputs": sorted(step.outputs),  # files other steps read: checked, not in the manifest
    }


def finish_run(
    store: Store,
    ledger: Ledger,
    workspace: Path,
    run_id: str,
    record: dict[str, Any],
    result: JobResult,
    *,
    hashes: FileHashCache | None = None,
) -> None:
    """Publish the workspace of a succeeded run, or keep it as failed; close the run in the ledger.

    A run that succeeded is published only when its inputs still hash as its key says and it
    wrote every file other steps read from it.

    Args:
        hashes: the plan's file hashes (an input whose stat did not change is not read again).

    Raises:
        StepFailed: the run did not succeed, or its target could not be trusted (nothing is published).
    """
    name, key = record["step"], record["key"]
    if result.succeeded:
        problem = _changed_input(record, hashes or FileHashCache()) or _missing_output(record, workspace)
        if problem:
            result = JobResult(JobState.FAILED, None, problem, backend_state=result.backend_state)
    if not result.succeeded:
        fail_run(store, ledger, name, key, workspace, run_id, result)
        raise StepFailed(name, result.error or result.state.value, exit_code=result.exit_code)
    fields = {k: v for k, v in record.items() if k not in _NOT_IN_MANIFEST}
    fields["seconds"] = round(time.time() - record["started"], 3)
    manifest = store.publish(workspace, step=name, key=key, replace=record["replace"], record=fields)
    ledger.finish_run(
        run_id,
        status="succeeded",
        exit_code=0,
        log_path=os.path.join(store.root, name, key, LOG),
        key=key,
        artifacts=[{**f, "path": printable_name(f["path"])} for f in manifest["files"]],  # SQLite text is UTF-8
        backend_state=result.backend_state,
    )


_NOT_IN_MANIFEST = frozenset({"step", "key", "replace", "started", "workdir", "outputs"})


def _changed_input(record: dict[str, Any], hashes: FileHashCache) -> str:
    """The input whose content is no longer what the key was made of ("" when none): edited while the step ran."""
    workdir = record.get("workdir") or os.getcwd()
    for path, digest in record.get("inputs", {}).items():
        try:
            now = hashes.sha256(os.path.join(workdir, path))  # an absolute path stays as it is
        except OSError:
            now = None
        if now != digest:
            return f"input {path} changed while the step ran; nothing was published — build again"
    return ""


def _missing_output(record: dict[str, Any], workspace: Path) -> str:
    """A file other steps read that the step did not write ("" when it wrote them all)."""
    for path in record.get("outputs", ()):
        if not os.path.exists(os.path.join(workspace, path)):
            return f"the step did not write {path}, which other steps read (h.output({path!r})); nothing was published"
    return ""


def fail_run(
    store: Store, ledger: Ledger, name: str, key: str, workspace: Path, run_id: str, result: JobResult
) -> None:
    """Keep a failed run's workspace under ``.failed`` and close the run in the ledger.

    When the disk is too full for the ledger to take the run's end, the failed run's outputs (most
    likely what filled it) are deleted, its log kept, and the run closed with a note saying so.
    """
    kept = store.keep_failed(workspace, step=name, key=key, run_id=run_id)
    close = functools.partial(
        ledger.finish_run,
        run_id,
        status=result.state.value,
        exit_code=result.exit_code,
        log_path=str(kept / LOG),
        backend_state=result.backend_state,
    )
    try:
        close(error=result.error)
    except LedgerError as exc:
        if "disk is full" not in str(exc.__cause__) or not _delete_outputs(kept):
            raise
        close(error=f"{result.error} (the disk was full: its outputs were deleted to make room, its log kept)")


def _delete_outputs(folder: Path) -> int:
    """Delete every file of a failed run's folder but its log; the bytes freed."""
    freed = 0
    for path in sorted(folder.rglob("*"), reverse=True):
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            elif path.name != LOG or path.parent != folder:
                size = path.lstat().st_size
                path.unlink()
                freed += size
    return freed


def _storage_message(exc: BaseException, ledger_path: Path) -> str:
    """The first refusal of the disk in ``exc``'s chain (a failed clean-up may hide it), else ``exc`` itself."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, LedgerError):
            return str(seen)
        problem = storage_problem(seen, ledger_path)
        if problem is not None:
            return problem
        seen = seen.__cause__ or seen.__context__
    return f"{type(exc).__name__}: {exc}"


def store_refused(ctx: BuildContext, step: PlannedStep, exc: BaseException) -> StepFailed:
    """A run that broke outside its step, because the store refused a write (read-only, no permission,
    disk full): its run is closed as failed with one line naming the path and what to do, so no run
    stays ``running`` (unless the ledger itself refuses: then the build's end reports that)."""
    message = _storage_message(exc, ctx.ledger_path)
    with contextlib.suppress(LedgerError):
        ledger = ctx.ledger()
        sql = "select id from runs where experiment_id = ? and key = ? and status = 'running'"
        open_runs = [row["id"] for row in ledger.rows(sql, [ctx.experiment_id, step.key])]
        if not open_runs:  # it broke before its run was recorded (no workspace could be made)
            open_runs = [new_run_id()]
            host = socket.gethostname()
            ledger.start_run(
                {
                    "id": open_runs[0],
                    "experiment_id": ctx.experiment_id,
                    "key": step.key,
                    "step": step.name,
                    "reason": step.reason.value,
                    "executor": executor_name(step),
                    "host": host,
                    "worker": f"{host}:{os.getpid()}",
                    "pid": os.getpid(),
                    "environment_id": ctx.environment_id,
                }
            )
        for run_id in open_runs:
            ledger.finish_run(run_id, status=JobState.FAILED.value, error=message)
        ledger.flush()
    return StepFailed(step.name, message)


def job_spec(ctx: BuildContext, step: PlannedStep, workspace: Path) -> dict[str, Any]:
    """The JSON a subprocess (``python -m nemoflow.run_step``) needs to run a Python step."""
    exp = ctx.plan.experiment
    pipeline = {"file": str(exp.pipeline_file), "module": exp.module_name} if exp.pipeline_file else None
    sys_path = [str(exp.pipeline_file.parent)] if exp.pipeline_file else []
    return {
        "step": step.name,
        "key": step.key,
        "output_dir": str(workspace),
        "workdir": str(ctx.plan.workdir),
        "pipeline": pipeline,
        "sys_path": sys_path + [p for p in sys.path if p and os.path.isdir(p)],
        "task": to_data(step.task),
        "upstream_dirs": ctx.upstream_dirs(step),
    }


def preview_scripts(ctx: BuildContext) -> dict[str, str]:
    """The script each step to run would be submitted with, for executors that make one (``--dry-run``).

    Nothing is written and no backend is contacted.
    """
    scripts = {}
    for step in ctx.plan.to_run():
        preview = getattr(step.executor, "preview", None)
        if preview is not None:
            target = ctx.store.target_dir(step.name, step.key)
            scripts[step.name] = preview(make_job(ctx, step, target, "", write=False))
    return scripts


def make_job(ctx: BuildContext, step: PlannedStep, workspace: Path, run_id: str, *, write: bool = True) -> Job:
    """The job an executor runs for ``step``: its command here, and the run_step spec for other backends."""
    spec = job_spec(ctx, step, workspace)
    if isinstance(step.task, Script):
        command, env = _script_command(ctx, step)
    else:
        if write:
            (workspace / JOB).write_text(json.dumps(spec, indent=1))
        command = [sys.executable, "-m", "nemoflow.run_step", str(workspace / JOB)]
        env = {PARENT_PID_ENV: str(os.getpid()), "PYTHONUNBUFFERED": "1"}  # the log streams as it is written
    return Job(
        step.name,
        step.key,
        command,
        workspace,
        workspace / LOG,
        str(ctx.plan.workdir),
        env={**env, OUTPUT_DIR_ENV: str(workspace)},
        tail_logs=ctx.tails(step),
        follows_parent=PARENT_PID_ENV in env,
        spec=spec,
        run_id=run_id,
        experiment_id=ctx.experiment_id,
        stage_dir=ctx.store.root / ".stage",
    )


def _run_with_executor(
    ctx: BuildContext, step: PlannedStep, workspace: Path, executor: Executor, run_id: str
) -> JobResult:
    job = make_job(ctx, step, workspace, run_id)
    try:
        handle = executor.submit(job)
    except (OSError, ValueError, UserError, ExecutorError) as exc:
        return JobResult(JobState.FAILED, None, str(exc))
    details = {**handle.details, "executor": executor_to_data(executor)} if handle.details else None
    ctx.ledger().set_job_id(run_id, handle.job_id, details)  # from now on `cancel` can find the job
    if ctx.store.cancel_requested(ctx.experiment_id, step.name):  # asked while the job was starting
        executor.cancel(handle)
    limit = step_time_limit(ctx, step)
    with stopped_after(limit, lambda: executor.cancel(handle)) as expired:
        try:
            result = executor.wait(handle)
        except ExecutorError as exc:
            result = JobResult(JobState.FAILED, None, str(exc))
    if expired.is_set() and not result.succeeded:
        result = JobResult(JobState.TIMEOUT, result.exit_code, f"timed out after {limit:g} s", result.backend_state)
    return explain(ctx, step, job, result)


def step_time_limit(ctx: BuildContext, step: PlannedStep) -> float | None:
    """Seconds ``step`` may run: its executor's ``timeout``, else the build's ``--step-timeout``."""
    own = getattr(step.executor, "timeout", None)
    return own if own is not None else ctx.step_timeout


def explain(ctx: BuildContext, step: PlannedStep, job: Job, result: JobResult) -> JobResult:
    """A failed result with the reason a user looks for: cancelled by request, or the log's last line."""
    return explain_result(ctx.store, ctx.experiment_id, step.name, job.log_path, result)


def explain_result(store: Store, experiment_id: str, step: str, log_path: Path, result: JobResult) -> JobResult:
    """:func:`explain` without a build: also what ``nemoflow status`` says of a detached job it collects."""
    if not result.succeeded and store.cancel_requested(experiment_id, step):
        result = dataclasses.replace(result, state=JobState.CANCELLED, error="cancelled")
    if result.state is JobState.CANCELLED:  # the step's last output is not why it stopped
        return dataclasses.replace(result, error="cancelled")
    if not result.succeeded:
        last = _last_line(log_path)
        if last:
            result = dataclasses.replace(result, error=f"{result.error}: {last}")
    return result


def _last_line(log: Path) -> str:
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()[-20:] if line.strip()]
    except FileNotFoundError:
        return ""
    return lines[-1].removeprefix("nemoflow: ") if lines else ""


def _script_command(ctx: BuildContext, step: PlannedStep) -> tuple[list[str], dict[str, str]]:
    script = step.task
    assert isinstance(script, Script)
    resolve = make_resolver(ctx.upstream_dirs(step), str(ctx.plan.workdir))
    return script_command(script, resolve, str(ctx.plan.workdir)), dict(script.env)


def _run_in_process(ctx: BuildContext, step: PlannedStep, workspace: Path) -> JobResult:
    buffer = io.StringIO()  # the log file is written only when the step printed something
    out: IO[str] = _Tee(buffer, sys.stdout, f"[{step.name}] ") if ctx.tails(step) else buffer
    result = JobResult(JobState.SUCCEEDED, 0)
    limit = step_time_limit(ctx, step)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            with alarm_after(limit):
                execute_task(
                    step.task, output=workspace, upstream_dirs=ctx.upstream_dirs(step), workdir=str(ctx.plan.workdir)
                )
        except KeyboardInterrupt:
            raise
        except TimedOut:
            result = JobResult(JobState.TIMEOUT, None, f"timed out after {limit:g} s")
        except BaseException as exc:
            code = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 1
            if not (isinstance(exc, SystemExit) and code == 0):
                traceback.print_exc()
                result = JobResult(JobState.FAILED, code, f"{type(exc).__name__}: {exc}")
    if buffer.tell():
        (workspace / LOG).write_text(buffer.getvalue())
    return result


class _Tee:
    """Writes to the log, and to the terminal with a step prefix."""

    def __init__(self, log: IO[str], terminal: IO[str], prefix: str) -> None:
        self.log, self.terminal, self.prefix = log, terminal, prefix
        self.at_line_start = True

    def write(self, text: str) -> int:
        self.log.write(text)
        for line in text.splitlines(keepends=True):  # print() writes its newline separately
            self.terminal.write((self.prefix if self.at_line_start else "") + line)
            self.at_line_start = line.endswith("\n")
        return len(text)

    def flush(self) -> None:
        self.log.flush()
        self.terminal.flush()
