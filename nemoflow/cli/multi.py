"""A multi-command CLI of namespaced entrypoints (NeMo Run's ``create_cli``): ``my_llm train_model ARGS``.

    # my_llm/cli.py
    @run.cli.entrypoint(namespace="my_llm")
    def train_model(model: Model, epochs: int = 10): ...

    app = run.cli.create_cli()
    app(["my_llm", "train_model", "epochs=3", "-y"])   # or app.main() on sys.argv

Packages may also list modules to import under the ``nemoflow.cli`` (or NeMo Run's ``nemo_run.cli``)
entry-point group; they are imported when the app is made, so their entrypoints register.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from nemoflow.cli.decorators import Entrypoint, list_entrypoints
from nemoflow.errors import UserError, did_you_mean

ENTRY_POINT_GROUPS = ("nemoflow.cli", "nemo_run.cli")


class CliApp:
    """Runs the entrypoint a command line names by its namespace path."""

    def __call__(self, argv: Sequence[str] | None = None) -> int:
        """Run ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
        from nemoflow.cli.guard import reporting_errors

        words = list(sys.argv[1:] if argv is None else argv)
        return reporting_errors(lambda: self._dispatch(words), debug="--debug" in words, interrupted="interrupted")

    def main(self, argv: Sequence[str] | None = None) -> NoReturn:
        """Run ``argv`` and exit with its code."""
        sys.exit(self(argv))

    def _dispatch(self, words: list[str]) -> int:
        from nemoflow.cli.entrypoints import run_entrypoint

        level: Any = list_entrypoints()
        path: list[str] = []
        while isinstance(level, dict):
            if not words or words[0] in ("-h", "--help"):
                _show_commands(path, level)
                return 0
            word = words.pop(0)
            if word not in level:
                where = " ".join([*path, word])
                raise UserError(
                    f"no command {where!r}",
                    hint=did_you_mean(word, level) or f"commands: {', '.join(sorted(level)) or 'none registered'}",
                )
            path.append(word)
            level = level[word]
        assert isinstance(level, Entrypoint)
        return run_entrypoint(level.fn, words)


def create_cli(add_verbose_callback: bool = False, nested_entrypoints_creation: bool = True) -> CliApp:
    """The app that runs every namespaced entrypoint (arguments kept for NeMo Run parity)."""
    _load_entry_points()
    return CliApp()


def _load_entry_points() -> None:
    from importlib import metadata

    for group in ENTRY_POINT_GROUPS:
        for entry in metadata.entry_points().select(group=group):
            try:
                entry.load()
            except Exception as exc:  # one broken plugin package must not hide the others' commands
                print(f"Couldn't load entrypoint {entry.name}: {exc}", file=sys.stderr)


def _show_commands(path: list[str], level: dict[str, Any]) -> None:
    prefix = " ".join(path)
    lines = [f"usage: {prefix + ' ' if prefix else ''}COMMAND [ARGS...]", "commands:"]
    for name, value in sorted(level.items()):
        if isinstance(value, Entrypoint):
            doc = (value.help or value.fn.__doc__ or "").strip().split("\n")[0]
            lines.append(f"  {name:<24} [Entrypoint] {doc}")
        else:
            lines.append(f"  {name:<24} [Module] {len(value)} command(s)")
    print("\n".join(lines))
