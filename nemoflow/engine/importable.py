"""Refuse, before anything runs, steps whose functions a step's own process cannot import."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from nemoflow.configs.core import Script
from nemoflow.configs.serialize import TARGET
from nemoflow.errors import UserError
from nemoflow.pipeline.plan import PlannedStep


def refuse_fileless_functions(steps: Iterable[PlannedStep], *, direct: bool) -> None:
    """Raise when a step that runs in its own process names a function of ``__main__``.

    Functions of ``__main__`` without a file (``python -c``, a notebook cell, a REPL) exist only in this
    process; a script's ``__main__`` gets its file's name (``configs.serialize``), so it is not refused.

    Raises:
        UserError: the first such step, with what to do instead.
    """
    for step in steps:
        if direct and not isinstance(step.task, Script):
            continue  # runs in this process, where __main__ is
        for target in _targets(step.config):
            if target.startswith("__main__:"):
                raise UserError(
                    f"step {step.name!r} calls {target.partition(':')[2]!r}, defined in __main__ without a file "
                    "(python -c, a notebook cell), which the step's own process cannot import",
                    hint="move it into a .py file and import it from there, or run in this process: "
                    "exp.run(direct=True)",
                )


def _targets(data: Any) -> Iterator[str]:
    if isinstance(data, dict):
        if isinstance(data.get(TARGET), str):
            yield data[TARGET]
        for value in data.values():
            yield from _targets(value)
    elif isinstance(data, list):
        for value in data:
            yield from _targets(value)
