"""Experiments: named steps with executors and dependencies; loading a pipeline file."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemoflow.configs.core import Buildable, Script, place
from nemoflow.configs.refs import StepOutput, StepResult
from nemoflow.errors import UserError, did_you_mean
from nemoflow.pipeline.fingerprint import Declared
from nemoflow.pipeline.jobs import (
    STEP_NAME,
    ExperimentAssertionError,
    ExperimentTypeError,
    ExperimentValueError,
    JobLookup,
    as_task,
    copy_task,
    default_executor,
)
from nemoflow.pipeline.recorded import RecordedRuns
from nemoflow.store.targets import Store


class Plugin:
    """Changes a step's task or executor before its key is computed (``setup`` in place).

    A plugin given to ``exp.add`` is assigned the experiment's id (``self.experiment_id``) and set
    up when the step is added, as in NeMo Run; ``exp.plugins`` and ``exp.run(plugins=...)`` apply
    when the run is planned.
    """

    experiment_id: str = ""

    def assign(self, experiment_id: str) -> None:
        """Record the id of the experiment the plugin is used in."""
        self.experiment_id = experiment_id

    def setup(self, task: Any, executor: Any) -> None:
        """Adjust ``task`` (a config or Script) and ``executor`` for this step."""


@dataclass
class Step:
    """One step of an experiment, as added."""

    name: str
    task: Buildable[Any] | Script
    executor: Any = None
    dependencies: list[str] = field(default_factory=list)
    plugins: list[Plugin] = field(default_factory=list)
    declared: Declared | None = None  # extra code, files and a version string its key counts
    tail_logs: bool = False  # its output goes to the screen while it runs
    plugins_applied: list[Plugin] = field(default_factory=list)  # set up at add time


class StepHandle(str):
    """What ``Experiment.add`` returns: refer to the step's outputs and result from later steps.

    It is also the step's name as a ``str`` (NeMo Run's ``add`` returns the job id):
    ``handle == "train"``, ``dependencies=[handle]`` and ``exp.logs(job_id=handle)`` all work.
    """

    experiment: Experiment
    name: str

    def __new__(cls, experiment: Experiment, name: str) -> StepHandle:
        handle = super().__new__(cls, name)
        handle.experiment = experiment
        handle.name = name
        return handle

    @property
    def task(self) -> Buildable[Any] | Script:
        """The step's config (change it before the build to change the step)."""
        return self.experiment.steps[self.name].task

    def output(self, path: str = "") -> StepOutput:
        """A file (or, with no path, the folder) in this step's outputs."""
        return StepOutput(self, path)

    @property
    def result(self) -> StepResult:
        """This step's return value, for use in a later step's config."""
        return StepResult(self)

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"StepHandle({self.name!r})"

    def __reduce__(self) -> tuple[Any, ...]:  # copies and pickles keep the experiment
        return (StepHandle, (self.experiment, self.name))


class Experiment(JobLookup, RecordedRuns):
    """A named set of steps; ``nemoflow build`` or :meth:`run` builds it.

    ``exp.id`` is given at construction, NeMo Run's form ``<title>_<time_ns>``; the first run is
    recorded in the ledger under it, and each later run under a new id. :meth:`from_id` reloads
    a run in any process; :meth:`status`, :meth:`results`, :meth:`logs`, ... ask it about itself.
    """

    def __init__(
        self,
        name: str | None = None,
        description: Any = "",
        tags: list[str] | tuple[str, ...] = (),
        *,
        title: str | None = None,
        executor: Any = None,
        id: str | None = None,
        log_level: str = "INFO",
        package_versions: bool = True,
        rename_duplicates: bool = False,
        **_nemo_run_options: Any,
    ) -> None:
        """Args:
        name: the experiment's name (letters, digits, ``_``, ``-``, ``.``); ``title=`` is NeMo Run's keyword for it.
        description: free text, recorded in the ledger. (An executor here is taken as ``executor``,
            NeMo Run's second positional argument.)
        tags: recorded in the ledger.
        executor: the executor of every step added without one (default: a local subprocess).
        id: the id of the first run (default: ``<name>_<time_ns>``).
        log_level: the level of nemoflow's log messages (``"INFO"``, ``"WARN"``, ...).
        package_versions: the versions of installed distributions a step's code reaches are part
            of its key (``pip install -U numpy`` rebuilds the steps that use numpy); False keeps
            them out of keys (the ledger still records the environment).
        rename_duplicates: a second step of a name already taken is renamed ``<name>_<n>`` (NeMo
            Run's renaming, for ported code) instead of being an error (names are part of keys).
        **_nemo_run_options: NeMo Run's options without a meaning here (``base_dir``,
            ``clean_mode``, ...): accepted and ignored.
        """
        name = name if name is not None else title
        if name is None:
            raise ExperimentTypeError("Experiment() needs a name (NeMo Run's title)", hint="Experiment('my_study')")
        if not STEP_NAME.match(name):
            raise UserError(f"invalid experiment name {name!r}", hint="use letters, digits, '_', '-', '.'")
        if not isinstance(description, str):  # Experiment(title, executor), NeMo Run's order
            executor, description = description, ""
        level = logging.getLevelName(str(log_level).upper())
        if not isinstance(level, int):
            raise ExperimentValueError(f"unknown log_level {log_level!r}", hint="DEBUG, INFO, WARN, ERROR")
        logging.getLogger("nemoflow").setLevel(level)
        self.name = name
        self.description = description
        self.tags = list(tags)
        self._executor = executor
        self.log_level = str(log_level)
        self.rename_duplicates = rename_duplicates
        self.steps: dict[str, Step] = {}
        self.groups: dict[str, list[str]] = {}  # job group name -> its steps
        self.pipeline_file: Path | None = None
        self.module_name: str | None = None
        self.plugins: list[Plugin] = []
        self.package_versions = package_versions
        self.id: str = id or f"{name}_{time.time_ns()}"
        self.created = time.time()
        self.store: Store | None = None  # of its latest run (set when a run is recorded)
        self.run_defaults: dict[str, Any] = {}  # options the next run keeps (after reset)

    @property
    def title(self) -> str:
        """NeMo Run's name for ``name``."""
        return self.name

    @property
    def executor(self) -> Any:
        """The executor of the steps added without one (NeMo Run's default: a ``LocalExecutor``, made
        when first asked for; change it before adding steps to change theirs)."""
        if self._executor is None:
            self._executor = default_executor()
        return self._executor

    @executor.setter
    def executor(self, executor: Any) -> None:
        self._executor = executor

    def __enter__(self) -> Experiment:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add(
        self,
        task: Any,
        executor: Any = None,
        name: str | None = None,
        *,
        dependencies: Iterable[StepHandle | str] = (),
        plugins: Any = (),
        tail_logs: bool = False,
        extra_code: list[Any] | tuple[Any, ...] = (),
        extra_files: list[str] | tuple[str, ...] = (),
        version: str = "",
        **arguments: Any,
    ) -> StepHandle:
        """Add a step; references to other steps inside ``task`` make dependencies.

        Args:
            task: a ``Partial``, ``Config`` or ``Script``; a plain function (its keyword
                arguments are ``**arguments``: it becomes ``Partial(fn, **arguments)``); or a list
                of them, a job group: one entry per task, all on ``executor`` (``name`` required).
            executor: where it runs (default: the experiment's executor, else a local subprocess).
            name: the step's name (default: the target's name, made unique).
            dependencies: steps to run first (handles from ``add``, or names), besides those
                ``task`` refers to.
            plugins: a Plugin or a list; each is assigned the experiment id and set up on copies
                of the task and executor now (NeMo Run's order), before the key is computed.
            tail_logs: show this step's output on the screen while it runs.
            extra_code: functions, classes or modules whose code the step's key also counts
                (code the fingerprint cannot see: a ``getattr`` by string, ``importlib``).
            extra_files: files (paths or globs, relative to the build's directory) whose
                content the key also counts.
            version: a version string of the step; change it to rebuild the step.

        Returns:
            A handle of the step (``str(handle)`` is its name, NeMo Run's job id).

        Raises:
            UserError: a bad or duplicate name, a task that is not a config or Script (also a
                TypeError), an unknown dependency or a job group without a name (also an
                AssertionError), a dependency on a step of another experiment.
        """
        after = [self._dependency(dep, "dependencies") for dep in dependencies]
        plugins = [plugins] if isinstance(plugins, Plugin) else list(plugins or ())
        executor = executor if executor is not None else self._executor
        options = dict(plugins=plugins, tail_logs=tail_logs, extra=(extra_code, extra_files, version))
        if isinstance(task, (list, tuple)):
            return self._add_group(list(task), executor, name, after, **options)
        task = as_task(task, arguments)
        step_name = self._unique(name if name else self._free_name(task), explicit=bool(name))
        self._add_step(step_name, task, executor, [n for dep in after for n in dep], **options)
        return StepHandle(self, step_name)

    def _add_group(
        self, tasks: list[Any], executor: Any, name: str | None, after: list[list[str]], **options: Any
    ) -> StepHandle:
        if not name:
            raise ExperimentAssertionError("name is required for task group.", hint="exp.add([...], name='group')")
        group = self._unique(name, explicit=True)
        executors = executor if isinstance(executor, list) else [executor] * len(tasks)
        if len(executors) != len(tasks):
            raise ExperimentAssertionError(f"job group {group!r}: {len(tasks)} tasks but {len(executors)} executors")
        members = [f"{group}-{i}" for i in range(len(tasks))]
        for member, task, member_executor in zip(members, tasks, executors, strict=True):
            self._check_free(member)
            self._add_step(member, as_task(task, {}), member_executor, [n for dep in after for n in dep], **options)
        self.groups[group] = members
        return StepHandle(self, group)

    def _add_step(
        self,
        step_name: str,
        task: Buildable[Any] | Script,
        executor: Any,
        dependencies: list[str],
        *,
        plugins: list[Plugin],
        tail_logs: bool,
        extra: tuple[Any, Any, str],
    ) -> None:
        if isinstance(task, Buildable) and not task.__nf_path__:
            place(task, step_name)
        if plugins:  # on copies, at add time (NeMo Run's order); the user's objects stay as they were
            task, executor = copy_task(task, self), copy_task(executor or default_executor(), self)
            for plugin in plugins:
                if hasattr(plugin, "assign"):
                    plugin.assign(self.id)
                plugin.setup(task, executor)
        extra_code, extra_files, version = extra
        declared = Declared(tuple(extra_code), tuple(extra_files), str(version)) if any(extra) else None
        self.steps[step_name] = Step(
            step_name, task, executor, dependencies, [], declared, tail_logs=tail_logs, plugins_applied=plugins
        )

    def _dependency(self, dep: Any, where: str) -> list[str]:
        if isinstance(dep, str) and not isinstance(dep, StepHandle):
            names = self._job(dep)
            if not names:
                raise ExperimentAssertionError(
                    f"Dependency {dep} not found.", where=where, hint=did_you_mean(dep, self.steps)
                )
            return names
        self._check_own(dep, where)
        return self.groups.get(dep.name, [dep.name])

    def _check_own(self, handle: Any, where: str) -> None:
        if not isinstance(handle, StepHandle):
            raise UserError(f"expected a step handle from exp.add(...), got {type(handle).__name__}", where=where)
        if handle.experiment is not self:
            raise UserError(
                f"step {handle.name!r} belongs to experiment {handle.experiment.name!r}, not {self.name!r}",
                where=where,
                hint="add that step to this experiment, or pass its output as a nemoflow.File",
            )

    def handle(self, name: str) -> StepHandle:
        """The handle of an existing step, by name."""
        if name not in self.steps:
            raise UserError(f"no step named {name!r}", hint=did_you_mean(name, self.steps))
        return StepHandle(self, name)

    # ---- running (NeMo Run's surface; the engine is imported lazily, from below) ----------------
    def run(
        self,
        sequential: bool = False,
        detach: bool = False,
        tail_logs: bool = False,
        direct: bool = False,
        *,
        max_concurrent: int | None = None,
        dryrun: bool = False,
        plugins: Iterable[Plugin] = (),
        store: Store | str | os.PathLike[str] | None = None,
        jobs: int | None = None,
        force: Iterable[str] = (),
        until: Iterable[str] = (),
        workdir: str | os.PathLike[str] | None = None,
        salt: str = "",
        raise_on_failure: bool = True,
    ) -> Any:
        """Build this experiment with the engine of ``nemoflow build``: what is up to date is skipped.

        The first run is recorded under ``exp.id``; a later run of the same object gets a new id.
        Every run is recorded in the ledger, even when nothing had to run.

        Args:
            sequential: run the steps one after another in the order they were added (keys do
                not change).
            detach: submit the steps of detachable executors (Slurm) and return without waiting;
                other steps are built here.
            tail_logs: show every step's output on the screen while it runs (else only the
                steps added with ``tail_logs=True``).
            direct: run Python steps inside this process.
            max_concurrent: at most this many steps run at once.
            dryrun: only plan: return the ``Plan`` (every step's key and reason); nothing runs
                and nothing is recorded.
            plugins: applied to every step (after ``exp.plugins``) before keys are computed.
            store: the target store (default: the store of the run reloaded or reset, else
                ``$NEMOFLOW_STORE``, else ``targets/``).
            jobs: steps that may run at once (default: ``max_concurrent``, else the most steps
                that can run side by side, at most the number of CPUs; with ``direct``, 1).
            force: steps to rebuild even when up to date.
            until: build only these steps and what they need.
            workdir: where relative input paths are read from (default: the current directory).
            salt: a version string mixed into every key.
            raise_on_failure: raise BuildFailed when a step fails (else return the result).

        Returns:
            The ``BuildResult`` (with ``dryrun``: the ``Plan``).

        Raises:
            BuildFailed: a step failed; it carries the BuildResult.
            PipelineError: the experiment cannot be planned.
        """
        from nemoflow.runs.launch import run_experiment

        kept = self.run_defaults
        return run_experiment(
            self,
            tail_logs=tail_logs or frozenset(name for name, step in self.steps.items() if step.tail_logs),
            sequential=sequential or kept.get("sequential", False),
            max_concurrent=max_concurrent or kept.get("max_concurrent"),
            dryrun=dryrun,
            detach=detach,
            plugins=plugins,
            store=store if store is not None else self.store,
            jobs=jobs,
            direct=direct or kept.get("direct", False),
            force=force,
            until=until,
            workdir=workdir if workdir is not None else kept.get("workdir"),
            salt=salt or kept.get("salt", ""),
            raise_on_failure=raise_on_failure,
        )

    def dryrun(self, *, store: Store | str | os.PathLike[str] | None = None, log: bool = True) -> Any:
        """Print what a run would do (each step: its key, whether it runs and why, its task and
        executor) and return the ``Plan``; nothing runs and nothing is recorded."""
        from nemoflow.runs.compat import print_dryrun

        plan = self.run(dryrun=True, store=store)
        if log:
            print_dryrun(self, plan)
        return plan

    def __repr__(self) -> str:
        return f"Experiment({self.name!r}, id={self.id!r}, steps={len(self.steps)})"
