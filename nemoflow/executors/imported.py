"""``import_executor``: executors defined once in a Python file of their own (NeMo Run's ``executors.py``)."""

from __future__ import annotations

import importlib.util
import os
import uuid
from typing import Any

from nemoflow.errors import UserError, did_you_mean
from nemoflow.executors.base import Executor


class ExecutorFileNotFound(UserError, FileNotFoundError):
    """The executors file does not exist (a FileNotFoundError, as NeMo Run's import raises)."""


class ExecutorNotDefined(UserError, AttributeError):
    """The executors file defines no such name (an AttributeError, as NeMo Run raises)."""


def default_executors_file() -> str:
    """``$NEMORUN_HOME/executors.py`` (default ``~/.nemo_run``), where a NeMo Run user keeps theirs."""
    home = os.environ.get("NEMORUN_HOME") or os.path.join("~", ".nemo_run")
    return os.path.join(os.path.expanduser(home), "executors.py")


def import_executor(name: str, file_path: str | None = None, call: bool = True, **kwargs: Any) -> Executor:
    """The executor ``name`` of the Python file ``file_path`` (default :func:`default_executors_file`).

    ``name`` is an executor object, or a function making one: it is called with ``kwargs`` when ``call``.
    The file is the user's own code, run as a module, as a pipeline file is.
    """
    path = os.path.expanduser(file_path or default_executors_file())
    if not os.path.isfile(path):
        raise ExecutorFileNotFound(f"executors file {path} does not exist", hint="pass file_path= or create it")
    spec = importlib.util.spec_from_file_location(f"nemoflow_executors_{uuid.uuid4().hex[:8]}", path)
    if spec is None or spec.loader is None:
        raise ExecutorFileNotFound(f"cannot load {path} as a Python module", hint="name a .py file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, name):
        names = [n for n in vars(module) if not n.startswith("_")]
        raise ExecutorNotDefined(f"{path} defines no {name!r}", hint=did_you_mean(name, names))
    value = getattr(module, name)
    return value(**kwargs) if call and callable(value) else value
