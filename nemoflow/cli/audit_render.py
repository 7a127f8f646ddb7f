"""What ``reproduce``, ``audit --downstream`` and ``audit EXPERIMENT`` show (through render's console, or JSON)."""

from __future__ import annotations

import dataclasses
import datetime
from typing import TYPE_CHECKING

from nemoflow.cli.render import _json, _out, escape

if TYPE_CHECKING:
    from nemoflow.record.audit import ExperimentAudit
    from nemoflow.record.lineage import Downstream
    from nemoflow.runs.reproduce import ReproduceReport


def _when(seconds: float | None) -> str:
    return datetime.datetime.fromtimestamp(seconds).isoformat(timespec="seconds") if seconds else "?"


def reproduction(report: ReproduceReport, *, as_json: bool) -> None:
    """Each rebuilt target with a verdict per file (sizes, hashes, a short diff for text)."""
    if as_json:
        _json(report.as_dict())
        return
    _out.print(f"reproduce {escape(report.subject)} (experiment run {report.experiment_id})")
    for target in report.targets:
        style = {"identical": "green", "differs": "bold red"}.get(target.outcome, "bold red")
        _out.print(f"[{style}]{target.outcome}[/] [bold]{escape(target.step)}[/] [dim]{target.key[:12]}[/]")
        if target.problem:
            _out.print(f"    {escape(target.problem)}")
        if target.rebuilt_key and target.rebuilt_key != target.key:
            _out.print(
                f"    [yellow]the rebuild has another key[/] {target.rebuilt_key[:12]}: an input or code changed"
            )
        for f in target.files:
            mark = "[green]identical[/]" if f.outcome == "identical" else "[bold red]differs[/]"
            sizes = (
                f"{f.recorded_size} bytes"
                if f.outcome == "identical"
                else f"{f.recorded_size} -> {f.rebuilt_size} bytes"
            )
            hashes = (f.recorded_sha256 or "-")[:12] + (
                "" if f.outcome == "identical" else f" -> {(f.rebuilt_sha256 or '-')[:12]}"
            )
            _out.print(f"    {mark} {escape(f.path)}  {sizes}  sha256 {hashes}")
            for line in f.diff.splitlines():
                _out.print(f"      {escape(line)}", style="dim")
    if report.problem:
        _out.print(f"[bold red]{escape(report.problem)}[/]")
    if report.scratch:
        _out.print(f"scratch store kept at {report.scratch}")
    files = sum(len(t.files) for t in report.targets)
    verdict = "[green]reproduced[/]" if report.ok else "[bold red]NOT reproduced[/]"
    _out.print(f"{verdict}: {len(report.targets)} target(s), {files} file(s) compared")


def downstream(report: Downstream, *, as_json: bool) -> None:
    """Every target built from the subject (depth 0: the subject, or the steps that read the input file)."""
    if as_json:
        _json(report.as_dict())
        return
    what = f"input file {report.input_file}" if report.input_file else report.subject
    _out.print(f"built from {escape(what)}:")
    for t in report.targets:
        used = f"  read sha256 {t['input_sha256'][:12]}" if t.get("input_sha256") else ""
        gone = "" if t["present"] else "  [dim](not in the store)[/]"
        _out.print(f"  {'  ' * t['depth']}{escape(t['step'])} [dim]{t['key'][:12]}[/]{used}{gone}")
    _out.print(f"{len(report.targets)} target(s); experiment runs:")
    for e in report.experiments:
        _out.print(f"  {escape(e['id'])}  {_when(e['created'])}  {e['status']}")


def experiment_audit(checked: ExperimentAudit, *, as_json: bool) -> None:
    """Each target of the run (intact or not, nondeterministic), its environments and its kept code."""
    exp = checked.experiment
    if as_json:
        _json(
            {
                "experiment": exp["id"],
                "ok": checked.ok,
                "targets": [
                    {
                        "step": link.step,
                        "key": link.key,
                        "ok": link.ok,
                        "missing": link.missing,
                        "mismatches": [dataclasses.asdict(m) for m in link.mismatches],
                        "nondeterministic": link.nondeterministic is not None,
                    }
                    for link in checked.links
                ],
                "environments": [{k: v for k, v in e.items() if k != "packages"} for e in checked.environments],
                "code": [dataclasses.asdict(c) for c in checked.code],
            }
        )
        return
    _out.print(f"experiment run {escape(exp['id'])} ({escape(exp['name'])}, {_when(exp['created'])}, {exp['status']})")
    for link in checked.links:
        mark = "[green]✓[/]" if link.ok else "[bold red]✗[/]"
        note = "  [red]missing from the store[/]" if link.missing else ""
        note += "  [bold yellow]nondeterministic[/]" if link.nondeterministic else ""
        _out.print(f"  {mark} {escape(link.step)} [dim]{link.key[:12]}[/]{note}")
        for m in link.mismatches:
            _out.print(f"      [bold red]TAMPERED[/] {escape(m.path)}")
    for e in checked.environments:
        _out.print(f"  env   python {e['python']}, {e['platform']}, host {e['host']}, {len(e['packages'])} packages")
    for c in checked.code:
        kept = "[green]kept[/]" if c.kept else "[bold red]kept copy gone or changed[/]"
        tree = {
            True: "same in the working tree",
            False: "the working tree moved on",
            None: "gone from the working tree",
        }
        _out.print(f"  code  {escape(c.label)} [dim]{c.sha256[:12]}[/] {kept}, {tree[c.in_tree]}")
    verdict = "[green]intact[/]" if checked.ok else "[bold red]NOT intact[/]"
    _out.print(f"{verdict}: {len(checked.links)} target(s), {len(checked.code)} code file(s)")
