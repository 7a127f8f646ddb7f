"""The ``nemoflow`` command's arguments: one function per subcommand."""

from __future__ import annotations

# Imports inside functions: building the parser must not load the engine (`nemoflow --help` stays fast).
import argparse
from typing import Any

from nemoflow.cli import audit_commands, commands


def build_parser(*, rich_help: bool = True) -> argparse.ArgumentParser:
    """The argument parser; rich help formatting is loaded only when help will be shown."""
    formatter: type = argparse.HelpFormatter
    if rich_help:
        formatter = _rich_formatter()
    parser = argparse.ArgumentParser(
        prog="nemoflow",
        description="Content-addressed DAG builds for ML experiments: build only what changed, record where everything came from.",
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"nemoflow {_version()}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and luigi's own log")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (
        _add_build,
        _add_scheduler,
        _add_worker,
        _add_status,
        _add_experiments,
        _add_logs,
        _add_cancel,
        _add_audit,
        _add_diff,
        _add_dag,
        _add_gc,
        _add_completion,
    ):
        add(sub, formatter)
    audit_commands.add_parsers(sub, formatter, _store_option)
    return parser


def _rich_formatter() -> type:
    """rich help that also shows each option's default, where the default says something."""
    from rich_argparse import RichHelpFormatter

    class Formatter(RichHelpFormatter):
        def _get_help_string(self, action: argparse.Action) -> str | None:
            text = action.help or ""
            if (
                action.option_strings
                and action.default not in (None, False, "", [], argparse.SUPPRESS)
                and ("default" not in text)
            ):
                text += " (default: %(default)s)"
            return text

    return Formatter


def _add_build(sub: Any, formatter: type) -> None:
    from nemoflow.cli.completion import step_names

    build = sub.add_parser(
        "build",
        help="build a pipeline: run what is not up to date",
        formatter_class=formatter,
        description="Build a pipeline file's experiment; steps whose target exists are skipped.",
    )
    build.add_argument("pipeline", help="pipeline file (defines an Experiment or pipeline())")
    _overrides_argument(build, "before building")
    build.add_argument(
        "-n", "--dry-run", "--dryrun", action="store_true", help="show which steps would run, and why; run nothing"
    )
    build.add_argument(
        "--why",
        action="store_true",
        help="with --dry-run: list, for every step that would run, each part of its key that changed",
    )
    build.add_argument("--json", action="store_true", help="print one JSON object (ran / skipped / failed) last")
    build.add_argument("-j", "--jobs", type=int, default=1, metavar="N", help="run up to N independent steps at once")
    build.add_argument(
        "--force", nargs="+", default=[], metavar="STEP", help="rebuild these steps even if up to date"
    ).completer = step_names
    build.add_argument(
        "--until", nargs="+", default=[], metavar="STEP", help="build only these steps and what they need"
    ).completer = step_names
    build.add_argument("--direct", action="store_true", help="run Python steps inside the build process (no isolation)")
    build.add_argument("--tail-logs", action="store_true", help="stream each step's output while it runs")
    build.add_argument("--salt", default="", help="a version string mixed into every key")
    build.add_argument(
        "--scheduler",
        metavar="URL",
        default=None,
        help="register the steps with this luigi central scheduler (nemoflow scheduler) and run them there",
    )
    build.add_argument(
        "--no-run",
        action="store_true",
        help="with --scheduler: run nothing here, register the steps and wait for workers to build them",
    )
    build.add_argument(
        "--detach",
        action="store_true",
        help="submit the Slurm steps at once (chained with --dependency) and return; "
        "`nemoflow status` or a later build collects them",
    )
    _timeout_option(build)
    _store_option(build)
    build.set_defaults(handler=commands.cmd_build)


def _add_scheduler(sub: Any, formatter: type) -> None:
    scheduler = sub.add_parser(
        "scheduler",
        help="run luigi's central scheduler (luigid) for builds and workers",
        formatter_class=formatter,
        description="Run luigid in the foreground, its state, logs and config under <store>/.luigid/. "
        "It has no authentication: it listens on 127.0.0.1 unless --host says otherwise.",
    )
    scheduler.add_argument("--port", type=int, default=8082, help="port to listen on")
    scheduler.add_argument(
        "--host", default="127.0.0.1", help="address to listen on; anything but loopback is open to the network"
    )
    scheduler.add_argument(
        "--worker-disconnect-delay",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="a worker silent this long is gone; its running step is handed out again",
    )
    scheduler.add_argument(
        "--retry-delay",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="a failed step (or one whose worker is gone) is handed out again after this long",
    )
    scheduler.add_argument(
        "--resource",
        action="append",
        default=[],
        metavar="NAME=N",
        help="a luigi resource and its capacity (repeatable): executor_<name>=N runs at most N steps of that "
        "executor at once, nemoflow_steps=N at most N steps in all, across every build and worker",
    )
    _store_option(scheduler)
    scheduler.set_defaults(handler=commands.cmd_scheduler)


def _add_worker(sub: Any, formatter: type) -> None:
    worker = sub.add_parser(
        "worker",
        help="run one executor's steps of a pipeline, as luigid hands them out",
        formatter_class=formatter,
        description="Register the pipeline's steps with the central scheduler and run those whose executor is "
        "--executor (a step without one is local); exits when none of them is left pending.",
    )
    worker.add_argument("pipeline", help="pipeline file")
    _overrides_argument(worker, "as the build did")
    worker.add_argument("--executor", required=True, metavar="NAME", help="run only steps of this executor")
    worker.add_argument("--scheduler", required=True, metavar="URL", help="the luigi central scheduler")
    worker.add_argument("-j", "--jobs", type=int, default=1, metavar="N", help="run up to N steps at once")
    worker.add_argument("--salt", default="", help="a version string mixed into every key (as the build's)")
    worker.add_argument("--json", action="store_true", help="print one JSON object (ran / skipped / failed) last")
    _timeout_option(worker)
    _store_option(worker)
    worker.set_defaults(handler=commands.cmd_worker)


def _timeout_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with a scheduler: give up waiting after this long (default: wait)",
    )
    parser.add_argument(
        "--step-timeout",
        type=_positive_seconds,
        default=None,
        metavar="SECONDS",
        help="stop a step that runs longer than this (recorded 'timeout'); an executor's own timeout= wins",
    )


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _add_status(sub: Any, formatter: type) -> None:
    status = sub.add_parser(
        "status", help="show each step's state, key, last run and output", formatter_class=formatter
    )
    status.add_argument("pipeline", help="pipeline file")
    _overrides_argument(status, "as the build did")
    status.add_argument("--json", action="store_true", help="print the rows as JSON")
    status.add_argument(
        "--code", action="store_true", help="list the code units (functions, constants, packages) of each step's key"
    )
    _store_option(status)
    status.set_defaults(handler=commands.cmd_status)


def _add_experiments(sub: Any, formatter: type) -> None:
    experiments = sub.add_parser(
        "experiments", help="list recorded experiment runs, or show one", formatter_class=formatter
    )
    actions = experiments.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="runs, newest first", formatter_class=formatter)
    listing.add_argument("name", nargs="?", default=None, help="only runs of this experiment")
    listing.add_argument("--json", action="store_true", help="print the runs as JSON")
    _store_option(listing)
    listing.set_defaults(handler=commands.cmd_experiments_list)
    show = actions.add_parser("show", help="one run: its metadata and every step's state", formatter_class=formatter)
    show.add_argument("experiment", metavar="ID|NAME", help="a run id, or an experiment name (its latest run)")
    show.add_argument("--json", action="store_true", help="print metadata and steps as JSON")
    _store_option(show)
    show.set_defaults(handler=commands.cmd_experiments_show)


def _add_logs(sub: Any, formatter: type) -> None:
    logs = sub.add_parser("logs", help="a step's log in an experiment run", formatter_class=formatter)
    logs.add_argument(
        "experiment", metavar="ID|NAME", help="a run id, or an experiment name (its latest run that has the step)"
    )
    logs.add_argument("step", help="the step's name")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing while the step runs")
    _store_option(logs)
    logs.set_defaults(handler=commands.cmd_logs)


def _add_cancel(sub: Any, formatter: type) -> None:
    cancel = sub.add_parser(
        "cancel",
        help="stop the running steps of an experiment run",
        formatter_class=formatter,
        description="Stop running steps (all, or one) of a run; steps not started yet will not start.",
    )
    cancel.add_argument("experiment", metavar="ID|NAME", help="a run id, or an experiment name (its latest run)")
    cancel.add_argument("step", nargs="?", default=None, help="only this step")
    _store_option(cancel)
    cancel.set_defaults(handler=commands.cmd_cancel)


def _add_audit(sub: Any, formatter: type) -> None:
    audit = sub.add_parser(
        "audit",
        help="provenance chain of a file or key, every hash verified",
        formatter_class=formatter,
        description="Trace an output back to its roots and re-hash every output on the way. "
        "Exits 1 when something no longer matches its manifest.",
    )
    audit.add_argument(
        "subject",
        metavar="PATH|KEY|EXPERIMENT",
        help="a file in the store, a key (prefix of 8+ characters), or an experiment run (id or name)",
    )
    audit.add_argument(
        "--downstream",
        action="store_true",
        help="list every target and run built from it (PATH|KEY, or an INPUT_FILE), transitively",
    )
    audit.add_argument("--json", action="store_true", help="print the chain as JSON")
    _store_option(audit)
    audit.set_defaults(handler=audit_commands.cmd_audit)


def _add_diff(sub: Any, formatter: type) -> None:
    diff = sub.add_parser(
        "diff",
        help="the differences between two config files",
        formatter_class=formatter,
        description="Compare two configs (YAML, TOML, JSON or Python files) value by value.",
    )
    diff.add_argument("old", help="a config file")
    diff.add_argument("new", help="another config file")
    diff.add_argument("--json", action="store_true", help="print the changes as JSON")
    diff.set_defaults(handler=commands.cmd_diff)


def _add_dag(sub: Any, formatter: type) -> None:
    dag = sub.add_parser("dag", help="the pipeline's DAG as text, Mermaid or Graphviz dot", formatter_class=formatter)
    dag.add_argument("pipeline", help="pipeline file")
    _overrides_argument(dag, "first")
    dag.add_argument("--format", choices=("text", "mermaid", "dot"), default="text", help="output format")
    dag.add_argument("--png", metavar="FILE", default=None, help="render the DAG to a PNG (needs Graphviz's dot)")
    _store_option(dag)
    dag.set_defaults(handler=commands.cmd_dag)


def _add_gc(sub: Any, formatter: type) -> None:
    gc = sub.add_parser(
        "gc",
        help="remove targets no current pipeline reaches",
        formatter_class=formatter,
        description="Remove every target of the store that none of the given pipelines names (at its current "
        "key), failed attempts' folders, and leftovers of killed builds. The ledger keeps the history. It lists "
        "what it would remove and asks first (y/N); off a terminal it needs --yes.",
    )
    gc.add_argument(
        "pipelines",
        nargs="+",
        metavar="PIPELINE",
        help="pipeline files whose targets stay, each followed by the overrides it was built with (STEP.key=value)",
    )
    gc.add_argument(
        "-n", "--dry-run", "--dryrun", action="store_true", help="list what would be removed; remove nothing"
    )
    gc.add_argument("-y", "--yes", action="store_true", help="remove without asking (needed off a terminal)")
    gc.add_argument("--keep-failed", action="store_true", help="keep failed attempts' folders (their logs)")
    gc.add_argument("--json", action="store_true", help="print what was removed as JSON")
    _store_option(gc)
    gc.set_defaults(handler=commands.cmd_gc)


def _add_completion(sub: Any, formatter: type) -> None:
    from nemoflow.cli.completion import SHELLS

    completion = sub.add_parser(
        "completion",
        help="shell completion for bash, zsh or fish",
        formatter_class=formatter,
        description='Print the completion script (eval "$(nemoflow completion bash)"), or --install it in your '
        "shell's rc file. Completes subcommands, options, step names and config keys.",
    )
    completion.add_argument(
        "shell", nargs="?", choices=SHELLS, default=None, help="bash, zsh or fish (default: $SHELL)"
    )
    completion.add_argument(
        "--install", action="store_true", help="add it to ~/.bashrc, ~/.zshrc or ~/.config/fish/completions/"
    )
    completion.set_defaults(handler=commands.cmd_completion)


def _overrides_argument(parser: argparse.ArgumentParser, when: str) -> None:
    """The OVERRIDE tokens of a command that plans a pipeline; they may also come after options (see app.main)."""
    from nemoflow.cli.completion import config_keys

    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="OVERRIDE",
        help=f"change step configs {when}: STEP.key=value, *.key=value (every step), +=, -=, *=, /=",
    ).completer = config_keys


def _store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        metavar="DIR",
        default=None,
        help="the target store (default: $NEMOFLOW_STORE, else targets/ in the project root)",
    )


def _version() -> str:
    from nemoflow import __version__

    return __version__
