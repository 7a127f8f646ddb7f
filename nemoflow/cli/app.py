"""``nemoflow``: build, inspect and audit pipelines. A thin shell over the Python API."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from nemoflow.cli.parser import build_parser
from nemoflow.errors import NemoflowError


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nemoflow`` command; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(rich_help=not argv or "-h" in argv or "--help" in argv)
    from nemoflow.cli.completion import autocomplete

    autocomplete(parser)  # answers the shell and exits, when the shell is asking
    args = parser.parse_args(argv)
    if args.debug:
        os.environ["NEMOFLOW_DEBUG"] = "1"
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except NemoflowError as exc:
        if args.debug:
            raise
        from nemoflow.cli import render

        render.error(exc)
        return getattr(exc, "exit_code", 1)
    except KeyboardInterrupt:
        print("nemoflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
