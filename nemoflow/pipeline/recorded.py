"""What an Experiment asks of its recorded runs (the ledger and the store); the work is in nemoflow.runs."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from nemoflow.pipeline.experiment import Experiment, StepHandle
    from nemoflow.store.targets import Store


class RecordedRuns:
    """NeMo Run's inspection surface: ``from_id``, ``catalog``, ``status``, ``logs``, ``reset``, ..."""

    @classmethod
    def from_id(cls, experiment_id: str, *, store: Store | str | os.PathLike[str] | None = None) -> Experiment:
        """Reload a recorded run, with its original configs and executors, in any process.

        Raises:
            UserError: (also an AssertionError, as NeMo Run's "Experiment ... not found") no such run
                in the store's ledger, or a step target no longer importable.
        """
        from nemoflow.runs import catalog
        from nemoflow.runs import launch as api

        return catalog.reload(experiment_id, api.as_store(store))

    @classmethod
    def from_title(cls, title: str, *, store: Store | str | os.PathLike[str] | None = None) -> Experiment:
        """Reload the latest recorded run of the experiment called ``title``."""
        from nemoflow.runs import catalog
        from nemoflow.runs import launch as api

        resolved = api.as_store(store)
        return catalog.reload(catalog.latest_id(title, resolved), resolved)

    @classmethod
    def catalog(cls, title: str = "", *, store: Store | str | os.PathLike[str] | None = None) -> list[str]:
        """As NeMo Run lists them, oldest first: the ids of the recorded runs of experiment ``title``;
        with no title, the names of the experiments that have runs."""
        from nemoflow.runs import catalog
        from nemoflow.runs import launch as api

        rows = list(reversed(catalog.catalog(title or None, api.as_store(store))))
        if not title:
            return list(dict.fromkeys(row["name"] for row in rows))
        return [row["id"] for row in rows]

    @classmethod
    def runs(
        cls, title: str | None = None, *, store: Store | str | os.PathLike[str] | None = None
    ) -> list[dict[str, Any]]:
        """The recorded runs (of experiment ``title``, or all), newest first, as metadata dicts."""
        from nemoflow.runs import catalog
        from nemoflow.runs import launch as api

        return catalog.catalog(title, api.as_store(store))

    def status(self: Any, return_dict: bool = False) -> Any:
        """The latest run's steps: one ``StepStatus`` each (printed, to stderr, as NeMo Run prints them), or with
        ``return_dict`` NeMo Run's ``{job id: {"name", "status", "executor", "job_id", "local_dir"}}``."""
        from nemoflow.runs import catalog, compat

        rows = catalog.status(self)
        if return_dict:
            return compat.status_dict(self, rows)
        print(compat.status_text(self, rows), file=sys.stderr)  # stdout stays the caller's (``nemoflow show --json``)
        return rows

    def metadata(self: Any) -> dict[str, Any]:
        """The run's name, id, description, tags, created, pipeline file and git state; after a run,
        the ledger's row (with its options, times and status)."""
        from nemoflow.runs import catalog

        return catalog.metadata(self)

    def configurations(self: Any) -> dict[str, Any]:
        """Step name -> config: as the latest run recorded it (before a run: as plugins will leave it)."""
        from nemoflow.runs import catalog

        return catalog.configurations(self)

    def results(self: Any) -> dict[str, Any]:
        """Step name -> return value, from the store, for the latest run's steps that are built."""
        from nemoflow.runs import catalog

        return catalog.results(self)

    def logs(
        self: Any,
        step: str | StepHandle | None = None,
        *,
        job_id: str | StepHandle | None = None,
        regex: str | None = None,
        follow: bool = False,
    ) -> str | Iterator[str] | None:
        """A step's log in the latest run.

        ``exp.logs("step")`` returns its text (with ``follow``: its lines as they come, until the
        step's run ends). NeMo Run's form ``exp.logs(job_id=..., regex=...)`` prints the lines
        (those matching ``regex``) and returns None. A job id is a step name, a job group's name,
        or NeMo Run's id of the step (``module.function``, ``..._<index>``).
        """
        from nemoflow.runs import catalog, compat

        if step is None and job_id is None:
            raise compat.NotFound("exp.logs() needs a step name or job_id=...")
        names = self._steps_of(job_id if step is None else step)
        if follow:
            return catalog.follow_logs(self, names[0])
        text = "".join(catalog.logs(self, name) for name in names)
        text = compat.grep(text, regex)
        if job_id is None:
            return text
        print(text, end="" if text.endswith("\n") or not text else "\n")
        return None

    def _steps_of(self: Any, job_id: Any) -> list[str]:
        """The steps a job id names; an unknown one as it is (the recorded run says it has no such step)."""
        key = str(job_id)
        return self._job(key) or [key]

    def metrics(self: Any, step: str) -> list[dict[str, Any]]:
        """The rows a step of the latest run logged with ``nemoflow.log_metrics``."""
        from nemoflow.runs import catalog

        return catalog.metrics(self, self._steps_of(step)[0])

    def cancel(self: Any, step: str | None = None, *, timeout: float = 30.0) -> list[str]:
        """Stop the latest run's running steps (or one step); no more of them start.

        Returns:
            The names of the steps whose running jobs were stopped.
        """
        from nemoflow.runs import catalog

        return catalog.cancel(self, step, timeout=timeout)

    def reset(self: Any) -> Experiment:
        """Make this experiment ready to run again (NeMo Run's ``reset``): a new id, its steps as the
        latest run recorded them (change ``exp.tasks`` before ``exp.run()``), the same store and
        options. Returns the experiment itself; nothing runs until ``run()``."""
        from nemoflow.runs import catalog

        return catalog.reset(self)

    def diff(self: Any, other: Experiment, trim: bool = True) -> list[Any]:
        """How this experiment's tasks differ from ``other``'s (NeMo Run's ``exp.diff``): one
        ``Change`` per differing value, its path starting with the step's name; ``trim`` is
        accepted for NeMo Run's sake (only differences are listed either way)."""
        from nemoflow.configs.treeops import Change, diff

        changes: list[Change] = []
        for name in [*self.steps, *(n for n in other.steps if n not in self.steps)]:
            if name not in other.steps:
                changes.append(Change(name, "added", new=self.steps[name].task))
            elif name not in self.steps:
                changes.append(Change(name, "removed", old=other.steps[name].task))
            else:
                for change in diff(other.steps[name].task, self.steps[name].task):
                    path = (
                        f"{name}.{change.path}"
                        if change.path and not change.path.startswith("[")
                        else name + change.path
                    )
                    changes.append(Change(path, change.kind, change.old, change.new))
        return changes
