"""The ``nemoflow`` command line, and NeMo Run's script CLI.

``@nemoflow.cli.entrypoint`` marks a function, ``@nemoflow.cli.factory`` registers a config
factory, and ``nemoflow.cli.main(fn)`` runs ``fn`` on ``sys.argv``. The ``nemoflow`` command
itself lives in ``nemoflow.cli.app``. Names load lazily, so ``import nemoflow.cli`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "main": "nemoflow.cli.entrypoints",
    "entrypoint": "nemoflow.cli.decorators",
    "factory": "nemoflow.cli.decorators",
    "resolve_factory": "nemoflow.cli.decorators",
    "list_entrypoints": "nemoflow.cli.decorators",
    "list_factories": "nemoflow.cli.decorators",
    "Entrypoint": "nemoflow.cli.decorators",
    "RunContext": "nemoflow.cli.context",
    "create_cli": "nemoflow.cli.multi",
    "run_entrypoint": "nemoflow.cli.entrypoints",
    "parse_cli_args": "nemoflow.cli.parse_api",
    "parse_partial": "nemoflow.cli.parse_api",
    "parse_config": "nemoflow.cli.parse_api",
    "apply_overrides": "nemoflow.cli.overrides",
    "apply_to_experiment": "nemoflow.cli.overrides",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nemoflow.cli' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
