"""Run a plan: luigi's local scheduler hands the steps that must run to its workers."""

from __future__ import annotations

# What only a build that runs something needs (ledger, provenance, recovery, detach, SSH sessions) is imported
# inside functions: a no-op build stays keys and stats.
import contextlib
import hashlib
import os
import socket
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nemoflow.engine.importable import refuse_fileless_functions
from nemoflow.engine.results import BuildResult, StepOutcome
from nemoflow.errors import BuildFailed
from nemoflow.luigi.handout import Waiter, luigi_log_path, run_with_luigi
from nemoflow.pipeline.experiment import Experiment
from nemoflow.pipeline.fingerprint import declared_to_data
from nemoflow.pipeline.plan import Plan, PlannedStep, executor_name, make_plan
from nemoflow.store.root import STORE_DIR, project_root
from nemoflow.store.targets import Store

if TYPE_CHECKING:
    from nemoflow.engine.step import BuildContext
    from nemoflow.record.ledger import Ledger
    from nemoflow.record.progress import Reporter

# The ledger, the runner and luigi are imported only once something must run: an up-to-date
# build is keys and stats, nothing else.

STORE_ENV = "NEMOFLOW_STORE"
LEDGER_NAME = "ledger.db"


def default_store(workdir: str | os.PathLike[str] | None = None) -> Store:
    """``$NEMOFLOW_STORE``, else ``targets/`` in the project root found from ``workdir`` (default: the current
    directory): the nearest folder up with ``targets/``, a ``[tool.nemoflow]`` pyproject.toml, or ``.git``."""
    root = os.environ.get(STORE_ENV) or project_root(workdir) / STORE_DIR
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
    """NeMo Run's form, ``<name>_<time_ns>`` (older runs keep their ``<name>_<date>-<time>_<random>`` ids)."""
    return f"{name}_{time.time_ns()}"


def run_plan(
    plan: Plan,
    *,
    jobs: int = 1,
    direct: bool = False,
    tail_logs: bool | frozenset[str] = False,
    max_concurrent: int | None = None,
    record: bool = False,
    progress: Reporter | None = None,
    scheduler_url: str | None = None,
    executor_filter: str | None = None,
    register_only: bool = False,
    timeout: float | None = None,
    detach: bool = False,
    step_timeout: float | None = None,
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
        scheduler_url: hand the steps out through this luigi central scheduler (``luigid``)
            instead of an embedded one; other builds and workers may run some of them. Each
            step is its own luigi task, and this process waits while steps it cares about are
            pending elsewhere.
        executor_filter: (central only) run only the steps of this executor (``Executor.name``;
            a step without one counts as ``local``); the others are registered as not runnable
            here, and only this executor's steps are waited for and reported.
        register_only: (central only) run nothing: register every step and wait until each is
            complete or failed.
        timeout: (central only) stop waiting after this many seconds; what is not done then fails.
        step_timeout: seconds a step may run when its executor sets no ``timeout``; then it is stopped,
            recorded ``timeout`` and failed.
        detach: submit the steps of detachable executors (Slurm) at once, chained by job
            dependencies, and return without waiting; a later build or ``nemoflow status`` collects
            them. Steps they need are built here first; steps downstream of them wait for a later build.
    """
    if scheduler_url is None and (executor_filter is not None or register_only):
        raise ValueError("executor_filter and register_only need a scheduler_url")
    collected, live = _settle_detached(plan.store)
    done_now = {o.key for o in collected if not o.error}
    to_run = [s for s in plan.to_run() if s.key not in done_now]
    skipped = [StepOutcome(s.name, s.key, s.reason.value) for s in plan if not s.runs]
    collected_ok = [o for o in collected if not o.error]  # built by jobs a detached build left running
    refuse_fileless_functions(to_run, direct=direct)
    if not to_run and not record:
        return BuildResult(ran=collected_ok, skipped=skipped)
    started = time.time()
    options = {
        "jobs": jobs,
        "direct": direct,
        "max_concurrent": max_concurrent,
        "sequential": plan.sequential,
        "salt": plan.salt,
        "tail_logs": sorted(tail_logs) if isinstance(tail_logs, frozenset) else tail_logs,
    }
    if scheduler_url is not None:
        options.update(scheduler_url=scheduler_url, executor=executor_filter, register_only=register_only)
    experiment_id, environment_id = _record_build(plan, to_run, options)
    plan.save_caches()  # a first build has just made the store
    if not to_run:
        _finish_build(plan.store, experiment_id, "succeeded")
        return BuildResult(skipped=skipped, experiment_id=experiment_id)
    from nemoflow.engine.step import BuildContext
    from nemoflow.record.progress import reporting

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
        central=scheduler_url is not None,
        executor_filter=executor_filter,
        register_only=register_only,
        detached={s.key: live[s.key] for s in to_run if s.key in live},
        wait_detached=_wait_detached,
        step_timeout=step_timeout,
    )
    status = "interrupted"
    try:
        with _shared_connections(to_run, jobs):  # -j N: the workers use this process's SSH connections
            if detach:
                result = _run_detached(ctx, to_run, skipped, jobs, progress)
            elif scheduler_url is None:
                with reporting(ctx.ledger_path, experiment_id, len(to_run), progress):
                    run_with_luigi(ctx, to_run, jobs)
                result = _collect(ctx, to_run, skipped)
            else:
                scope = [s for s in to_run if executor_filter is None or executor_name(s) == executor_filter]
                keys = [s.key for s in scope]
                with reporting(ctx.ledger_path, experiment_id, len(scope), progress, keys=keys):
                    waiter = run_with_luigi(
                        ctx, to_run, jobs, scheduler_url=scheduler_url, scope=scope, timeout=timeout
                    )
                result = _collect_central(ctx, scope, skipped, waiter)
        result.ran[:0] = collected_ok
        status = "succeeded" if result.ok else "failed"
        if any(o.error == "cancelled" for o in result.failed):
            status = "cancelled"
    finally:
        _finish_build(plan.store, experiment_id, status)
        plan.store.save_check_cache()  # the targets published here are known intact by their stats
    return result


def _wait_detached(ctx: BuildContext, step: PlannedStep, live: dict[str, Any]) -> None:
    from nemoflow.engine.detach import wait_for

    wait_for(ctx, step, live)


def _shared_connections(to_run: list[PlannedStep], jobs: int) -> contextlib.AbstractContextManager[None]:
    """With several (forked) workers and steps over SSH, the build process serves its connections to them."""
    if jobs > 1 and any(getattr(getattr(s.executor, "tunnel", None), "kind", None) == "ssh" for s in to_run):
        from nemoflow.executors.session import serving

        return serving()
    return contextlib.nullcontext()


def _settle_detached(store: Store) -> tuple[list[StepOutcome], dict[str, dict[str, Any]]]:
    """Collect the detached runs that ended; the live ones by key (nothing to do: one stat)."""
    if not store.has_detached():
        return [], {}
    from nemoflow.engine.detach import collect
    from nemoflow.record.ledger import Ledger

    ledger = Ledger(ledger_path(store))
    try:
        collected = collect(store, ledger)
        return collected, {run["key"]: run for run in ledger.submitted_runs()}
    finally:
        ledger.close()


def collect_detached(store: Store) -> list[StepOutcome]:
    """Publish (or fail) the runs of detached builds whose jobs have ended; what ended now."""
    return _settle_detached(store)[0]


def _run_detached(
    ctx: BuildContext, to_run: list[PlannedStep], skipped: list[StepOutcome], jobs: int, progress: Reporter | None
) -> BuildResult:
    from nemoflow.engine.detach import split, submit_all
    from nemoflow.record.progress import reporting

    first, submit, later = split(to_run)
    result = BuildResult(skipped=skipped, experiment_id=ctx.experiment_id)
    if first:
        with reporting(ctx.ledger_path, ctx.experiment_id, len(first), progress):
            run_with_luigi(ctx, first, jobs)
        result = _collect(ctx, first, skipped)
    failed = {o.name for o in result.failed}
    result.submitted, refused = submit_all(ctx, submit, failed)
    result.failed += refused
    result.deferred = [StepOutcome(s.name, s.key, s.reason.value, error="waits for submitted steps") for s in later]
    return result


def _record_build(plan: Plan, to_run: list[PlannedStep], options: dict[str, Any]) -> tuple[str, str | None]:
    """Record the experiment run, its steps and (when something runs) the environment.

    Returns:
        The new experiment id, and the environment id (None when nothing runs).
    """
    from nemoflow.engine.recovery import recover_interrupted_builds
    from nemoflow.record.code_store import keep_code
    from nemoflow.record.ledger import Ledger
    from nemoflow.record.provenance import capture_environment, environment_cache, git_state

    exp = plan.experiment
    ledger = Ledger(ledger_path(plan.store))
    try:
        recover_interrupted_builds(ledger, plan.store)
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
        experiment_id = _create_experiment(ledger, row, _members(plan), getattr(exp, "id", None))
        exp.id, exp.store = experiment_id, plan.store
        if not to_run:
            return experiment_id, None
        env = capture_environment(environment_cache())
        ledger.record_environment(env)
        ledger.record_steps(
            {
                "key": s.key,
                "name": s.name,
                "kind": s.kind,
                "config": s.config,
                "code": s.code,
                "code_parts": s.code_parts,
                "upstream": s.upstream,
            }
            for s in to_run
        )
        keep_code(ledger, plan.store, experiment_id)  # what nemoflow reproduce rebuilds from
    finally:
        ledger.close()
    return experiment_id, env.id


def _create_experiment(
    ledger: Ledger, row: dict[str, Any], members: list[dict[str, Any]], preferred: str | None = None
) -> str:
    """Insert the run under ``preferred`` (the id the experiment was given), else under a fresh id;
    the insert is the atomic check that nobody else took it."""
    for attempt in range(10):
        experiment_id = preferred if preferred and attempt == 0 else new_experiment_id(row["name"])
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
            "declared": declared_to_data(added[s.name].declared),
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


def _cancel_backend_job(run: dict[str, Any]) -> bool:
    """Cancel the cluster job of a run the interrupt left open (a local job dies with its build by itself);
    whether a cluster job was cancelled."""
    from nemoflow.executors import Handle, backend_of

    backend = backend_of(run)
    if backend is None or backend.name == "local":
        return False
    try:
        backend.cancel(Handle(None, run["job_id"]))  # type: ignore[arg-type]
    except Exception as exc:  # the build is going down anyway: say what could not be cancelled
        print(
            f"nemoflow: could not cancel {backend.name} job {run['job_id']} (step {run['step']!r}): {exc}",
            file=sys.stderr,
        )
        return False
    print(
        f"nemoflow: cancelled {backend.name.capitalize()} job {run['job_id']} (step {run['step']!r})", file=sys.stderr
    )
    return True


def _finish_build(store: Store, experiment_id: str, status: str) -> None:
    from nemoflow.record.ledger import Ledger

    ledger = Ledger(ledger_path(store))
    try:
        if status == "interrupted":  # runs luigi's workers had open when the interrupt took them down
            for run in ledger.runs_in(experiment_id):
                if run["status"] == "running":
                    cancelled = _cancel_backend_job(run)  # its cluster job was stopped: the run is cancelled
                    ledger.finish_run(
                        run["id"],
                        status="cancelled" if cancelled else "interrupted",
                        error="the build was interrupted" + ("; its job was cancelled" if cancelled else ""),
                        log_path=run["log_path"],
                    )
        ledger.finish_experiment(experiment_id, status)
    finally:
        ledger.close()


def _collect_central(
    ctx: BuildContext, scope: list[PlannedStep], skipped: list[StepOutcome], waiter: Waiter | None
) -> BuildResult:
    """What became of ``scope``, whichever process ran each step (read from the store and ledger)."""
    assert waiter is not None
    failed_runs, blocked = waiter.failures()
    from nemoflow.record.ledger import REUSED, REUSED_NOTE
    from nemoflow.record.progress import latest_statuses

    latest = latest_statuses(ctx.ledger(), [s.key for s in scope], ctx.started)
    result = BuildResult(skipped=skipped, experiment_id=ctx.experiment_id)
    by_name = ctx.plan.steps
    for step in scope:
        run = latest.get(step.key)
        seconds = round(run["ended"] - run["started"], 3) if run and run.get("ended") else None
        if ctx.is_done(step):
            if run is not None and run.get("status") == REUSED:
                result.skipped.append(StepOutcome(step.name, step.key, REUSED_NOTE))
            else:  # central: whichever worker ran it, for this build
                result.ran.append(StepOutcome(step.name, step.key, step.reason.value, seconds=seconds))
            continue
        if step.key in failed_runs:
            row = failed_runs[step.key]
            error = row.get("error") or row.get("status") or "failed"
            exit_code, log_path = row.get("exit_code"), row.get("log_path")
        elif step.name in blocked:
            ups = [up for up in (*step.upstream, *step.after) if up in blocked and up in by_name]
            error, exit_code = f"not run: upstream {', '.join(ups)} failed", None
        elif waiter.timed_out:
            error, exit_code = "not run: timed out waiting for a worker to run it (--timeout)", None
        else:
            log = luigi_log_path(ctx.store, ctx.experiment_id)
            error, exit_code = f"not run: luigi did not hand it out (see {log})", None
        result.failed.append(
            StepOutcome(
                step.name,
                step.key,
                step.reason.value,
                error=error,
                exit_code=exit_code,
                seconds=seconds,
                log=log_path if step.key in failed_runs else None,
            )
        )
    if ctx._ledger is not None:
        ctx._ledger.close()
        ctx._ledger = None
    return result


def _ran_here(ctx: BuildContext, step: PlannedStep, run: dict[str, Any] | None) -> bool:
    """Did this build run ``step`` (in this process, or in a worker it forked), rather than take it from another?"""
    return step.key in ctx._built or (run is not None and run["status"] == "succeeded")


def _collect(ctx: BuildContext, to_run: list[PlannedStep], skipped: list[StepOutcome]) -> BuildResult:
    from nemoflow.record.ledger import REUSED_NOTE, Ledger

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
            if _ran_here(ctx, step, run):
                result.ran.append(StepOutcome(step.name, step.key, step.reason.value, seconds=seconds))
            else:  # luigi found it complete, or its lock's wait ended with the other build's target
                result.skipped.append(StepOutcome(step.name, step.key, REUSED_NOTE))
            continue
        failed_names.add(step.name)
        if run is not None:
            error = run.get("error") or run.get("status") or "failed"
            result.failed.append(
                StepOutcome(
                    step.name,
                    step.key,
                    step.reason.value,
                    error=error,
                    exit_code=run.get("exit_code"),
                    seconds=seconds,
                    log=run.get("log_path"),
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
