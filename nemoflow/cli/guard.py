"""How both command lines (``nemoflow`` and a script's ``nemoflow.cli.main``) end on an error or Ctrl-C."""

from __future__ import annotations

# render (and with it rich) is imported only when there is an error to show.
import os
import sys
from collections.abc import Callable

from nemoflow.errors import LedgerError, NemoflowError


def reporting_errors(run: Callable[[], int], *, debug: bool, interrupted: str, as_json: bool = False) -> int:
    """``run()``'s exit code; nemoflow's own errors shown as one message (a traceback with ``debug``), 130 on Ctrl-C.

    A store that cannot be written (read-only, no permission, disk full) or a damaged ledger is one
    line naming the path and what to do, exit code 2, wherever it surfaces. With ``as_json`` (``--json``)
    the error is also printed on stdout as one JSON object: ``{"error": ..., "exit_code": ...}``.
    """
    try:
        return run()
    except NemoflowError as exc:
        if debug:
            raise
        return _report(exc, as_json)
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`nemoflow ... | head`): end quietly, as shell tools do; stdout now leads
        # nowhere, so the interpreter's final flush cannot raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        problem = None if debug else _storage_problem(exc)
        if problem is None:
            raise
        return _report(LedgerError(problem), as_json)


def _report(exc: NemoflowError, as_json: bool) -> int:
    from nemoflow.cli import render

    code: int = getattr(exc, "exit_code", None) or 1
    render.error(exc)
    if as_json:
        render.error_json(exc, code)
    return code


def _storage_problem(exc: Exception) -> str | None:
    """The one-line message of a disk or SQLite refusal (see nemoflow.record.ledger.storage_problem), else None."""
    if not isinstance(exc, OSError) and type(exc).__module__ != "sqlite3":
        return None
    from nemoflow.record.ledger import storage_problem

    return storage_problem(exc)
