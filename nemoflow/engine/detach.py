"""Detached builds: submit the Slurm part of a DAG at once (``--detach``), and pick its results up later.

Submitted runs stay in the ledger with status ``submitted`` and the details needed to find their
job again (executor, job id, folders). Any later ``nemoflow build`` or ``status`` collects those
that ended (publishing their outputs exactly as a waiting build would have), and a build waits
for those still running instead of submitting them again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nemoflow.engine.results import StepOutcome
from nemoflow.engine.step import (
    BuildContext,
    explain,
    explain_result,
    fail_run,
    finish_run,
    make_job,
    start_run,
    step_record,
)
from nemoflow.errors import ExecutorError, StepFailed, UserError
from nemoflow.executors import Executor, Handle, Job, JobResult, JobState, executor_from_data, executor_to_data
from nemoflow.pipeline.plan import PlannedStep
from nemoflow.record.ledger import Ledger
from nemoflow.store.targets import LOG, Store


def can_detach(step: PlannedStep) -> bool:
    """Whether the step's executor can hand a whole chain to its cluster (Slurm's ``--dependency``)."""
    return step.executor is not None and hasattr(step.executor, "submit_after")


def split(to_run: list[PlannedStep]) -> tuple[list[PlannedStep], list[PlannedStep], list[PlannedStep]]:
    """``to_run`` (in plan order) as: steps to build here first, steps to submit, and steps left for later.

    A detachable step is submitted when everything it waits for is built first or submitted too;
    a step downstream of a submitted one (and not detachable with it) is left for a later build.
    """
    first: list[PlannedStep] = []
    submit: list[PlannedStep] = []
    later: list[PlannedStep] = []
    placed: dict[str, str] = {}
    for step in to_run:
        sides = {placed.get(up) for up in (*step.upstream, *step.after)} - {None}
        if can_detach(step) and "later" not in sides:
            side = "submit"
        elif sides & {"submit", "later"}:
            side = "later"
        else:
            side = "first"
        placed[step.name] = side
        {"first": first, "submit": submit, "later": later}[side].append(step)
    return first, submit, later


def submit_all(
    ctx: BuildContext, steps: list[PlannedStep], failed: set[str]
) -> tuple[list[StepOutcome], list[StepOutcome]]:
    """Submit ``steps`` (plan order), each after the jobs of its submitted upstream steps.

    Returns the submitted steps and those that could not be (``failed`` names steps already failed).
    """
    job_ids: dict[str, str] = {}
    outputs: dict[str, str] = {}  # step -> its output folder on the cluster
    submitted: list[StepOutcome] = []
    refused: list[StepOutcome] = []
    for step in steps:
        blockers = [up for up in (*step.upstream, *step.after) if up in failed]
        if blockers:
            failed.add(step.name)
            refused.append(
                StepOutcome(
                    step.name, step.key, step.reason.value, error=f"not run: upstream {', '.join(blockers)} failed"
                )
            )
            continue
        after = [job_ids[up] for up in (*step.upstream, *step.after) if up in job_ids]
        try:
            job_id, outputs[step.name] = _submit(
                ctx, step, after, {u: outputs[u] for u in step.upstream if u in outputs}
            )
        except StepFailed as exc:
            failed.add(step.name)
            refused.append(StepOutcome(step.name, step.key, step.reason.value, error=str(exc)))
            continue
        job_ids[step.name] = job_id
        submitted.append(StepOutcome(step.name, step.key, step.reason.value, error=f"submitted as job {job_id}"))
    return submitted, refused


def _submit(ctx: BuildContext, step: PlannedStep, after: list[str], inputs: dict[str, str]) -> tuple[str, str]:
    executor = step.executor
    assert executor is not None
    run_id, workspace = start_run(ctx, step, executor.name, detached=True)
    job = make_job(ctx, step, workspace, run_id)
    try:
        handle = executor.submit_after(job, after=after, inputs=inputs)  # type: ignore[attr-defined]
    except (OSError, ValueError, UserError, ExecutorError) as exc:
        fail_run(
            ctx.store, ctx.ledger(), step.name, step.key, workspace, run_id, JobResult(JobState.FAILED, None, str(exc))
        )
        raise StepFailed(step.name, str(exc)) from exc
    details = {
        **handle.details,
        "executor": executor_to_data(executor),
        "record": step_record(ctx, step, run_id, ctx.started),
    }
    ctx.ledger().mark_submitted(run_id, handle.job_id, details)
    ctx.store.mark_detached(run_id)
    return handle.job_id, handle.details["output_dir"]


def collect(store: Store, ledger: Ledger) -> list[StepOutcome]:
    """Publish (or fail) every submitted run whose job has ended; note the state of the others.

    One query per cluster for all of its jobs. Returns the runs that ended now.
    """
    ended: list[StepOutcome] = []
    for executor, runs in _by_cluster(ledger.submitted_runs()):
        states = executor.states([run["job_id"] for run in runs])  # type: ignore[attr-defined]
        for run in runs:
            state = states.get(run["job_id"])
            if state is None:
                continue
            if not state.state.finished:
                ledger.set_backend_state(run["id"], state.slurm)
                continue
            handle = attach(executor, run, store)
            result = executor.collect(handle, state)  # type: ignore[attr-defined]
            # the same message as a build waiting for the job gives (wait_for): the log's last line
            result = explain_result(store, run["experiment_id"], run["step"], handle.job.log_path, result)
            ended.append(_close(store, ledger, run, handle.job, result))
    return ended


def wait_for(ctx: BuildContext, step: PlannedStep, run: dict[str, Any]) -> None:
    """Wait for the job another build submitted for ``step`` and publish its outputs (not submit it again).

    Raises:
        StepFailed: the job did not succeed.
    """
    executor = executor_from_data(json.loads(run["details"])["executor"])
    handle = attach(executor, run, ctx.store)
    try:
        result = executor.wait(handle)
    except ExecutorError as exc:
        result = JobResult(JobState.FAILED, None, str(exc))
    outcome = _close(ctx.store, ctx.ledger(), run, handle.job, explain(ctx, step, handle.job, result))
    if outcome.error:
        raise StepFailed(step.name, outcome.error, exit_code=outcome.exit_code)


def _by_cluster(runs: list[dict[str, Any]]) -> list[tuple[Executor, list[dict[str, Any]]]]:
    """The runs grouped by the cluster (tunnel) their jobs are on, each group with one of its executors."""
    groups: dict[str, tuple[Executor, list[dict[str, Any]]]] = {}
    for run in runs:
        details = json.loads(run["details"])
        group = groups.setdefault(details.get("tunnel", ""), (executor_from_data(details["executor"]), []))
        group[1].append(run)
    return list(groups.values())


def attach(executor: Executor, run: dict[str, Any], store: Store | None = None) -> Handle:
    """A handle on the job of a ledger ``run`` (its workspace is where its log was to be written)."""
    workspace = Path(run["log_path"]).parent
    stage_dir = store.root / ".stage" if store is not None else None
    job = Job(run["step"], run["key"], [], workspace, workspace / LOG, "", run_id=run["id"], stage_dir=stage_dir)
    return executor.attach(job, run["job_id"], json.loads(run["details"]))  # type: ignore[attr-defined]


def _close(store: Store, ledger: Ledger, run: dict[str, Any], job: Job, result: JobResult) -> StepOutcome:
    record = json.loads(run["details"])["record"]
    try:
        finish_run(store, ledger, job.output_dir, run["id"], record, result)
    except StepFailed as exc:
        return StepOutcome(run["step"], run["key"], run["reason"], error=str(exc), exit_code=exc.exit_code)
    finally:
        store.unmark_detached(run["id"])
    return StepOutcome(run["step"], run["key"], run["reason"])
