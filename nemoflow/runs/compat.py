"""NeMo Run's printed and dict forms of an experiment's status, logs, dry run and ``run.run`` result."""

from __future__ import annotations

import re
from typing import Any

from nemoflow.errors import UserError
from nemoflow.pipeline.experiment import Experiment
from nemoflow.pipeline.jobs import namespace
from nemoflow.pipeline.plan import Plan
from nemoflow.record.status import StepStatus
from nemoflow.store.targets import LOG, Store

# NeMo Run's AppState names of nemoflow's step states
_APP_STATE = {
    "done": "SUCCEEDED",
    "failed": "FAILED",
    "cancelled": "CANCELLED",
    "interrupted": "FAILED",
    "running": "RUNNING",
    "submitted": "PENDING",
    "pending": "PENDING",
    "not run": "UNKNOWN",
}


class NotFound(UserError, AssertionError):
    """An experiment, run or job that does not exist (NeMo Run asserts), as a UserError."""


def app_state(state: str) -> str:
    """NeMo Run's (torchx's) name of a step state: ``SUCCEEDED``, ``FAILED``, ``RUNNING``, ..."""
    return _APP_STATE.get(state, state.upper())


def _jobs(exp: Experiment, rows: list[StepStatus]) -> list[tuple[str, list[StepStatus]]]:
    """The run's jobs, as NeMo Run lists them: a step, or a job group with its steps."""
    grouped = {member: group for group, members in exp.groups.items() for member in members}
    jobs: dict[str, list[StepStatus]] = {}
    for row in rows:
        jobs.setdefault(grouped.get(row.name, row.name), []).append(row)
    return list(jobs.items())


def _executor_name(exp: Experiment, name: str) -> str:
    step = exp.steps.get(name)
    executor = step.executor if step is not None else None
    return type(executor).__name__ if executor is not None else "LocalExecutor"


def _job_state(rows: list[StepStatus]) -> str:
    states = {app_state(row.state) for row in rows}
    for state in ("FAILED", "CANCELLED", "RUNNING", "PENDING", "UNKNOWN"):
        if state in states:
            return state
    return "SUCCEEDED"


def status_dict(exp: Experiment, rows: list[StepStatus]) -> dict[str, dict[str, Any]]:
    """NeMo Run's ``status(return_dict=True)``: job id -> name, status, executor, job_id, handle, local_dir."""
    result = {}
    for job, members in _jobs(exp, rows):
        first = members[0]
        run = first.last_run or {}
        result[job] = {
            "name": job,
            "status": _job_state(members),
            "executor": _executor_name(exp, first.name),
            "job_id": str(run.get("job_id") or ""),
            "handle": str(run.get("id") or ""),
            "local_dir": first.output or str(_folder(exp, first)),
            "steps": [row.name for row in members],
            "key": first.key,
            "reason": first.reason,
        }
    return result


def _folder(exp: Experiment, row: StepStatus) -> Any:
    if row.last_run and row.last_run.get("log_path"):
        return row.last_run["log_path"].rsplit("/", 1)[0]
    return exp.store.target_dir(row.name, row.key) if exp.store is not None else ""


def status_text(exp: Experiment, rows: list[StepStatus]) -> str:
    """NeMo Run's printed status: one block per job (its status, executor, job id and folder)."""
    lines = ["", f"Experiment Status for {exp.id}"]
    for index, (job, values) in enumerate(status_dict(exp, rows).items()):
        lines += [
            "",
            f"Task {index}: {job}",
            f"- Status: {values['status']}",
            f"- Executor: {values['executor']}",
            f"- Job id: {values['job_id']}",
            f"- Local Directory: {values['local_dir']}",
        ]
    return "\n".join(lines) + "\n"


def grep(text: str, regex: str | None) -> str:
    """The lines of ``text`` that match ``regex`` (all of them with no regex)."""
    if not regex:
        return text
    pattern = re.compile(regex)
    return "".join(line for line in text.splitlines(keepends=True) if pattern.search(line))


def print_dryrun(exp: Experiment, plan: Plan) -> None:
    """What ``exp.dryrun()`` prints: every step's key, whether it runs and why, its task and executor."""
    print(f"Experiment {exp.id} dryrun...")
    for step in plan:
        added = exp.steps.get(step.name)
        executor = added.executor if added is not None and added.executor is not None else "LocalExecutor()"
        print(f"Task {step.name} ({'runs' if step.runs else 'skipped'}: {step.reason.value}; key {step.key[:12]})")
        print(f"  task: {step.task!r}")
        print(f"  executor: {executor!r}")


def print_task_dryrun(task: Any) -> None:
    """What ``run.run(task, dryrun=True)`` prints: the task's target and its arguments (NeMo Run's table)."""
    print(f"Dry run for task {namespace(task)}")
    arguments = getattr(task, "__arguments__", None)
    if isinstance(arguments, dict):
        print("Resolved Arguments")
        for name, value in arguments.items():
            print(f"  {name}: {value!r}")
    else:
        print(f"  {task!r}")


def show_from_store(store: Store, name: str, key: str) -> None:
    """What ``run.run`` prints for a step served from the store: its stored output and result."""
    folder = store.target_dir(name, key)
    log = folder / LOG
    print(f"[{name}] up to date: served from the store ({folder}), not run again")
    if log.is_file():
        for line in log.read_text(errors="replace").splitlines():
            print(f"[{name}] {line}")
    result = store.load_result(name, key)
    if result is not None:
        print(f"[{name}] result: {result!r}")
