"""Experiments: named steps with executors and dependencies; loading a pipeline file."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemoflow.configs.core import Buildable, Script, place
from nemoflow.configs.refs import StepOutput, StepResult
from nemoflow.errors import UserError, did_you_mean
from nemoflow.pipeline.fingerprint import Declared
from nemoflow.store.targets import Store

_STEP_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.=+-]*$")


class Plugin:
    """Changes a step's task or executor before its key is computed (``setup`` in place)."""

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


class StepHandle:
    """What ``Experiment.add`` returns: refer to the step's outputs and result from later steps."""

    def __init__(self, experiment: Experiment, name: str) -> None:
        self.experiment = experiment
        self.name = name

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

    def __repr__(self) -> str:
        return f"StepHandle({self.name!r})"


class Experiment:
    """A named set of steps; ``nemoflow build`` or :meth:`run` builds it.

    Every run is recorded in the ledger under a new id (``exp.id``): :meth:`from_id` reloads it
    in any process, and :meth:`status`, :meth:`results`, :meth:`logs`, ... ask it about itself.
    """

    def __init__(
        self,
        name: str,
        description: str = "",
        tags: list[str] | tuple[str, ...] = (),
        *,
        package_versions: bool = True,
    ) -> None:
        """Args:
        name: the experiment's name (letters, digits, ``_``, ``-``, ``.``).
        description: free text, recorded in the ledger.
        tags: recorded in the ledger.
        package_versions: the versions of installed distributions a step's code reaches are part
            of its key (``pip install -U numpy`` rebuilds the steps that use numpy); False keeps
            them out of keys (the ledger still records the environment).
        """
        if not _STEP_NAME.match(name):
            raise UserError(f"invalid experiment name {name!r}", hint="use letters, digits, '_', '-', '.'")
        self.name = name
        self.description = description
        self.tags = list(tags)
        self.steps: dict[str, Step] = {}
        self.pipeline_file: Path | None = None
        self.module_name: str | None = None
        self.plugins: list[Plugin] = []
        self.package_versions = package_versions
        self.id: str | None = None  # of its latest run, set as soon as the run is recorded
        self.store: Store | None = None  # of its latest run

    def __enter__(self) -> Experiment:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add(
        self,
        task: Buildable[Any] | Script,
        *,
        name: str | None = None,
        executor: Any = None,
        dependencies: list[StepHandle] | tuple[StepHandle, ...] = (),
        plugins: list[Plugin] | tuple[Plugin, ...] = (),
        extra_code: list[Any] | tuple[Any, ...] = (),
        extra_files: list[str] | tuple[str, ...] = (),
        version: str = "",
    ) -> StepHandle:
        """Add a step; references to other steps inside ``task`` make dependencies.

        Args:
            task: a ``Partial``, ``Config`` or ``Script``.
            name: the step's name (default: the target's name, made unique).
            executor: where it runs (default: a local subprocess).
            dependencies: steps to run first, besides those ``task`` refers to.
            plugins: applied to this step before its key is computed.
            extra_code: functions, classes or modules whose code the step's key also counts
                (code the fingerprint cannot see: a ``getattr`` by string, ``importlib``).
            extra_files: files (paths or globs, relative to the build's directory) whose
                content the key also counts.
            version: a version string of the step; change it to rebuild the step.

        Raises:
            UserError: a bad or duplicate name, a task that is not a config or Script, or a
                dependency on a step of another experiment.
        """
        if not isinstance(task, (Buildable, Script)):
            raise UserError(
                f"a step's task must be a nemoflow.Partial, Config or Script, got {type(task).__name__}",
                hint="wrap the function: nemoflow.Partial(fn, **arguments)",
            )
        step_name = name if name is not None else self._free_name(task)
        if not _STEP_NAME.match(step_name):
            raise UserError(f"invalid step name {step_name!r}", hint="use letters, digits, '_', '-', '.', '=', '+'")
        if step_name in self.steps:
            raise UserError(f"two steps are named {step_name!r}", hint="give each step a unique name=...")
        for dep in dependencies:
            self._check_own(dep, f"{step_name}: dependencies")
        if isinstance(task, Buildable) and not task.__nf_path__:
            place(task, step_name)
        declared = Declared(tuple(extra_code), tuple(extra_files), str(version)) if extra_code or extra_files or version else None
        self.steps[step_name] = Step(
            step_name, task, executor, [d.name for d in dependencies], list(plugins), declared
        )
        return StepHandle(self, step_name)

    def _free_name(self, task: Buildable[Any] | Script) -> str:
        if isinstance(task, Script):
            base = Path(task.path).stem if task.path else "script"
        else:
            base = getattr(task.__fn_or_cls__, "__name__", "step")
        name, n = base, 1
        while name in self.steps:
            n += 1
            name = f"{base}-{n}"
        return name

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
        *,
        tail_logs: bool = False,
        sequential: bool = False,
        max_concurrent: int | None = None,
        dryrun: bool = False,
        plugins: Iterable[Plugin] = (),
        store: Store | str | os.PathLike[str] | None = None,
        jobs: int | None = None,
        direct: bool = False,
        force: Iterable[str] = (),
        until: Iterable[str] = (),
        workdir: str | os.PathLike[str] | None = None,
        salt: str = "",
        raise_on_failure: bool = True,
    ) -> Any:
        """Build this experiment with the engine of ``nemoflow build``: what is up to date is skipped.

        Each call is a new run with a new id (``exp.id``), recorded in the ledger even when
        nothing had to run.

        Args:
            tail_logs: stream each step's output while it runs.
            sequential: run the steps one after another in the order they were added (keys do
                not change).
            max_concurrent: at most this many steps run at once.
            dryrun: only plan: return the ``Plan`` (every step's key and reason); nothing runs
                and nothing is recorded.
            plugins: applied to every step (after ``exp.plugins``) before keys are computed.
            store: the target store (default: ``$NEMOFLOW_STORE``, else ``targets/``).
            jobs: steps that may run at once (default: ``max_concurrent``, else the most steps
                that can run side by side, at most the number of CPUs; with ``direct``, 1).
            direct: run Python steps inside this process.
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

        return run_experiment(
            self,
            tail_logs=tail_logs,
            sequential=sequential,
            max_concurrent=max_concurrent,
            dryrun=dryrun,
            plugins=plugins,
            store=store,
            jobs=jobs,
            direct=direct,
            force=force,
            until=until,
            workdir=workdir,
            salt=salt,
            raise_on_failure=raise_on_failure,
        )

    # ---- recorded runs (from the ledger and the store; see nemoflow.runs.catalog) --------------------
    @classmethod
    def from_id(cls, experiment_id: str, *, store: Store | str | os.PathLike[str] | None = None) -> Experiment:
        """Reload a recorded run, with its original configs and executors, in any process.

        Raises:
            UserError: no such run in the store's ledger, or a step target no longer importable.
        """
        from nemoflow.runs import catalog
        from nemoflow.runs import launch as api

        return catalog.reload(experiment_id, api.as_store(store))

    @classmethod
    def from_title(cls, name: str, *, store: Store | str | os.PathLike[str] | None = None) -> Experiment:
        """Reload the latest recorded run of the experiment called ``name``."""
        from nemoflow.runs import catalog
        from nemoflow.runs import launch as api

        resolved = api.as_store(store)
        return catalog.reload(catalog.latest_id(name, resolved), resolved)

    @classmethod
    def catalog(
        cls, name: str | None = None, *, store: Store | str | os.PathLike[str] | None = None
    ) -> list[dict[str, Any]]:
        """The recorded runs (of experiment ``name``, or all), newest first, as metadata dicts."""
        from nemoflow.runs import catalog
        from nemoflow.runs import launch as api

        return catalog.catalog(name, api.as_store(store))

    def status(self) -> list[Any]:
        """One ``nemoflow.record.status.StepStatus`` per step of the latest run (the CLI renders them)."""
        from nemoflow.runs import catalog

        return catalog.status(self)

    def metadata(self) -> dict[str, Any]:
        """The latest run's ledger row: name, tags, pipeline file and hash, git state, options, times."""
        from nemoflow.runs import catalog

        return catalog.metadata(self)

    def configurations(self) -> dict[str, Any]:
        """Step name -> config: as the latest run recorded it (before a run: as plugins will leave it)."""
        from nemoflow.runs import catalog

        return catalog.configurations(self)

    def results(self) -> dict[str, Any]:
        """Step name -> return value, from the store, for the latest run's steps that are built."""
        from nemoflow.runs import catalog

        return catalog.results(self)

    def logs(self, step: str, *, follow: bool = False) -> str | Iterator[str]:
        """The text of a step's log in the latest run; with ``follow``, its lines as they come
        (a generator that ends when the step's run ends)."""
        from nemoflow.runs import catalog

        return catalog.follow_logs(self, step) if follow else catalog.logs(self, step)

    def metrics(self, step: str) -> list[dict[str, Any]]:
        """The rows a step of the latest run logged with ``nemoflow.log_metrics``."""
        from nemoflow.runs import catalog

        return catalog.metrics(self, step)

    def cancel(self, step: str | None = None, *, timeout: float = 30.0) -> list[str]:
        """Stop the latest run's running steps (or one step); no more of them start.

        Returns:
            The names of the steps whose running jobs were stopped.
        """
        from nemoflow.runs import catalog

        return catalog.cancel(self, step, timeout=timeout)

    def reset(self) -> Experiment:
        """Run the latest run again as a new run with a new id, same configs and options;
        returns the new run's Experiment.

        Raises:
            BuildFailed: a step failed; it carries the BuildResult.
        """
        from nemoflow.runs import catalog

        return catalog.reset(self)

    def __repr__(self) -> str:
        return f"Experiment({self.name!r}, steps={len(self.steps)})"
