"""A plan's DAG as text, Mermaid or Graphviz dot."""

from __future__ import annotations

import re

from nemoflow.pipeline.plan import Plan

FORMATS = ("text", "mermaid", "dot")


def edges(plan: Plan) -> list[tuple[str, str]]:
    """(upstream, downstream) for every dependency, in plan order."""
    return [(up, step.name) for step in plan for up in step.upstream]


def render(plan: Plan, fmt: str) -> str:
    """The DAG of ``plan`` in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "text":
        return _text(plan)
    if fmt == "mermaid":
        return _mermaid(plan)
    if fmt == "dot":
        return _dot(plan)
    raise ValueError(f"unknown DAG format {fmt!r}")


def _text(plan: Plan) -> str:
    lines = []
    for step in plan:
        needs = f" <- {', '.join(step.upstream)}" if step.upstream else ""
        lines.append(f"{step.name} [{step.key[:12]}, {step.reason.value}]{needs}")
    return "\n".join(lines) + "\n"


def _mermaid_id(name: str) -> str:
    return "s_" + re.sub(r"[^A-Za-z0-9_]", "_", name)


def _mermaid(plan: Plan) -> str:
    lines = ["graph TD"]
    for step in plan:
        lines.append(f'    {_mermaid_id(step.name)}["{step.name}"]')
    lines.extend(f"    {_mermaid_id(up)} --> {_mermaid_id(down)}" for up, down in edges(plan))
    running = [_mermaid_id(s.name) for s in plan if s.runs]
    if running:
        lines.append("    classDef pending fill:#fff3cd,stroke:#d39e00")
        lines.append(f"    class {','.join(running)} pending")
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    """A double-quoted dot ID."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot(plan: Plan) -> str:
    lines = [f"digraph {_quote(plan.experiment.name)} {{", "    rankdir=LR;", "    node [shape=box, style=rounded];"]
    for step in plan:
        color = ', style="rounded,filled", fillcolor="#fff3cd"' if step.runs else ""
        label = _quote(step.name)[:-1] + "\\n" + step.key[:12] + '"'  # dot's own newline escape
        lines.append(f"    {_quote(step.name)} [label={label}{color}];")
    lines.extend(f"    {_quote(up)} -> {_quote(down)};" for up, down in edges(plan))
    lines.append("}")
    return "\n".join(lines) + "\n"
