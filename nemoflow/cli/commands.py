"""One function per ``nemoflow`` subcommand: each takes the parsed arguments and returns the exit code."""

from __future__ import annotations

# Each command imports the engine it needs inside its function: `nemoflow --help`, completion and a no-op
# build never load luigi, sqlite-utils or the executors they do not use.
import argparse
import contextlib
import gc
import sys
import time
from collections.abc import Iterator
from typing import Any

from nemoflow.errors import UserError


def _store(args: argparse.Namespace) -> Any:
    from nemoflow.engine.build import default_store
    from nemoflow.store.targets import Store

    return Store(args.store) if args.store else default_store()


def _ledger(store: Any) -> Any:
    from nemoflow.engine.build import ledger_path
    from nemoflow.record.ledger import Ledger

    path = ledger_path(store)
    return Ledger(path) if path.exists() else None


def _experiment(path: str, overrides: list[str]) -> Any:
    """The experiment of a pipeline file, with the command line's overrides applied (as ``build`` does)."""
    from nemoflow.pipeline.loading import load_pipeline

    exp = load_pipeline(path)
    if overrides:
        from nemoflow.cli.overrides import apply_to_experiment

        apply_to_experiment(exp, overrides)
    return exp


def _pipelines(words: list[str]) -> list[tuple[str, list[str]]]:
    """``gc``'s words: each pipeline file with the overrides that follow it (a word with ``=``, or ``@file``)."""
    groups: list[tuple[str, list[str]]] = []
    for word in words:
        if "=" in word or word.startswith("@"):
            if not groups:
                raise UserError(f"override {word!r} comes before any pipeline file", hint="put it after its pipeline")
            groups[-1][1].append(word)
        else:
            groups.append((word, []))
    return groups


def cmd_build(args: argparse.Namespace) -> int:
    from nemoflow.cli import render
    from nemoflow.engine.build import run_plan
    from nemoflow.pipeline.plan import make_plan

    started = time.perf_counter()
    exp = _experiment(args.pipeline, args.overrides)
    if args.jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {args.jobs}")
    if args.no_run and not args.scheduler:
        raise UserError("--no-run needs --scheduler URL", hint="without a scheduler nothing else would run the steps")
    if args.scheduler and args.direct:
        raise UserError("--direct cannot be used with --scheduler")
    if args.detach and args.scheduler:
        raise UserError(
            "--detach cannot be used with --scheduler", hint="the cluster, not luigid, orders detached jobs"
        )
    if args.timeout is not None and not args.scheduler:
        raise UserError(
            "--timeout is how long to wait for a scheduler's workers; it needs --scheduler URL",
            hint=f"to limit how long each step may run: --step-timeout {args.timeout:g}",
        )
    plan = make_plan(exp, _store(args), force=args.force, until=args.until, salt=args.salt)
    if not args.json:
        render.note(f"store: {plan.store.root}")  # found from the project root, not the current folder
    if args.dry_run:
        render.plan(plan, as_json=args.json, scripts=_preview_scripts(plan), why=args.why)
        return 0
    if args.why:
        raise UserError("--why goes with --dry-run", hint=f"nemoflow build {args.pipeline} --dry-run --why")
    central = {}
    if args.scheduler:
        from nemoflow.luigi.luigid import check_reachable

        check_reachable(args.scheduler)
        central = {"scheduler_url": args.scheduler, "register_only": args.no_run, "timeout": args.timeout}
    with render.progress_display(enabled=not args.json and not args.tail_logs) as progress, _plan_frozen():
        result = run_plan(
            plan,
            jobs=args.jobs,
            direct=args.direct,
            tail_logs=args.tail_logs,
            progress=progress,
            detach=args.detach,
            step_timeout=args.step_timeout,
            **central,
        )
    render.build_result(result, as_json=args.json, seconds=time.perf_counter() - started)
    return 0 if result.ok else 1


@contextlib.contextmanager
def _plan_frozen() -> Iterator[None]:
    """Keep the garbage collector from tracing the plan, which lives as long as the build, again
    and again while steps run (a few percent of a large in-process build)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _preview_scripts(plan: Any) -> dict[str, str]:
    """The batch scripts of the steps that would run on a backend that makes one (Slurm); {} otherwise."""
    if not any(hasattr(s.executor, "preview") for s in plan.to_run()):
        return {}
    from nemoflow.engine.build import ledger_path
    from nemoflow.engine.step import BuildContext, preview_scripts

    return preview_scripts(BuildContext(plan, plan.store, ledger_path(plan.store), "dry-run", "", time.time()))


def cmd_scheduler(args: argparse.Namespace) -> int:
    from nemoflow.luigi.luigid import LuigidSettings, parse_resource, run_luigid

    resources = dict(parse_resource(text) for text in args.resource)  # the last NAME=N of a name counts
    settings = LuigidSettings(
        worker_disconnect_delay=args.worker_disconnect_delay,
        retry_delay=args.retry_delay,
        resources=tuple(resources.items()),
    )
    return run_luigid(_store(args), args.host, args.port, settings)


def cmd_worker(args: argparse.Namespace) -> int:
    from nemoflow.cli import render
    from nemoflow.engine.build import run_plan
    from nemoflow.luigi.luigid import check_reachable
    from nemoflow.pipeline.plan import make_plan

    started = time.perf_counter()
    if args.jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {args.jobs}")
    exp = _experiment(args.pipeline, args.overrides)
    check_reachable(args.scheduler)
    plan = make_plan(exp, _store(args), salt=args.salt)
    with render.progress_display(enabled=not args.json) as progress:
        result = run_plan(
            plan,
            jobs=args.jobs,
            progress=progress,
            scheduler_url=args.scheduler,
            executor_filter=args.executor,
            timeout=args.timeout,
            step_timeout=args.step_timeout,
        )
    render.build_result(result, as_json=args.json, seconds=time.perf_counter() - started)
    return 0 if result.ok else 1


def cmd_status(args: argparse.Namespace) -> int:
    from nemoflow.cli import render
    from nemoflow.engine.build import collect_detached
    from nemoflow.pipeline.plan import make_plan
    from nemoflow.record.status import plan_status

    exp = _experiment(args.pipeline, args.overrides)
    store = _store(args)
    collect_detached(store)  # jobs a detached build left on their cluster: publish those that ended
    plan = make_plan(exp, store)
    ledger = _ledger(store)
    rows = plan_status(plan, ledger)
    render.status(exp.name, rows, as_json=args.json, code=args.code)
    return 0


def _run_of(args: argparse.Namespace, having: str | None = None) -> Any:
    """The experiment run named by ``args.experiment``: an id, or a name for its latest run (that has the step
    ``having``)."""
    from nemoflow.runs import catalog

    store = _store(args)
    known = {row["id"] for row in catalog.catalog(None, store)}
    if args.experiment in known:
        return catalog.reload(args.experiment, store)
    return catalog.reload(catalog.latest_id(args.experiment, store, having=having), store)


def cmd_experiments_list(args: argparse.Namespace) -> int:
    from nemoflow.cli import render
    from nemoflow.runs import catalog

    render.experiments(catalog.catalog(args.name, _store(args)), as_json=args.json)
    return 0


def cmd_experiments_show(args: argparse.Namespace) -> int:
    from nemoflow.cli import render
    from nemoflow.runs import catalog

    exp = _run_of(args)
    render.experiment(exp.metadata(), catalog.status(exp), as_json=args.json)  # exp.status() also prints
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    exp = _run_of(args, having=args.step)
    if args.follow:
        for line in exp.logs(args.step, follow=True):
            sys.stdout.write(line if line.endswith("\n") else line + "\n")
            sys.stdout.flush()
    else:
        sys.stdout.write(exp.logs(args.step))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    exp = _run_of(args)
    stopped = exp.cancel(args.step)
    print(f"cancelled {', '.join(stopped)}" if stopped else "nothing was running; no further steps will start")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from nemoflow.cli import render
    from nemoflow.record.audit import audit

    store = _store(args)
    ledger = _ledger(store)
    if ledger is not None:
        from nemoflow.engine.recovery import recover_interrupted_builds

        recover_interrupted_builds(ledger, store)
    report = audit(args.subject, store=store, ledger=ledger)
    render.audit(report, as_json=args.json)
    return 0 if report.ok else 1


def cmd_diff(args: argparse.Namespace) -> int:
    from nemoflow.cli import render
    from nemoflow.configs.serialize import load
    from nemoflow.configs.treeops import diff

    changes = diff(load(args.old), load(args.new))
    render.diff(changes, as_json=args.json)
    return 0


def cmd_dag(args: argparse.Namespace) -> int:
    import shutil
    import subprocess

    from nemoflow.pipeline.dag import render as render_dag
    from nemoflow.pipeline.plan import make_plan

    plan = make_plan(_experiment(args.pipeline, args.overrides), _store(args))
    if args.png:
        dot = shutil.which("dot")
        if dot is None:
            raise UserError("--png needs Graphviz's `dot`", hint="install graphviz (apt-get install graphviz)")
        subprocess.run([dot, "-Tpng", "-o", args.png], input=render_dag(plan, "dot"), text=True, check=True)
        print(args.png)
        return 0
    sys.stdout.write(render_dag(plan, args.format))
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    from nemoflow.cli import render
    from nemoflow.pipeline.plan import make_plan
    from nemoflow.record.gc import collect

    store = _store(args)
    plans = [make_plan(_experiment(path, overrides), store) for path, overrides in _pipelines(args.pipelines)]
    found = collect(store, plans, dry_run=True, keep_failed=args.keep_failed)
    nothing = not (found.targets or found.housekeeping)
    if args.dry_run or nothing:
        render.collected(found, dry_run=True, as_json=args.json)
        return 0
    if not args.yes:
        if args.json or not sys.stdin.isatty():
            raise UserError(
                f"gc would remove {len(found.targets)} target(s) and {len(found.housekeeping)} housekeeping "
                "folder(s) and asks first, but this is not a terminal",
                hint="run it again with --yes to remove them, or with --dry-run to list them",
            )
        render.collected(found, dry_run=True, as_json=False)
        if not render.confirm("remove them?"):
            render.note("nothing removed")
            return 1
    render.collected(
        collect(store, plans, dry_run=False, keep_failed=args.keep_failed), dry_run=False, as_json=args.json
    )
    return 0


def cmd_completion(args: argparse.Namespace) -> int:
    from nemoflow.cli.completion import default_shell, install, shellcode

    shell = args.shell or default_shell()
    if args.install:
        rc = install(shell)
        print(f"completion for {shell} added to {rc}; open a new shell to use it")
        return 0
    sys.stdout.write(shellcode(shell))
    return 0
