"""Run a plan: luigi's local scheduler hands the steps that must run to its workers."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nemoflow.errors import BuildFailed
from nemoflow.experiment import Experiment
from nemoflow.plan import Plan, PlannedStep, make_plan
from nemoflow.results import BuildResult, StepOutcome
from nemoflow.store import Store

if TYPE_CHECKING:
    from nemoflow.ledger import Ledger
    from nemoflow.progress import Reporter
    from nemoflow.runner import BuildContext

# The ledger, the runner and luigi are imported only once something must run: an up-to-date
# build is keys and stats, nothing else.

STORE_ENV = "NEMOFLOW_STORE"
LEDGER_NAME = "ledger.db"


def default_store(workdir: str | os.PathLike[str] | None = None) -> Store:
    """``$NEMOFLOW_STORE``, else ``targets/`` under ``workdir`` (the current directory)."""
    root = os.environ.get(STORE_ENV) or os.path.join(workdir or os.getcwd(), "targets")
    return Store(root)


def ledger_path(store: Store) -> Path:
    return store.root / LEDGER_NAME


def build_experiment(
    exp: Experiment,
    *,
    store: Store | str | os.PathLike[str] | None = None,
    jobs: int = 1,
    direct: bool = False,
    force: Iterable[str] = (),
    until: Iterable[str] = (),
    tail_logs: bool = False,
    workdir: str | os.PathLike[str] | None = None,
    salt: str = "",
    raise_on_failure: bool = True,
) -> BuildResult:
    """Plan and build an experiment; skip what is up to date.

    Raises:
        BuildFailed: a step failed (``raise_on_failure``); it carries the BuildResult.
        PipelineError: the experiment cannot be planned.
    """
    store = store if isinstance(store, Store) else (Store(store) if store else default_store(workdir))
    plan = make_plan(exp, store, force=force, until=until, workdir=workdir, salt=salt)
    result = run_plan(plan, jobs=jobs, direct=direct, tail_logs=tail_logs)
    if raise_on_failure and not result.ok:
        raise BuildFailed(result)
    return result


def new_experiment_id(name: str) -> str:
    """``<name>_<timestamp>_<random>``: unique even for many launches in the same second."""
    return f"{name}_{time.strftime('%Y%m%d-%H%M%S')}_{uuid.uuid4().hex[:6]}"


def run_plan(
    plan: Plan,
    *,
    jobs: int = 1,
    direct: bool = False,
    tail_logs: bool = False,
    max_concurrent: int | None = None,
    record: bool = False,
    progress: Reporter | None = None,
) -> BuildResult:
    """Run the steps of ``plan`` that are not up to date; return what happened.

    A build that runs something is recorded in the ledger as an experiment run with a new id,
    which is also set on the experiment (``exp.id``, ``exp.store``) as soon as it is recorded.

    Args:
        jobs: luigi workers (steps that may run at once).
        max_concurrent: at most this many steps run at once, whatever ``jobs`` is.
        record: record the experiment run even when nothing runs (``exp.run`` does, so every
            run can be reloaded; a no-op ``nemoflow build`` stays keys and stats).
        progress: called with a ``Progress`` twice a second while steps run.
    """
    to_run = plan.to_run()
    skipped = [StepOutcome(s.name, s.key, s.reason.value) for s in plan if not s.runs]
    if not to_run and not record:
        return BuildResult(skipped=skipped)
    started = time.time()
    options = {
        "jobs": jobs,
        "direct": direct,
        "max_concurrent": max_concurrent,
        "sequential": plan.sequential,
        "salt": plan.salt,
    }
    experiment_id, environment_id = _record_build(plan, to_run, options)
    if not to_run:
        _finish_build(plan.store, experiment_id, "succeeded")
        return BuildResult(skipped=skipped, experiment_id=experiment_id)
    from nemoflow.progress import reporting
    from nemoflow.runner import BuildContext

    plan.store.sweep_workspaces()
    ctx = BuildContext(
        plan,
        plan.store,
        ledger_path(plan.store),
        experiment_id,
        environment_id or "",
        started,
        direct=direct,
        tail_logs=tail_logs,
        max_concurrent=max_concurrent,
    )
    status = "interrupted"
    try:
        with reporting(ctx.ledger_path, experiment_id, len(to_run), progress):
            _run_with_luigi(ctx, to_run, jobs)
        result = _collect(ctx, to_run, skipped)
        status = "succeeded" if result.ok else "failed"
        if any(o.error == "cancelled" for o in result.failed):
            status = "cancelled"
    finally:
        _finish_build(plan.store, experiment_id, status)
    return result


def _record_build(plan: Plan, to_run: list[PlannedStep], options: dict[str, Any]) -> tuple[str, str | None]:
    """Record the experiment run, its steps and (when something runs) the environment.

    Returns:
        The new experiment id, and the environment id (None when nothing runs).
    """
    from nemoflow.ledger import Ledger
    from nemoflow.provenance import capture_environment, git_state

    exp = plan.experiment
    ledger = Ledger(ledger_path(plan.store))
    try:
        pipeline = exp.pipeline_file
        git = git_state(pipeline) if pipeline else git_state(plan.workdir)
        row = {
            "name": exp.name,
            "description": exp.description,
            "tags": exp.tags,
            "pipeline_file": str(pipeline) if pipeline else None,
            "pipeline_sha256": hashlib.sha256(pipeline.read_bytes()).hexdigest() if pipeline else None,
            "git_commit": git.commit,
            "git_dirty": None if git.dirty is None else int(git.dirty),
            "store": str(plan.store.root),
            "module": exp.module_name,
            "workdir": str(plan.workdir),
            "sys_path": _import_roots(exp),
            "options": options,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "status": "running",
        }
        experiment_id = _create_experiment(ledger, row, _members(plan))
        exp.id, exp.store = experiment_id, plan.store
        if not to_run:
            return experiment_id, None
        env = capture_environment(plan.store.root / ".cache" / "environment.json")
        ledger.record_environment(env)
        ledger.record_steps(
            {"key": s.key, "name": s.name, "kind": s.kind, "config": s.config, "code": s.code, "upstream": s.upstream}
            for s in to_run
        )
    finally:
        ledger.close()
    return experiment_id, env.id


def _create_experiment(ledger: Ledger, row: dict[str, Any], members: list[dict[str, Any]]) -> str:
    """Insert the run under a fresh id; the insert is the atomic check that nobody else took it."""
    for _ in range(10):
        experiment_id = new_experiment_id(row["name"])
        if ledger.create_experiment({**row, "id": experiment_id, "created": time.time()}, members):
            return experiment_id
    raise RuntimeError(f"could not find a free experiment id for {row['name']!r} in {ledger.path}")


def _members(plan: Plan) -> list[dict[str, Any]]:
    """The ``experiment_steps`` rows of a plan: what a reload needs besides the configs."""
    added = plan.experiment.steps
    position = {name: i for i, name in enumerate(added)}
    return [
        {
            "name": s.name,
            "key": s.key,
            "position": position[s.name],
            "reason": s.reason.value,
            "executor": _executor_data(s.executor),
            "dependencies": added[s.name].dependencies,
        }
        for s in plan
    ]


def _executor_data(executor: Any) -> Any:
    if executor is None:
        return None
    from nemoflow.executors import executor_to_data

    return executor_to_data(executor)


def _import_roots(exp: Experiment) -> list[str]:
    """Where the step targets were importable from (a reload in another process needs them)."""
    roots = [str(exp.pipeline_file.parent)] if exp.pipeline_file else []
    return roots + [p for p in sys.path if p and p not in roots and os.path.isdir(p)]


def _finish_build(store: Store, experiment_id: str, status: str) -> None:
    from nemoflow.ledger import Ledger

    ledger = Ledger(ledger_path(store))
    try:
        ledger.finish_experiment(experiment_id, status)
    finally:
        ledger.close()


def _run_with_luigi(ctx: BuildContext, to_run: list[PlannedStep], jobs: int) -> None:
    """Hand the steps to luigi in topological chunks, one ``luigi.build`` per chunk.

    luigi's scheduler scans every pending task on each hand-out, which is quadratic in the
    number of tasks it holds; a bounded chunk at a time keeps a build linear. Only each
    chunk's sinks are handed over: luigi finds the rest through ``requires``, stopping at
    steps already complete.
    """
    with warnings.catch_warnings():  # luigi warns about its own defaults on import; nemoflow pins them
        warnings.simplefilter("ignore", DeprecationWarning)
        import luigi

    from nemoflow.tasks import StepTask, group_task, task_for

    _pin_luigi_config(ctx.max_concurrent)
    StepTask.context = ctx
    # In-process steps on one worker are cheap: luigi gets one task per chunk, which runs the
    # chunk's steps in order. Otherwise every step is its own task, so workers share them.
    grouped = ctx.direct and jobs == 1
    blocked: set[str] = set()  # failed in this build, or downstream of a failure
    luigi_log = _luigi_log_handler(luigi_log_path(ctx.store, ctx.experiment_id))
    try:
        for chunk in _chunks(to_run, blocked, size=GROUP if grouped else max(CHUNK, 4 * jobs)):
            tasks = [group_task(chunk)] if grouped else [task_for(s.key, s.name) for s in _sinks(chunk)]
            luigi.build(tasks, local_scheduler=True, workers=max(1, jobs), detailed_summary=True, no_lock=True)
            blocked.update(s.name for s in chunk if not ctx.is_done(s))
    finally:
        StepTask.context = None
        logging.getLogger("luigi-interface").removeHandler(luigi_log)
        luigi_log.close()
        if ctx._ledger is not None:
            ctx._ledger.close()
            ctx._ledger = None


CHUNK = 100  # steps per luigi.build when each step is a task: luigi's hand-out scans them all
GROUP = 1000  # steps per luigi.build (and per task) when a chunk is one task


def luigi_log_path(store: Store, experiment_id: str) -> Path:
    """Where luigi's own warnings and errors of one build go (the terminal stays quiet)."""
    return store.root / ".logs" / f"{experiment_id}.luigi.log"


def _luigi_log_handler(path: Path) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, delay=True)  # the file appears only if luigi complains
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("luigi-interface").addHandler(handler)
    return handler


def _chunks(steps: list[PlannedStep], blocked: set[str], *, size: int) -> Iterator[list[PlannedStep]]:
    """Consecutive runs of ``steps`` (in plan order), leaving out what a failure blocks.

    ``blocked`` grows while the caller builds each chunk, so it is read lazily.
    """
    chunk: list[PlannedStep] = []
    for step in steps:
        if any(up in blocked for up in step.upstream) or any(up in blocked for up in step.after):
            blocked.add(step.name)
            continue
        chunk.append(step)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _sinks(chunk: list[PlannedStep]) -> list[PlannedStep]:
    """The steps of a chunk that no other step of the chunk depends on (or runs before)."""
    needed = {up for step in chunk for up in step.upstream}
    needed.update(up for step in chunk for up in step.after)
    return [step for step in chunk if step.name not in needed]


def _pin_luigi_config(max_concurrent: int | None = None) -> None:
    """Ignore any stray luigi.cfg: nemoflow decides how luigi behaves.

    ``max_concurrent`` becomes the amount of the resource every step task holds while it runs.
    """
    from luigi.configuration import get_config

    from nemoflow.tasks import STEP_RESOURCE

    config = get_config()
    for section in config.sections():
        config.remove_section(section)
    settings = {
        "core": {"parallel_scheduling": "false", "autoload_range": "false", "no_configure_logging": "true"},
        "worker": {
            "keep_alive": "false",
            "check_unfulfilled_deps": "true",
            "retry_external_tasks": "false",
            "force_multiprocessing": "false",
            "wait_interval": "0.1",
            # luigi's SIGUSR1 handler can only be installed from the main thread; a build in another
            # thread (a notebook, a test) goes without it
            "no_install_shutdown_handler": str(threading.current_thread() is not threading.main_thread()).lower(),
        },
        "scheduler": {
            "record_task_history": "false",
            "retry_count": "0",
            "retry_delay": "0",
            "prune_on_get_work": "false",
        },
    }
    if max_concurrent:
        settings["resources"] = {STEP_RESOURCE: str(max_concurrent)}
    for section, values in settings.items():
        config.add_section(section)
        for option, value in values.items():
            config.set(section, option, value)
    debug = bool(os.environ.get("NEMOFLOW_DEBUG"))
    for name in ("luigi", "luigi-interface", "luigi.scheduler"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG if debug else logging.WARNING)
        logger.propagate = debug  # its warnings go to the build's luigi log, not the terminal


def _collect(ctx: BuildContext, to_run: list[PlannedStep], skipped: list[StepOutcome]) -> BuildResult:
    from nemoflow.ledger import Ledger

    ledger = Ledger(ctx.ledger_path)
    try:
        runs = {row["step"]: row for row in ledger.runs_in(ctx.experiment_id)}
    finally:
        ledger.close()
    result = BuildResult(skipped=skipped, experiment_id=ctx.experiment_id)
    failed_names = set()
    for step in to_run:  # in plan order: upstream failures are known before their dependents
        run = runs.get(step.name)
        seconds = round(run["ended"] - run["started"], 3) if run and run.get("ended") else None
        if ctx.is_done(step):
            result.ran.append(StepOutcome(step.name, step.key, step.reason.value, seconds=seconds))
            continue
        failed_names.add(step.name)
        if run is not None:
            error = run.get("error") or run.get("status") or "failed"
            result.failed.append(
                StepOutcome(
                    step.name, step.key, step.reason.value, error=error, exit_code=run.get("exit_code"), seconds=seconds
                )
            )
        else:
            blockers = [up for up in (*step.upstream, *step.after) if up in failed_names]
            log = luigi_log_path(ctx.store, ctx.experiment_id)
            error = (
                f"not run: upstream {', '.join(blockers)} failed"
                if blockers
                else f"not run: luigi did not hand it out (see {log})"
            )
            result.failed.append(StepOutcome(step.name, step.key, step.reason.value, error=error))
    return result
