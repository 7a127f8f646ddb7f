"""The auditor's subcommands: ``reproduce``, ``audit`` (upstream, ``--downstream``, an experiment run), ``export-prov``."""

from __future__ import annotations

# Imports inside functions, as in nemoflow.cli.commands: building the parser loads nothing.
import argparse
from pathlib import Path
from typing import Any

from nemoflow.errors import UserError

PROV_FORMATS = ("prov-json", "prov-n", "ro-crate")


def add_parsers(sub: Any, formatter: type, store_option: Any) -> None:
    """Add ``reproduce`` and ``export-prov`` (``audit`` itself is in nemoflow.cli.parser, handled here)."""
    reproduce = sub.add_parser(
        "reproduce",
        help="rebuild a target (or an experiment run) from what was recorded and compare every output",
        formatter_class=formatter,
        description="Rebuild in a scratch store from the recorded configs, the kept code and the input files, then "
        "compare every output byte for byte. A step whose rebuild differs is marked nondeterministic in the ledger. "
        "Exits 0 only when everything matches. metrics.times.jsonl (when log_metrics was called) is not an output "
        "and is not compared.",
    )
    reproduce.add_argument("subject", metavar="PATH|KEY|EXPERIMENT", help="a file in the store, a key, or a run")
    reproduce.add_argument("--executor", metavar="NAME", default=None, help="run every step on this executor")
    reproduce.add_argument("--keep", action="store_true", help="keep the scratch store (its path is printed)")
    reproduce.add_argument("--json", action="store_true", help="print the comparison as JSON")
    store_option(reproduce)
    reproduce.set_defaults(handler=cmd_reproduce)
    export = sub.add_parser(
        "export-prov",
        help="the provenance of an experiment run or a target as W3C PROV or an RO-Crate",
        formatter_class=formatter,
    )
    export.add_argument("subject", metavar="EXPERIMENT|PATH", help="an experiment run (id or name), or a target")
    export.add_argument("--format", choices=PROV_FORMATS, default="prov-json")
    export.add_argument("-o", "--output", metavar="PATH", default=None, help="write here (ro-crate: a folder)")
    store_option(export)
    export.set_defaults(handler=cmd_export_prov)


def _store_and_ledger(args: argparse.Namespace) -> tuple[Any, Any]:
    from nemoflow.cli.commands import _ledger, _store

    store = _store(args)
    return store, _ledger(store)


def _experiment_id(subject: str, ledger: Any) -> str | None:
    """The run ``subject`` names (an id, or a name for its latest run); None when it names none."""
    if ledger is None or Path(subject).exists():
        return None
    if ledger.experiment(subject) is not None:
        return subject
    runs = ledger.experiments(subject)
    return runs[0]["id"] if runs else None


def cmd_reproduce(args: argparse.Namespace) -> int:
    from nemoflow.cli import audit_render
    from nemoflow.runs.reproduce import reproduce

    store, _ = _store_and_ledger(args)
    report = reproduce(args.subject, store, executor=args.executor, keep=args.keep)
    audit_render.reproduction(report, as_json=args.json)
    return 0 if report.ok else 1


def cmd_audit(args: argparse.Namespace) -> int:
    from nemoflow.cli import audit_render
    from nemoflow.cli.commands import cmd_audit as audit_upstream

    store, ledger = _store_and_ledger(args)
    if args.downstream:
        from nemoflow.record.lineage import downstream, ensure_known

        if ledger is None:
            raise UserError(f"no ledger in {store.root}: nothing was built there", hint="pass --store DIR")
        report = downstream(args.subject, store=store, ledger=ledger)
        ensure_known(report)
        audit_render.downstream(report, as_json=args.json)
        return 0
    experiment_id = _experiment_id(args.subject, ledger)
    if experiment_id is None:
        return audit_upstream(args)
    from nemoflow.record.audit import audit_experiment

    checked = audit_experiment(experiment_id, store=store, ledger=ledger)
    audit_render.experiment_audit(checked, as_json=args.json)
    return 0 if checked.ok else 1


def cmd_export_prov(args: argparse.Namespace) -> int:
    from nemoflow.record.prov_export import export

    store, ledger = _store_and_ledger(args)
    if ledger is None:
        raise UserError(f"no ledger in {store.root}: nothing was built there", hint="pass --store DIR")
    written = export(args.subject, store=store, ledger=ledger, fmt=args.format, output=args.output)
    if args.output:
        print(written)
    else:
        print(written, end="" if written.endswith("\n") else "\n")
    return 0
