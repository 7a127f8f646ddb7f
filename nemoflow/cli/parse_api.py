"""NeMo Run's ``parse_cli_args`` / ``parse_partial`` / ``parse_config``: override tokens onto a function's config.

cfg = run.cli.parse_cli_args(train, ["model=my_model(hidden=3)", "lr*=2"])   # a Partial of train
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from nemoflow.configs.core import Buildable, Config, Partial


def parse_cli_args(fn: Any, args: Iterable[str], output_type: Any = Partial) -> Any:
    """``args`` applied, in order, to ``output_type(fn)`` (``Partial`` or ``Config``), or to ``fn``
    itself when it is already a config (changed in place).

    Raises:
        ConfigError: a malformed token, an unknown key, a refused value or an unknown factory
            (the message names the token).
    """
    from nemoflow.cli.overrides import apply_overrides

    root = fn if isinstance(fn, Buildable) else output_type(fn)
    return apply_overrides(root, list(args))


def parse_partial(fn: Callable[..., Any], *args: str) -> Partial[Any]:
    """``parse_cli_args(fn, args)`` as a ``Partial``."""
    return parse_cli_args(fn, args, Partial)


def parse_config(fn: Callable[..., Any], *args: str) -> Config[Any]:
    """``parse_cli_args(fn, args)`` as a ``Config``."""
    return parse_cli_args(fn, args, Config)
