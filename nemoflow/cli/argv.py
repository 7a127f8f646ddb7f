"""Words of the command line argparse cannot place on its own: ``--debug`` anywhere, a mistyped command."""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Sequence


def take_debug(argv: Sequence[str]) -> tuple[list[str], bool]:
    """``argv`` without its ``--debug`` words (before any ``--``), and whether there was one.

    argparse knows ``--debug`` only before the subcommand; a user adds it at the end.
    """
    words = list(argv)
    end = words.index("--") if "--" in words else len(words)
    kept = [w for w in words[:end] if w != "--debug"] + words[end:]
    return kept, len(kept) != len(words)


def check_command(parser: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """Exit with a "did you mean" when the first word that is not an option names no command."""
    word = next((w for w in argv if not w.startswith("-")), None)
    commands = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    if word is None or not commands or word in commands:
        return
    close = difflib.get_close_matches(word, list(commands), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f" (commands: {', '.join(commands)})"
    parser.error(f"unknown command {word!r}{hint}")
