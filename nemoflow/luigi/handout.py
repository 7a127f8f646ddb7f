"""Handing steps to luigi: the local scheduler in bounded chunks, or a central luigid with
executor-specific workers. The only module besides tasks.py that imports luigi."""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nemoflow.pipeline.plan import PlannedStep
from nemoflow.store.targets import Store

if TYPE_CHECKING:
    from nemoflow.engine.step import BuildContext


def run_with_luigi(
    ctx: BuildContext,
    to_run: list[PlannedStep],
    jobs: int,
    *,
    scheduler_url: str | None = None,
    scope: list[PlannedStep] | None = None,
    timeout: float | None = None,
) -> Waiter | None:
    """Hand the steps to luigi in topological chunks, one ``luigi.build`` per chunk.

    luigi's scheduler scans every pending task on each hand-out, which is quadratic in the
    number of tasks it holds; a bounded chunk at a time keeps a build linear. Only each
    chunk's sinks are handed over: luigi finds the rest through ``requires``, stopping at
    steps already complete.

    With ``scheduler_url`` (luigid), the whole plan goes in one ``luigi.build``, each step its
    own task so the visualiser shows it; see :func:`_run_central`.
    """
    with warnings.catch_warnings():  # luigi warns about its own defaults on import; nemoflow pins them
        warnings.simplefilter("ignore", DeprecationWarning)
        import luigi

    from nemoflow.luigi.tasks import StepTask, group_task, task_of

    _pin_luigi_config(ctx.max_concurrent, central=scheduler_url is not None)
    StepTask.context = ctx
    if scheduler_url is not None:
        try:
            return _run_central(ctx, to_run, jobs, scheduler_url, scope or [], timeout)
        finally:
            StepTask.context = None
            if ctx._ledger is not None:
                ctx._ledger.close()
                ctx._ledger = None
    # In-process steps on one worker are cheap: luigi gets one task per chunk, which runs the
    # chunk's steps in order. Otherwise every step is its own task, so workers share them.
    grouped = ctx.direct and jobs == 1
    blocked: set[str] = set()  # failed in this build, or downstream of a failure
    luigi_log = _luigi_log_handler(luigi_log_path(ctx.store, ctx.experiment_id))
    try:
        for chunk in _chunks(to_run, blocked, size=GROUP if grouped else max(CHUNK, 4 * jobs)):
            tasks = [group_task(chunk)] if grouped else [task_of(s) for s in _sinks(chunk)]
            luigi.build(tasks, local_scheduler=True, workers=max(1, jobs), detailed_summary=True, no_lock=True)
            blocked.update(s.name for s in chunk if not ctx.is_done(s))
    finally:
        StepTask.context = None
        logging.getLogger("luigi-interface").removeHandler(luigi_log)
        luigi_log.close()
        if ctx._ledger is not None:
            ctx._ledger.close()
            ctx._ledger = None
    return None


def _run_central(
    ctx: BuildContext, to_run: list[PlannedStep], jobs: int, url: str, scope: list[PlannedStep], timeout: float | None
) -> Waiter:
    """Register the plan with luigid and run what it hands to this process; wait for ``scope``.

    A step this process must not run (another executor's, or every step with
    ``register_only``) gets ``run = None`` on its task: luigi's worker then registers it as an
    external task, PENDING and not runnable by this worker, so luigid hands it to a worker that
    registered it runnable. luigi's worker would stop as soon as luigid has nothing for it;
    it stays while a step of ``scope`` is neither complete nor failed (read from the store and
    the ledger, not from luigid), or until ``timeout``.
    """
    import luigi
    import luigi.rpc

    from nemoflow.luigi.tasks import task_of

    # which resources luigid caps (StepTask.resources asks only for those); this build's own
    # max_concurrent caps this process's luigi workers, luigid's nemoflow_steps all of them
    ctx.scheduler_resources = frozenset(r["name"] for r in luigi.rpc.RemoteScheduler(url).resource_list())
    if ctx.max_concurrent:
        jobs = min(jobs, ctx.max_concurrent)
    tasks = {}
    for step in to_run:
        task = task_of(step)
        if ctx.runs_here(step):
            task.__dict__.pop("run", None)  # task_for's instances outlive a build in this process
        else:
            task.run = None
        tasks[step.name] = task
    # What luigi does not reach through ``requires`` of a task run here is handed over itself.
    reached = {up for step in to_run if ctx.runs_here(step) for up in (*step.upstream, *step.after) if up in tasks}
    roots = [tasks[step.name] for step in to_run if step.name not in reached]
    waiter = Waiter(ctx, scope, None if timeout is None else time.time() + timeout)
    luigi_log = _luigi_log_handler(luigi_log_path(ctx.store, ctx.experiment_id))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", luigi.parameter.UnconsumedParameterWarning)  # the rpc-* options
            luigi.build(
                roots,
                scheduler_url=url,
                workers=max(1, jobs),
                detailed_summary=True,
                no_lock=True,
                worker_scheduler_factory=_central_factory(waiter),
            )
    finally:
        logging.getLogger("luigi-interface").removeHandler(luigi_log)
        luigi_log.close()
    return waiter


class Waiter:
    """Whether a process on luigid still has steps to wait for: asked by luigi's idle worker."""

    def __init__(self, ctx: BuildContext, scope: list[PlannedStep], deadline: float | None) -> None:
        self.ctx, self.scope, self.deadline = ctx, scope, deadline
        self.timed_out = False

    def __call__(self) -> bool:
        if self.deadline is not None and time.time() >= self.deadline:
            self.timed_out = True
            return False
        return bool(self.pending())

    def failures(self) -> tuple[dict[str, dict[str, Any]], set[str]]:
        """The steps whose latest run since this build began failed (by key), and what they block (names)."""
        from nemoflow.record.progress import latest_statuses

        plan_steps = self.ctx.plan.to_run()
        latest = latest_statuses(self.ctx.ledger(), [s.key for s in plan_steps], self.ctx.started)
        failed = {k: row for k, row in latest.items() if row["status"] not in ("succeeded", "running")}
        blocked: set[str] = set()
        for step in plan_steps:  # upstream first
            upstream_blocked = any(up in blocked for up in (*step.upstream, *step.after))
            if upstream_blocked or (step.key in failed and not self.ctx.is_done(step)):
                blocked.add(step.name)
        return failed, blocked

    def pending(self) -> list[PlannedStep]:
        _, blocked = self.failures()
        return [s for s in self.scope if s.name not in blocked and not self.ctx.is_done(s)]


def _central_factory(waiter: Waiter) -> Any:
    """luigi's worker factory, with a worker that stays while ``waiter`` says so."""
    import luigi.interface
    import luigi.worker

    class Worker(luigi.worker.Worker):  # type: ignore[misc]
        def _keep_alive(self, get_work_response: Any) -> bool:
            return not self._stop_requesting_work and waiter()

    class Factory(luigi.interface._WorkerSchedulerFactory):  # type: ignore[misc]
        def create_worker(self, scheduler: Any, worker_processes: int, assistant: bool = False) -> Any:
            return Worker(scheduler=scheduler, worker_processes=worker_processes, assistant=assistant)

    return Factory()


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


def _pin_luigi_config(max_concurrent: int | None = None, *, central: bool = False) -> None:
    """Ignore any stray luigi.cfg: nemoflow decides how luigi behaves.

    ``max_concurrent`` becomes the amount of the resource every step task holds while it runs.
    ``central``: the worker talks to luigid; it polls for work while other processes run steps.
    """
    from luigi.configuration import get_config

    from nemoflow.luigi.tasks import STEP_RESOURCE

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
    if central:
        settings["worker"].update(keep_alive="true", wait_interval="0.5", wait_jitter="0.5", ping_interval="1.0")
        # luigi's RemoteScheduler retries each call (add_task, get_work, ping) rpc-retry-attempts
        # times, rpc-retry-wait seconds apart (integer seconds), then raises RPCError, which ends
        # the worker and the build. 16 x 2 s rides out about 30 s without luigid: a restart (SIGTERM
        # writes its state file, the new one reads it) loses nothing. A luigid gone for good still
        # fails the process after that; the up-front check_reachable keeps the first contact fast.
        settings["core"].update({"rpc-retry-attempts": "16", "rpc-retry-wait": "2", "rpc-connect-timeout": "10"})
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
