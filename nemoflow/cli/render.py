"""Everything the CLI shows: rich tables and messages, or JSON. The only module that imports rich."""

from __future__ import annotations

# rich's progress bar is imported only when a live bar is drawn.
import contextlib
import datetime
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nemoflow.errors import BuildFailed, LedgerError, NemoflowError, UserError
from nemoflow.pipeline.why import part_label

if TYPE_CHECKING:
    from nemoflow.engine.results import BuildResult
    from nemoflow.pipeline.plan import Plan
    from nemoflow.record.audit import AuditReport
    from nemoflow.record.progress import Progress
    from nemoflow.record.status import StepStatus


def _console(*, stderr: bool) -> Console:
    """A terminal's width on a terminal (or $COLUMNS); off one, no wrapping at all.

    rich wraps at 80 columns off a terminal, splitting hashes and paths that people copy and grep.
    """
    stream = sys.stderr if stderr else sys.stdout
    if os.environ.get("COLUMNS") or (hasattr(stream, "isatty") and stream.isatty()):
        return Console(stderr=stderr, highlight=False)
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=100_000)


_out = _console(stderr=False)
_err = _console(stderr=True)
_REASON_STYLE = {
    "up to date": "dim",
    "forced": "magenta",
    "code changed": "yellow",
    "new config": "cyan",
    "package changed": "yellow",
    "input changed": "cyan",
    "salt changed": "magenta",
    "upstream changed": "blue",
    "output missing": "green",
    "new step": "green",
}
_STATE_STYLE = {
    "done": "green",
    "succeeded": "green",
    "pending": "yellow",
    "failed": "bold red",
    "running": "cyan",
    "submitted": "cyan",
    "interrupted": "red",
    "cancelled": "magenta",
    "not run": "dim",
}


def _json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=None, sort_keys=False) + "\n")
    sys.stdout.flush()


def _styled(text: str, style: str) -> str:
    """``text`` (escaped) in a rich style; plain when there is no style."""
    return f"[{style}]{escape(text)}[/]" if style else escape(text)


def _short(key: str) -> str:
    return key[:12]


def plan(p: Plan, *, as_json: bool, scripts: dict[str, str] | None = None, why: bool = False) -> None:
    """``build --dry-run``: every step with its key and reason (and the batch scripts it would submit).

    With ``why``: each part of the key of every step that would run that differs from the step's
    latest target (in ``--json``, every step that runs carries its ``why`` list anyway).
    """
    steps = [
        {"name": s.name, "key": s.key, "reason": s.reason.value, "runs": s.runs, "why": [c.to_data() for c in s.why]}
        for s in p
    ]
    would = [s["name"] for s in steps if s["runs"]]
    if as_json:
        _json(
            {
                "dry_run": True,
                "experiment": p.experiment.name,
                "steps": steps,
                "would_run": would,
                "scripts": scripts or {},
            }
        )
        return
    for name, text in (scripts or {}).items():
        _out.print(f"[bold]# {escape(name)}: the script it would submit[/]")
        _out.print(escape(text), highlight=False, soft_wrap=True)
    table = Table(title=f"{p.experiment.name}: {len(would)} of {len(steps)} steps would run", title_justify="left")
    table.add_column("step")
    table.add_column("key", style="dim")
    table.add_column("reason")
    for s in steps:
        table.add_row(s["name"], _short(s["key"]), _styled(s["reason"], _REASON_STYLE.get(s["reason"], "")))
    _out.print(table)
    if why:
        for s in steps:
            if s["runs"]:
                _out.print(f"[bold]{escape(s['name'])}[/]")
                for change in s["why"]:
                    _out.print(f"  {escape(change['text'])}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def progress_display(*, enabled: bool) -> Iterator[Callable[[Progress], None] | None]:
    """A reporter for ``run_plan(progress=...)``: a live bar on a terminal, plain lines otherwise."""
    if not enabled:
        yield None
        return
    if not _out.is_terminal:
        yield _PlainProgress().report
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    with Bar(
        TextColumn("[bold]building"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=_out,
        transient=True,
    ) as bar:
        task = bar.add_task("", total=None)

        def update(p: Progress) -> None:
            bar.update(
                task,
                total=p.total,
                completed=p.done + p.failed,
                description=f"{p.running} running, {p.failed} failed, {p.left} left",
            )

        yield update


class _PlainProgress:
    """Progress as plain lines (stdout is not a terminal): one every 2 s while steps run (a log or CI shows the
    build is alive), and the last."""

    def __init__(self) -> None:
        self.counts: tuple[int, int, int] | None = None
        self.printed_at = -1e9

    def report(self, p: Progress) -> None:
        counts = (p.done, p.running, p.failed)
        finished = p.running == 0 and p.left == 0
        if finished and counts == self.counts:
            return
        if not finished and p.elapsed - self.printed_at < 2:
            return
        print(
            f"[{p.elapsed:7.1f}s] {p.done}/{p.total} done, {p.running} running, {p.failed} failed, {p.left} left",
            flush=True,
        )
        self.counts, self.printed_at = counts, p.elapsed


def build_result(result: BuildResult, *, as_json: bool, seconds: float) -> None:
    """What a build did: ran, skipped (up to date), failed, and why."""
    if as_json:
        _json(result.as_dict())
        return
    if not result.ran and not result.failed and not result.submitted:
        _out.print(f"[green]up to date[/]: {len(result.skipped)} step(s), nothing to run ({seconds:.2f}s)")
        return
    failed = [(o, "[magenta]cancelled[/]" if o.error == "cancelled" else "[bold red]failed[/]") for o in result.failed]
    rows = [(o, "[green]built[/]") for o in result.ran] + failed
    rows += [(o, "[cyan]submitted[/]") for o in result.submitted] + [(o, "[yellow]waiting[/]") for o in result.deferred]
    if len(rows) > MAX_ROWS:  # a big build gets a summary, and its failures below
        rows = failed[:MAX_ROWS]
    if rows:
        _out.print(_outcome_table(rows))
    for o in result.failed:
        _err.print(f"[bold red]✗ {escape(o.name)}[/]: {escape(str(o.error))}", soft_wrap=True)
        if o.error != "cancelled":
            _err.print(f"  its log: nemoflow logs {result.experiment_id} {escape(o.name)}", soft_wrap=True)
    for o in result.submitted:
        _out.print(f"[cyan]→ {escape(o.name)}[/]: {escape(str(o.error))}")
    cancelled = bool(result.failed) and all(o.error == "cancelled" for o in result.failed)
    verdict = "[magenta]cancelled[/]" if cancelled else "[bold red]failed[/]" if result.failed else "[green]done[/]"
    detached = f", {len(result.submitted)} submitted, {len(result.deferred)} waiting" if result.submitted else ""
    _out.print(
        f"{verdict}: {len(result.ran)} built, {len(result.skipped)} up to date, "
        f"{len(result.failed)} failed{detached} in {seconds:.2f}s (experiment {result.experiment_id})"
    )
    if result.submitted:
        _out.print("the submitted jobs run on their own: `nemoflow status` shows them, `nemoflow build` collects them")


MAX_ROWS = 60


def _outcome_table(rows: list[tuple[Any, str]]) -> Table:
    table = Table(show_header=True, title_justify="left")
    table.add_column("step")
    table.add_column("key", style="dim")
    table.add_column("outcome")
    table.add_column("reason")
    table.add_column("time", justify="right")
    for o, outcome in rows:
        table.add_row(o.name, _short(o.key), outcome, o.reason, _seconds(o.seconds))
    return table


def _seconds(value: float | None) -> str:
    return f"{value:.2f}s" if value is not None else ""


def status(name: str, rows: list[StepStatus], *, as_json: bool, code: bool = False) -> None:
    """``nemoflow status``: a row per step (with ``code``: then each step's code units)."""
    if as_json:
        _json([r.as_dict() for r in rows])
        return
    done = sum(r.state == "done" for r in rows)
    title = f"{name}: {done} of {len(rows)} steps up to date"
    if len(rows) > MAX_ROWS:  # a big pipeline: what is not done, and a count of the rest
        rows = [r for r in rows if r.state != "done"][:MAX_ROWS]
        title += f" (showing {len(rows)} not done; --json lists all)"
    table = Table(title=title, title_justify="left")
    for column in ("step", "key", "state", "last run", "time"):
        table.add_column(column, no_wrap=True)
    table.add_column("output", overflow="fold")
    for r in rows:
        run = r.last_run or {}
        when = datetime.datetime.fromtimestamp(run["started"]).strftime("%m-%d %H:%M:%S") if run.get("started") else ""
        state = (
            ("done (nondeterministic)" if r.nondeterministic else r.state)
            if r.state == "done"
            else f"{r.state} ({r.reason})"
            if r.state in ("pending", "submitted")
            else r.state
        )
        table.add_row(
            r.name,
            _short(r.key),
            _styled(state, _STATE_STYLE.get(r.state, "")),
            when,
            _seconds(r.seconds),
            _relative(r.output),
        )
    _out.print(table)
    if code:
        for r in rows:
            _out.print(f"[bold]{escape(r.name)}[/] [dim]{_short(r.key)}[/]")
            _code_units(r.code_parts)


def _code_units(parts: dict[str, str], label: str = "") -> None:
    for part, value in parts.items():
        _out.print(f"    {label}{escape(part_label(part, value))}", highlight=False, soft_wrap=True)


def _relative(path: str | None) -> str:
    if not path:
        return ""
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else path


def audit(report: AuditReport, *, as_json: bool) -> None:
    """``nemoflow audit``: the provenance chain, each link verified."""
    if as_json:
        _json({"subject": report.subject, "ok": report.ok, "chain": [_link_data(link) for link in report.chain]})
        return
    for depth, link in enumerate(report.chain):
        mark = "[green]✓[/]" if link.ok else "[bold red]✗[/]"
        _out.print(f"{mark} [bold]{link.step}[/] [dim]{link.key}[/]" + ("  (audited)" if depth == 0 else ""))
        if link.nondeterministic:
            _out.print("    [bold yellow]nondeterministic[/]: its last `nemoflow reproduce` rebuilt different outputs")
        if link.missing:
            _out.print("    [red]target missing from the store[/]")
            continue
        m = link.manifest or {}
        _out.print(f"    kind     {m.get('kind')}")
        _out.print(f"    config   {json.dumps(m.get('config'), sort_keys=True)[:200]}")
        _out.print(f"    code     [dim]{str(m.get('code'))[:16]}[/]")
        _code_units(m.get("code_parts") or {}, "  ")
        for up, key in sorted(m.get("upstream", {}).items()):
            _out.print(f"    upstream {up} [dim]{key[:12]}[/]")
        for path, digest in sorted(m.get("inputs", {}).items()):
            _out.print(f"    input    {path} [dim]sha256 {digest[:12]}[/]")
        if link.run:
            r = link.run
            when = datetime.datetime.fromtimestamp(r["started"]).isoformat(timespec="seconds")
            _out.print(f"    run      {r['id']} on {r.get('host')} via {r.get('executor')} at {when} ({r['status']})")
        if link.environment:
            e = link.environment
            _out.print(f"    env      python {e['python']}, {e['platform']}, {len(e['packages'])} packages")
        _out.print(f"    outputs  {len(m.get('files', []))} file(s) verified" if not link.mismatches else "")
        for mismatch in link.mismatches:
            what = (
                "missing"
                if mismatch.actual is None
                else f"sha256 {mismatch.actual[:12]}, manifest {mismatch.expected[:12]}"
            )
            _out.print(f"    [bold red]TAMPERED[/] {mismatch.path}: {what}")
    verdict = "[green]intact[/]" if report.ok else "[bold red]NOT intact[/]"
    _out.print(f"{verdict}: {len(report.chain)} target(s) in the chain of {report.subject}")


def _link_data(link: Any) -> dict[str, Any]:
    return {
        "step": link.step,
        "key": link.key,
        "ok": link.ok,
        "missing": link.missing,
        "manifest": link.manifest,
        "run": link.run,
        "environment": {k: v for k, v in (link.environment or {}).items() if k != "packages"},
        "mismatches": [m.__dict__ for m in link.mismatches],
        "nondeterministic": link.nondeterministic is not None,
    }


def experiments(rows: list[dict[str, Any]], *, as_json: bool) -> None:
    """``nemoflow experiments list``."""
    if as_json:
        _json(rows)
        return
    table = Table(title=f"{len(rows)} experiment run(s)", title_justify="left")
    for column in ("id", "created", "status", "steps"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        when = (
            datetime.datetime.fromtimestamp(row["created"]).strftime("%Y-%m-%d %H:%M:%S") if row.get("created") else ""
        )
        state = row.get("status") or ""
        table.add_row(row["id"], when, _styled(state, _STATE_STYLE.get(state, "")), str(row.get("steps", "")))
    _out.print(table)


def experiment(meta: dict[str, Any], rows: list[StepStatus], *, as_json: bool) -> None:
    """``nemoflow experiments show``: a run's metadata, then its steps."""
    if as_json:
        _json({"metadata": meta, "steps": [r.as_dict() for r in rows]})
        return
    for field in ("id", "name", "description", "tags", "status", "pipeline_file", "git_commit", "store"):
        if meta.get(field) not in (None, "", []):
            _out.print(f"[bold]{field:13s}[/] {escape(str(meta[field]))}")
    status(meta.get("name", ""), rows, as_json=False)


def collected(found: Any, *, dry_run: bool, as_json: bool) -> None:
    """``nemoflow gc``: what was (or would be) removed."""
    paths = [str(p) for p in [*found.targets, *found.housekeeping]]
    if as_json:
        _json({"dry_run": dry_run, "removed": paths, "bytes": found.bytes})
        return
    verb = "would remove" if dry_run else "removed"
    for path in paths:
        _out.print(f"  {verb} {_relative(path)}")
    _out.print(
        f"{verb} {len(found.targets)} target(s) and {len(found.housekeeping)} housekeeping folder(s), "
        f"{found.bytes / 1e6:.1f} MB"
    )


def confirm(question: str) -> bool:
    """Ask ``question [y/N]`` on the terminal; only ``y`` or ``yes`` says yes (end of input says no)."""
    try:
        answer = _err.input(escape(f"{question} [y/N] "))
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def diff(changes: list[Any], *, as_json: bool) -> None:
    """``nemoflow diff``: one row per changed path."""
    if as_json:
        _json([{"path": c.path, "kind": c.kind, "old": c.old, "new": c.new} for c in changes])
        return
    if not changes:
        _out.print("[green]no differences[/]")
        return
    table = Table(title=f"{len(changes)} difference(s)", title_justify="left")
    for column in ("path", "change", "old", "new"):
        table.add_column(column, overflow="fold")
    style = {"added": "green", "removed": "red", "changed": "yellow"}
    for c in changes:
        old = "" if c.kind == "added" else json.dumps(c.old)
        new = "" if c.kind == "removed" else json.dumps(c.new)
        table.add_row(c.path, f"[{style[c.kind]}]{c.kind}[/]", old, new)
    _out.print(table)


def error(exc: NemoflowError) -> None:
    """A user-facing error: one message, no traceback."""
    if isinstance(exc, BuildFailed):
        _err.print(f"[bold red]build failed[/]: {escape(exc.summary)}")  # the summary above named each cause
        return
    label = "error" if isinstance(exc, UserError | LedgerError) else type(exc).__name__
    _err.print(f"[bold red]{label}[/]: {escape(str(exc))}", markup=True, soft_wrap=True)  # [a,b] is not markup


def error_json(exc: NemoflowError, exit_code: int) -> None:
    """``--json`` when the command failed: the error as one JSON object (stdout), instead of the result."""
    data: dict[str, Any] = {"error": str(exc), "kind": type(exc).__name__, "exit_code": exit_code}
    if isinstance(exc, BuildFailed):
        data["failed"] = [{"name": o.name, "error": o.error} for o in exc.result.failed]
    _json(data)


# ---- script entrypoints (nemoflow.cli.entrypoints) ---------------------------------------------


def entrypoint_help(
    name: str,
    doc: str,
    rows: list[tuple[str, str, str]],
    options: list[tuple[str, str]],
    overrides: str,
    factories: list[tuple[str, str]] = (),  # type: ignore[assignment]
) -> None:
    """``python train.py --help``: the function's parameters with types and defaults, the factories
    registered for them, and the options."""
    _out.print(f"[bold]usage[/]: {escape(name)} [OVERRIDES...] [OPTIONS]")
    if doc.strip():
        _out.print(escape(doc.strip()), highlight=False)
    table = Table(title="parameters", title_justify="left")
    for column in ("name", "type", "default"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    _out.print(table)
    if factories:
        factory_table = Table(title="factories", title_justify="left", show_header=False)
        factory_table.add_column("for", no_wrap=True)
        factory_table.add_column("names")
        for where, names in factories:
            factory_table.add_row(escape(where), escape(names))
        _out.print(factory_table)
    options_table = Table(title="options", title_justify="left", show_header=False)
    options_table.add_column("option", no_wrap=True)
    options_table.add_column("meaning")
    for option, meaning in options:
        options_table.add_row(escape(option), escape(meaning))
    _out.print(options_table)
    _out.print(f"[bold]overrides[/]: {escape(overrides)}")


def resolved_config(text: str, defaults: list[tuple[str, str]]) -> None:
    """The config a script entrypoint would run (YAML), and the parameters left at their defaults."""
    _out.print("[bold]config[/]", highlight=False)
    _out.print(text.rstrip(), markup=False, highlight=False)
    if defaults:
        _out.print("[bold]defaults[/] (not set)")
        for path, value in defaults:
            _out.print(f"  {path} = {value}", markup=False, highlight=False)


def result_value(value: Any) -> None:
    """A step's return value, as the last line on stdout (JSON when it can be)."""
    try:
        text = value if isinstance(value, str) else json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def note(message: str) -> None:
    """A one-line remark on stderr."""
    _err.print(message, markup=False, highlight=False, soft_wrap=True)
