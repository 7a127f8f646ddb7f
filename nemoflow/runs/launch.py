"""NeMo Run's launch surface on the build engine: ``exp.run``, ``nemoflow.run``, functions bound to an executor."""

from __future__ import annotations

# The local executor is imported only for a run that has no executor of its own.
import functools
import inspect
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from nemoflow.configs.core import Buildable, Config, Partial, Script
from nemoflow.engine.build import default_store, run_plan
from nemoflow.engine.results import BuildResult
from nemoflow.errors import BuildFailed, UserError
from nemoflow.pipeline.experiment import Experiment, Plugin
from nemoflow.pipeline.plan import Plan, make_plan
from nemoflow.store.targets import Store


def run_experiment(
    exp: Experiment,
    *,
    tail_logs: bool | frozenset[str] = False,
    sequential: bool = False,
    max_concurrent: int | None = None,
    dryrun: bool = False,
    detach: bool = False,
    plugins: Iterable[Plugin] = (),
    store: Store | str | os.PathLike[str] | None = None,
    jobs: int | None = None,
    direct: bool = False,
    force: Iterable[str] = (),
    until: Iterable[str] = (),
    workdir: str | os.PathLike[str] | None = None,
    salt: str = "",
    raise_on_failure: bool = True,
) -> BuildResult | Plan:
    """What :meth:`Experiment.run` does (see there for the arguments).

    Raises:
        BuildFailed: a step failed (``raise_on_failure``); it carries the BuildResult.
        UserError: ``jobs`` or ``max_concurrent`` below 1; the experiment cannot be planned.
    """
    for option, value in (("jobs", jobs), ("max_concurrent", max_concurrent)):
        if value is not None and value < 1:
            raise UserError(f"{option} must be at least 1, got {value}")
    store = as_store(store, workdir)
    plan = make_plan(
        exp,
        store,
        force=force,
        until=until,
        workdir=workdir,
        salt=salt,
        plugins=plugins,
        sequential=sequential,
        default_executor=default_executor,
    )
    if dryrun:
        return plan
    if jobs is None:  # in-process steps share one worker, unless capped otherwise
        jobs = 1 if direct and not max_concurrent else default_jobs(plan, max_concurrent)
    result = run_plan(
        plan,
        jobs=jobs,
        direct=direct,
        tail_logs=tail_logs,
        max_concurrent=max_concurrent,
        record=True,
        detach=detach,
    )
    _show_served(result, plan.store, tail_logs)
    if raise_on_failure and not result.ok:
        raise BuildFailed(result)
    return result


def _show_served(result: BuildResult, store: Store, tail_logs: bool | frozenset[str]) -> None:
    """Steps whose output is shown that were up to date: their stored output and result, said to come from the store."""
    from nemoflow.runs.compat import show_from_store

    for outcome in result.skipped:
        if tail_logs is True or (isinstance(tail_logs, frozenset) and outcome.name in tail_logs):
            show_from_store(store, outcome.name, outcome.key)


def as_store(store: Store | str | os.PathLike[str] | None, workdir: str | os.PathLike[str] | None = None) -> Store:
    """A Store from a Store, a folder, or nothing (``$NEMOFLOW_STORE``, else ``targets/``)."""
    if isinstance(store, Store):
        return store
    return Store(store) if store else default_store(workdir)


def default_jobs(plan: Plan, max_concurrent: int | None) -> int:
    """Workers for a build: ``max_concurrent``, else the most steps that can run side by side
    (the widest level of the steps that must run), at most the number of CPUs."""
    if max_concurrent:
        return max_concurrent
    depth: dict[str, int] = {}
    width: dict[int, int] = {}
    for step in plan.to_run():  # upstream first
        level = 1 + max((depth[up] for up in (*step.upstream, *step.after) if up in depth), default=0)
        depth[step.name] = level
        width[level] = width.get(level, 0) + 1
    return max(1, min(max(width.values(), default=1), os.cpu_count() or 1))


def default_executor() -> Any:
    """The executor of a step that has none (what its plugins see): a local subprocess."""
    from nemoflow.executors.local import LocalExecutor

    return LocalExecutor()


def run(
    task: Buildable[Any] | Script,
    executor: Any = None,
    plugins: Plugin | Iterable[Plugin] | None = (),
    name: str | None = None,
    dryrun: bool = False,
    direct: bool = False,
    detach: bool = False,
    tail_logs: bool = True,
    log_level: str = "INFO",
    *,
    store: Store | str | os.PathLike[str] | None = None,
) -> BuildResult | Plan:
    """Run one task as a one-step experiment (NeMo Run's ``run.run``), through the engine.

    The task's output is shown while it runs (``tail_logs``); a task that is up to date is not run
    again: its stored output and result are shown, and it says so.

    Args:
        task: a Partial, Config or Script.
        executor: where it runs (default: a subprocess on this machine).
        plugins: a Plugin or a list, applied to the task and executor before the key is computed.
        name: the experiment's and the step's name (default: the function's or script's name).
        dryrun: print the task and its arguments and return the Plan; run and record nothing.
        direct: run a Python task inside this process.
        detach: submit to a detachable executor (Slurm) and return without waiting.
        tail_logs: show the task's output while it runs.
        log_level: the level of nemoflow's log messages.
        store: the target store (default: ``$NEMOFLOW_STORE``, else ``targets/``).

    Returns:
        The BuildResult (its ``experiment_id`` reloads the run), or the Plan with ``dryrun``.

    Raises:
        BuildFailed: the step failed; it carries the BuildResult.
        UserError: (also a TypeError, as NeMo Run) the task is not a config or Script.
    """
    from nemoflow.runs.compat import print_task_dryrun

    step = name or _default_name(task)
    plugins = [plugins] if isinstance(plugins, Plugin) else list(plugins or ())
    exp = Experiment(step, log_level=log_level)
    exp.add(task, executor, name=step, plugins=plugins)
    if dryrun:
        print_task_dryrun(task)
    return exp.run(direct=direct, dryrun=dryrun, detach=detach, store=store, tail_logs=tail_logs, jobs=1)


class TaskTypeError(UserError, TypeError):
    """``run.run`` of something that is not a config or Script (NeMo Run raises TypeError)."""


def _default_name(task: Any) -> str:
    if isinstance(task, Script):
        return Path(task.path).stem if task.path else "script"
    if isinstance(task, Buildable):
        return getattr(task.__fn_or_cls__, "__name__", "step")
    raise TaskTypeError(
        f"nemoflow.run() runs a nemoflow.Partial, Config or Script, got {type(task).__name__}",
        hint="wrap the function: nemoflow.Partial(fn, **arguments)",
    )


class EngineFunction:
    """A step function bound to an executor (``fn.with_executor(ex)``, ``@nemoflow.partial(executor=ex)``).

    Calling it runs the function as a one-step experiment named after it (keyed, cached,
    ledgered; an unchanged call is not run again) and returns its value from the store.
    Configs made from it (``Partial(f, ...)``) target the plain function.
    """

    def __init__(self, fn: Callable[..., Any], executor: Any, *, store: Store | str | None = None) -> None:
        functools.update_wrapper(self, fn, updated=())  # name, module, docs: importable under fn's name
        self.__nemoflow_target__ = fn
        self.executor = executor
        self.store = store

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function on the executor; its return value.

        Raises:
            BuildFailed: the function raised or its process failed.
        """
        fn = self.__nemoflow_target__
        task = Partial(fn, **_keywords(fn, args, kwargs))
        exp = Experiment(fn.__name__)
        exp.add(task, name=fn.__name__, executor=self.executor)
        result = exp.run(store=self.store, jobs=1)
        assert isinstance(result, BuildResult) and exp.store is not None
        outcome = (result.ran or result.skipped)[0]
        return exp.store.load_result(outcome.name, outcome.key)

    def partial(self, **kwargs: Any) -> Partial[Any]:
        """A Partial of the plain function."""
        return Partial(self.__nemoflow_target__, **kwargs)

    def config(self, **kwargs: Any) -> Config[Any]:
        """A Config of the plain function."""
        return Config(self.__nemoflow_target__, **kwargs)

    def with_executor(self, executor: Any) -> EngineFunction:
        """The same function on another executor."""
        return EngineFunction(self.__nemoflow_target__, executor, store=self.store)

    def __repr__(self) -> str:
        return f"<{self.__qualname__} on {self.executor!r}>"


def _keywords(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments by name (a config sets arguments by name only)."""
    bound = inspect.signature(fn).bind_partial(*args, **kwargs)
    arguments: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        kind = bound.signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            arguments.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            raise UserError(f"{fn.__name__}: *{name} arguments cannot go into a step's config", hint="pass a list")
        else:
            arguments[name] = value
    return arguments
