"""Loading a pipeline file: import it by path (module name = file stem) and find its experiment."""

from __future__ import annotations

import difflib
import importlib.util
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from nemoflow.errors import ConfigError, PipelineError, UserError
from nemoflow.pipeline.experiment import Experiment


def load_pipeline(path: str | Path) -> Experiment:
    """Import a pipeline file by path and return its experiment (nothing is built).

    The file defines a function ``pipeline()`` returning an Experiment, or exactly one
    module-level Experiment. Its module name is the file's stem, so keys do not depend on
    the folder the file sits in.

    Raises:
        PipelineError: the file is missing, does not import, or defines no single experiment.
    """
    file = Path(path).absolute()
    if file.is_dir():
        raise PipelineError(
            f"{str(path)!r} is a folder, not a pipeline file", hint=_did_you_mean(file, sorted(file.glob("*.py")))
        )
    if not file.is_file():
        near = sorted(file.parent.glob("*.py")) if file.parent.is_dir() else []
        raise PipelineError(f"pipeline file {str(path)!r} does not exist", hint=_did_you_mean(file, near))
    module = import_pipeline_module(file)
    factory = getattr(module, "pipeline", None)
    if callable(factory):
        exp = _call_in_pipeline(factory, file)
        if not isinstance(exp, Experiment):
            raise PipelineError(f"pipeline() returned {type(exp).__name__}, not an Experiment", where=str(path))
    else:
        found = [(n, v) for n, v in vars(module).items() if isinstance(v, Experiment)]
        if not found:
            raise PipelineError(
                "defines no Experiment",
                where=str(path),
                hint="add `exp = nemoflow.Experiment('name')` at module level, or a function pipeline() returning one",
            )
        if len(found) > 1:
            names = ", ".join(n for n, _ in found)
            raise PipelineError(
                f"defines {len(found)} Experiments ({names})", where=str(path), hint="keep one, or define pipeline()"
            )
        exp = found[0][1]
    exp.pipeline_file = file
    exp.module_name = module.__name__
    return exp


def _did_you_mean(file: Path, candidates: list[Path]) -> str | None:
    """ "did you mean FILE?" for the candidate closest to ``file`` by name (or the only one), else None."""
    names = {c.name: c for c in candidates}
    close = difflib.get_close_matches(file.name, list(names), n=1, cutoff=0.6)
    pick = names[close[0]] if close else (candidates[0] if len(candidates) == 1 else None)
    return None if pick is None else f"did you mean {_shown(pick)}?"


def _shown(path: Path) -> str:
    """``path`` relative to the current directory where it is under it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def import_pipeline_module(file: Path) -> Any:
    """Execute a pipeline file as module ``<stem>`` (its folder goes on ``sys.path``)."""
    name = file.stem
    existing = sys.modules.get(name)
    if existing is not None and not getattr(existing, "__nemoflow_pipeline__", False):
        raise PipelineError(
            f"the pipeline's module name {name!r} is already taken by an imported module",
            where=_display(file),
            hint="rename the pipeline file",
        )
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    module.__nemoflow_pipeline__ = True  # type: ignore[attr-defined]
    if str(file.parent) not in sys.path:
        sys.path.insert(0, str(file.parent))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        line = (exc.text or "").strip()
        raise PipelineError(
            f"syntax error: {exc.msg}" + (f": {line}" if line else ""), where=f"{_display(file)}:{exc.lineno}"
        ) from None
    except UserError as exc:
        sys.modules.pop(name, None)
        raise _located(exc, file) from None
    except Exception as exc:
        sys.modules.pop(name, None)
        raise PipelineError(f"{type(exc).__name__}: {exc}", where=_where(exc, file)) from exc
    return module


def _call_in_pipeline(factory: Any, file: Path) -> Any:
    try:
        return factory()
    except UserError as exc:
        raise _located(exc, file) from None
    except Exception as exc:
        raise PipelineError(f"pipeline() raised {type(exc).__name__}: {exc}", where=_where(exc, file)) from exc


def _display(file: Path) -> str:
    """The file's path as a user would type it: relative to the current directory when inside it."""
    rel = os.path.relpath(file)
    return rel if not rel.startswith("..") else str(file)


def _where(exc: BaseException, file: Path) -> str:
    """``file:line`` of the deepest frame of ``exc`` inside the pipeline file."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename) == file:
            line = frame.lineno
    return f"{_display(file)}:{line}" if line else _display(file)


def _located(exc: UserError, file: Path) -> UserError:
    where = _where(exc, file)
    if isinstance(exc, ConfigError) and exc.path:
        return PipelineError(f"{exc.path}: {exc.message}", where=where, hint=exc.hint)
    message = f"{exc.where}: {exc.message}" if exc.where else exc.message
    return PipelineError(message, where=where, hint=exc.hint)
