"""Experiment runs from the ledger and the store alone: reload, list, and ask a run about itself.

A run's row says where its step targets were importable from; its ``experiment_steps`` rows
name its steps (key, executor, explicit dependencies); the configs come from the ledger's
``steps`` rows (or, failing that, the targets' manifests). Nothing re-runs the pipeline code.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nemoflow.configs.core import trusted_values
from nemoflow.configs.serialize import from_data, import_object
from nemoflow.engine.build import ledger_path
from nemoflow.engine.detach import attach
from nemoflow.errors import ConfigError, UserError, did_you_mean
from nemoflow.executors import Handle, backend_of, executor_from_data
from nemoflow.pipeline.experiment import Experiment, StepHandle
from nemoflow.pipeline.fingerprint import Declared, declared_from_data
from nemoflow.pipeline.loading import import_pipeline_module
from nemoflow.pipeline.plan import apply_plugins
from nemoflow.record.ledger import Ledger
from nemoflow.record.status import StepStatus
from nemoflow.runs.compat import NotFound
from nemoflow.runs.launch import default_executor
from nemoflow.store.targets import LOG, METRICS, METRICS_TIMES, Store, process_alive

# ---- finding and reloading runs ---------------------------------------------------------------


def open_ledger(store: Store) -> Ledger:
    """The store's ledger.

    Raises:
        UserError: the store has no ledger (nothing was ever run with it).
    """
    path = ledger_path(store)
    if not path.exists():
        raise UserError(f"no ledger at {path}", hint="pass store=... (the folder of the targets), or run an experiment")
    return Ledger(path)


def catalog(name: str | None, store: Store) -> list[dict[str, Any]]:
    """The recorded runs (of experiment ``name``, or all), newest first, as metadata dicts."""
    if not ledger_path(store).exists():
        return []
    ledger = open_ledger(store)
    try:
        return [_with_live_status(row) for row in ledger.experiments(name)]
    finally:
        ledger.close()


def _with_live_status(row: dict[str, Any]) -> dict[str, Any]:
    """A run still marked running whose build process is gone was interrupted (killed)."""
    if row.get("status") == "running" and not process_alive(row.get("host"), row.get("pid")):
        row["status"] = "interrupted"
    return row


def latest_id(name: str, store: Store, *, having: str | None = None) -> str:
    """The id of the latest run of experiment ``name`` (``having``: the latest that has that step, as an
    ``--until`` run may not; the latest run when none has it).

    Raises:
        UserError: no run of that name.
    """
    ledger = open_ledger(store)
    try:
        rows = ledger.experiments(name)
        if not rows:
            known = {row["name"] for row in ledger.experiments()}
            raise NotFound(f"no run of experiment {name!r} in {ledger.path}", hint=did_you_mean(name, known))
        if having is not None:
            for row in rows:
                if any(m["name"] == having for m in ledger.experiment_steps(row["id"])):
                    return row["id"]
    finally:
        ledger.close()
    return rows[0]["id"]


def reload(experiment_id: str, store: Store, into: Experiment | None = None) -> Experiment:
    """Rebuild a recorded run as an Experiment with its original configs and executors (``into``:
    as the steps of that experiment, which keeps its id).

    Raises:
        UserError: no such run, or a step's target cannot be imported any more.
    """
    ledger = open_ledger(store)
    try:
        row = ledger.experiment(experiment_id)
        if row is None:
            ids = [r["id"] for r in ledger.experiments()]
            raise NotFound(f"no experiment {experiment_id!r} in {ledger.path}", hint=did_you_mean(experiment_id, ids))
        members = ledger.experiment_steps(experiment_id)
        configs = ledger.step_configs(m["key"] for m in members)
    finally:
        ledger.close()
    _make_importable(row)
    exp = into or Experiment(row["name"], description=row["description"] or "", tags=row["tags"], id=experiment_id)
    exp.steps, exp.groups = {}, {}
    exp.pipeline_file = Path(row["pipeline_file"]) if row["pipeline_file"] else None
    exp.module_name = row["module"]
    handles = {m["name"]: StepHandle(exp, m["name"]) for m in members}
    for member in members:
        task = _task(member, configs, handles, store, experiment_id)
        executor = executor_from_data(member["executor"]) if member["executor"] else None
        dependencies = [handles[d] for d in member["dependencies"] if d in handles]
        exp.add(task, name=member["name"], executor=executor, dependencies=dependencies)
        exp.steps[member["name"]].declared = _declared(member)
    tailed = (row.get("options") or {}).get("tail_logs")
    for step in exp.steps.values():  # the steps whose output was shown are shown again
        step.tail_logs = tailed is True or (isinstance(tailed, list) and step.name in tailed)
    exp.store = store
    if into is None:
        exp.created = row["created"]
    return exp


def _declared(member: dict[str, Any]) -> Declared | None:
    try:
        return declared_from_data(member.get("declared"), import_object)
    except (ImportError, ConfigError) as exc:
        raise UserError(f"step {member['name']!r}: its extra_code cannot be imported any more: {exc}") from None


def _make_importable(row: dict[str, Any]) -> None:
    """Put the run's import roots on ``sys.path`` and import its pipeline file's module (not run it)."""
    for entry in row["sys_path"] or []:
        if entry not in sys.path and os.path.isdir(entry):
            sys.path.append(entry)
    module, file = row["module"], row["pipeline_file"]
    if module and file and module not in sys.modules and os.path.isfile(file):
        import_pipeline_module(Path(file))


def _task(
    member: dict[str, Any], configs: dict[str, Any], handles: dict[str, StepHandle], store: Store, experiment_id: str
) -> Any:
    name, key = member["name"], member["key"]
    data = configs.get(key)
    if data is None:
        manifest = store.read_manifest(name, key)
        if manifest is None:
            raise UserError(f"the config of step {name!r} of {experiment_id} is in neither the ledger nor the store")
        data = manifest["config"]
    try:
        with trusted_values():  # checked when the run was planned
            return from_data(data, steps=handles, trusted=True)  # nemoflow's own record: its pickles too
    except ConfigError as exc:
        raise UserError(
            f"cannot reload step {name!r} of {experiment_id}: {exc}",
            hint="its target must still be importable (the run's sys.path and pipeline file are in the ledger)",
        ) from None


# ---- one run ----------------------------------------------------------------------------------


def bound(exp: Experiment) -> tuple[Store, str]:
    """The store and id of the experiment's latest run.

    Raises:
        UserError: it has not run yet.
    """
    if exp.store is None:
        raise UserError(
            f"experiment {exp.name!r} has not run yet",
            hint="call exp.run() first, or reload a run with Experiment.from_id / from_title",
        )
    return exp.store, exp.id


def metadata(exp: Experiment) -> dict[str, Any]:
    """The ledger's row of the run (name, tags, pipeline file and hash, git state, options, times, status);
    before a run, what the row will say: name, id, description, tags, created, pipeline file, git state."""
    if exp.store is None:
        return _unrecorded_metadata(exp)
    store, experiment_id = bound(exp)
    ledger = open_ledger(store)
    try:
        row = ledger.experiment(experiment_id)
    finally:
        ledger.close()
    if row is None:
        raise UserError(f"no experiment {experiment_id!r} in {store.root}")
    return _with_live_status(row)


def status(exp: Experiment) -> list[StepStatus]:
    """One row per step of the run: done, running, failed, cancelled, interrupted, pending or not run."""
    store, experiment_id = bound(exp)
    ledger = open_ledger(store)
    try:
        row = ledger.experiment(experiment_id) or {}
        members = ledger.experiment_steps(experiment_id)
        runs = _latest_runs(ledger, experiment_id)
    finally:
        ledger.close()
    building = row.get("ended") is None and process_alive(row.get("host"), row.get("pid"))
    rows = []
    for member in members:
        name, key = member["name"], member["key"]
        run = runs.get(name)
        state = _state(run, store.is_complete(name, key), building)
        output = str(store.target_dir(name, key)) if state == "done" else None
        rows.append(StepStatus(name, key, state, member["reason"], output, run))
    return rows


def _state(run: dict[str, Any] | None, complete: bool, building: bool) -> str:
    if run is None:
        return "done" if complete else ("pending" if building else "not run")
    if run["status"] == "running":
        return "running" if process_alive(run["host"], run["pid"]) else "interrupted"
    return "done" if run["status"] == "succeeded" else run["status"]


def _latest_runs(ledger: Ledger, experiment_id: str) -> dict[str, dict[str, Any]]:
    return {run["step"]: run for run in ledger.runs_in(experiment_id)}  # ordered by start: the last wins


def configurations(exp: Experiment) -> dict[str, Any]:
    """Step name -> config: as recorded for a run; before any run, as plugins will leave them."""
    if exp.store is None:
        return {name: step.task for name, step in apply_plugins(exp, default_executor=default_executor).items()}
    store, experiment_id = bound(exp)
    return {name: step.task for name, step in reload(experiment_id, store).steps.items()}


def results(exp: Experiment) -> dict[str, Any]:
    """Step name -> return value, for every step of the run whose target is in the store."""
    store, experiment_id = bound(exp)
    return {
        m["name"]: store.load_result(m["name"], m["key"])
        for m in _members(store, experiment_id)
        if store.is_complete(m["name"], m["key"])
    }


def _members(store: Store, experiment_id: str) -> list[dict[str, Any]]:
    ledger = open_ledger(store)
    try:
        return ledger.experiment_steps(experiment_id)
    finally:
        ledger.close()


def _member_and_run(exp: Experiment, step: str) -> tuple[Store, dict[str, Any], dict[str, Any] | None]:
    """A step of the run, and its run in this experiment run (None: up to date, or not started)."""
    store, experiment_id = bound(exp)
    ledger = open_ledger(store)
    try:
        members = {m["name"]: m for m in ledger.experiment_steps(experiment_id)}
        if step not in members:
            raise UserError(f"experiment {experiment_id} has no step {step!r}", hint=did_you_mean(step, members))
        run = _latest_runs(ledger, experiment_id).get(step)
    finally:
        ledger.close()
    return store, members[step], run


def _step_folder(store: Store, member: dict[str, Any], run: dict[str, Any] | None) -> Path:
    """Where the step's log and metrics are: its workspace, target or failed attempt."""
    if run is not None and run.get("log_path"):
        return Path(run["log_path"]).parent
    return store.target_dir(member["name"], member["key"])


def _read_step_file(exp: Experiment, step: str, filename: str) -> str:
    """A file of the step's folder; the folder moves once when the step ends, so look twice."""
    for _ in range(2):
        store, member, run = _member_and_run(exp, step)
        try:
            return (_step_folder(store, member, run) / filename).read_text(errors="replace")
        except FileNotFoundError:
            if run is None or run["status"] != "running":
                return ""
    return ""


def logs(exp: Experiment, step: str) -> str:
    """The text of the step's log (also of a failed or cancelled attempt); "" when it printed nothing.

    The log of a job still running on a backend that does not share this machine's files (Slurm
    over SSH) is read from there.
    """
    _, _, run = _member_and_run(exp, step)
    if run is not None and run["status"] in ("running", "submitted"):
        text = _backend_log(run)
        if text is not None:
            return text
    return _read_step_file(exp, step, LOG)


def _backend_log(run: dict[str, Any]) -> str | None:
    """The log of a job that runs where this machine's files are not (None: read the local one)."""
    executor = backend_of(run)
    if executor is None or json.loads(run["details"]).get("shared", True) or not hasattr(executor, "attach"):
        return None
    return executor.logs(attach(executor, run))


def metrics(exp: Experiment, step: str) -> list[dict[str, Any]]:
    """The rows the step logged with ``nemoflow.log_metrics``, each with the ``time`` it was logged."""
    rows = [json.loads(line) for line in _read_step_file(exp, step, METRICS).splitlines() if line.strip()]
    times = [json.loads(line) for line in _read_step_file(exp, step, METRICS_TIMES).splitlines() if line.strip()]
    return [{**(times[i] if i < len(times) else {}), **row} for i, row in enumerate(rows)]


def follow_logs(exp: Experiment, step: str, *, poll: float = 0.1) -> Iterator[str]:
    """The step's log, line by line, as it is written; ends when the step's run ends.

    For a step that has not started yet it waits, and it ends at once (after what is there)
    for a step that was up to date or that the build will not run any more.
    """
    handle = None
    pending = ""
    try:
        while True:
            store, member, run = _member_and_run(exp, step)
            if handle is None and run is not None and run.get("log_path"):
                with contextlib.suppress(FileNotFoundError):  # not written yet, or just moved: look again
                    handle = open(run["log_path"], errors="replace")  # noqa: SIM115 - a moved file stays readable
            if handle is not None:
                pending += handle.read()
                *lines, pending = pending.split("\n")
                yield from lines
            if _finished(exp, store, member, run):
                rest = handle.read() if handle is not None else logs(exp, step)
                yield from (pending + rest).splitlines()
                return
            time.sleep(poll)
    finally:
        if handle is not None:
            handle.close()


def _finished(exp: Experiment, store: Store, member: dict[str, Any], run: dict[str, Any] | None) -> bool:
    if run is not None:
        return run["status"] != "running" or not process_alive(run["host"], run["pid"])
    if member["reason"] == "up to date":
        return True
    row = metadata(exp)
    return row.get("ended") is not None or not process_alive(row.get("host"), row.get("pid"))


def cancel(exp: Experiment, step: str | None = None, *, timeout: float = 30.0) -> list[str]:
    """Stop the run's running steps (or one step), and start no more of them (or not that one).

    Jobs of the local executor on this host get SIGTERM, then SIGKILL after ``timeout / 2``;
    their runs end as cancelled. Jobs on a backend (Slurm: ``scancel``) are cancelled there, also
    those a detached build left to their cluster. A run whose worker is gone is marked cancelled. Steps running
    in the build process (``direct``) or on other hosts finish; no step starts after them.

    Returns:
        The names of the steps whose running jobs were stopped.
    """
    store, experiment_id = bound(exp)
    if step is not None:
        _member_and_run(exp, step)  # a step of this run, or a UserError
    store.request_cancel(experiment_id, step)
    ledger = open_ledger(store)
    try:
        latest = [run for run in _latest_runs(ledger, experiment_id).values() if step in (None, run["step"])]
        remote = [run for run in latest if run["status"] in ("running", "submitted") and backend_of(run) is not None]
        for run in remote:
            backend_of(run).cancel(Handle(None, run["job_id"]))  # type: ignore[union-attr,arg-type]
            if run["status"] == "submitted":  # no build follows it: close it here
                ledger.mark_cancelled(run["id"])
                store.unmark_detached(run["id"])
        running = [run for run in latest if run["status"] == "running"]
        # a job outlives no build (it follows its parent), so only a live build's job is signalled:
        # the pid of a job whose build is gone may belong to another process by now
        stoppable = [run for run in running if _job_pid(run) is not None and process_alive(run["host"], run["pid"])]
        _signal(stoppable, signal.SIGTERM)
        deadline = time.time() + timeout
        killed = False
        while running:
            for run in running:
                if not process_alive(run["host"], run["pid"]):  # nobody will close it
                    ledger.mark_cancelled(run["id"], "cancelled (its build was gone)")
            still = {r["id"] for r in ledger.runs_in(experiment_id) if r["status"] == "running"}
            running = [run for run in running if run["id"] in still]
            if not killed and time.time() > deadline - timeout / 2:
                _signal([run for run in running if run in stoppable], signal.SIGKILL)
                killed = True
            if time.time() > deadline:
                break
            time.sleep(0.05)
    finally:
        ledger.close()
    return [run["step"] for run in [*remote, *stoppable]]


def _job_pid(run: dict[str, Any]) -> int | None:
    """The pid of a run's local subprocess on this host, if it has one."""
    if run["executor"] != "local" or run["host"] != socket.gethostname() or not run.get("job_id"):
        return None
    return int(run["job_id"])


def _signal(runs: list[dict[str, Any]], signum: int) -> None:
    for run in runs:
        pid = _job_pid(run)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)


def reset(exp: Experiment) -> Experiment:
    """Make ``exp`` ready to run again, as NeMo Run's ``reset``: a new id, its steps as its latest run
    recorded them, that run's store and options kept for the next ``run()``. Nothing runs here.

    An experiment that has not run yet is left as it is (NeMo Run says so and returns it).
    """
    if exp.store is None:
        print(f"Experiment {exp.id} has not run yet, skipping reset...")
        return exp
    store, experiment_id = bound(exp)
    row = metadata(exp)
    options = row.get("options") or {}
    groups = dict(exp.groups)
    reload(experiment_id, store, into=exp)
    exp.groups = {group: members for group, members in groups.items() if set(members) <= set(exp.steps)}
    exp.id = f"{exp.name}_{time.time_ns()}"
    exp.run_defaults = {
        "workdir": row.get("workdir"),
        "salt": options.get("salt", ""),
        "sequential": options.get("sequential", False),
        "max_concurrent": options.get("max_concurrent"),
        "direct": options.get("direct", False),
    }
    return exp


def _unrecorded_metadata(exp: Experiment) -> dict[str, Any]:
    from nemoflow.record.provenance import git_state

    git = git_state(exp.pipeline_file if exp.pipeline_file else Path.cwd())
    return {
        "id": exp.id,
        "name": exp.name,
        "description": exp.description,
        "tags": exp.tags,
        "created": exp.created,
        "pipeline_file": str(exp.pipeline_file) if exp.pipeline_file else None,
        "git_commit": git.commit,
        "git_dirty": None if git.dirty is None else int(git.dirty),
        "steps": len(exp.steps),
        "status": "not run",
    }
