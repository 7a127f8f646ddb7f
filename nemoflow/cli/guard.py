"""How both command lines (``nemoflow`` and a script's ``nemoflow.cli.main``) end on an error or Ctrl-C."""

from __future__ import annotations

# render (and with it rich) is imported only when there is an error to show.
import sys
from collections.abc import Callable

from nemoflow.errors import NemoflowError


def reporting_errors(run: Callable[[], int], *, debug: bool, interrupted: str) -> int:
    """``run()``'s exit code; nemoflow's own errors shown as one message (a traceback with ``debug``), 130 on Ctrl-C."""
    try:
        return run()
    except NemoflowError as exc:
        if debug:
            raise
        from nemoflow.cli import render

        render.error(exc)
        return getattr(exc, "exit_code", 1)
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
