"""Plan-time checks of a config's own validation rules (``__post_init__`` asserts, pydantic validators).

A ``Config`` of a dataclass or pydantic model is cheap to build, so it is built when the plan is made:
a rule such as ``assert hidden_size % num_heads == 0`` then fails before anything is queued on a
cluster, as a config error naming the config path. Configs of other targets (functions, classes that
may load data or models) are never built here.
"""

from __future__ import annotations

import dataclasses
import inspect
import traceback
from typing import Any

from nemoflow.configs.core import Buildable, Config, Partial, build, missing_arguments
from nemoflow.configs.refs import File, StepOutput, StepResult
from nemoflow.configs.treeops import children
from nemoflow.errors import ConfigError


def check_builds(cfg: Any, root: str = "") -> None:
    """Build every ``Config`` in ``cfg`` whose target is a dataclass or pydantic model (and whose arguments
    are plain values or such configs), innermost first, and report the first rule that fails.

    Args:
        root: the config path of ``cfg`` (a step name), which error paths start from.

    Raises:
        ConfigError: a target's validation refused its values; of the builtin kind the rule raised
            (``AssertionError``, ``ValueError``, ``TypeError``), with the config path and the rule's line.
    """
    _check(cfg, root, {})


def _check(node: Any, path: str, seen: dict[int, bool]) -> bool:
    """Check ``node`` and what is under it; True when ``node`` can be built cheaply (and was)."""
    if id(node) in seen:
        return seen[id(node)]
    kids = [_check(child, child_path, seen) for child_path, child in children(node, path)]
    if isinstance(node, (File, StepOutput, StepResult)):
        cheap = False
    elif isinstance(node, Partial):
        cheap = all(kids)  # builds to a functools.partial: nothing of the target runs
    elif isinstance(node, Config):
        cheap = all(kids) and _cheap_target(node.__fn_or_cls__) and not missing_arguments(node)
        if cheap:
            _build_here(node, path)
    elif isinstance(node, Buildable):
        cheap = False
    else:
        cheap = all(kids)
    seen[id(node)] = cheap
    return cheap


def _cheap_target(target: Any) -> bool:
    if not inspect.isclass(target):
        return False
    if dataclasses.is_dataclass(target):
        return True
    return any(base.__module__.startswith("pydantic") for base in target.__mro__[1:]) and hasattr(
        target, "model_fields"
    )


def _build_here(node: Config[Any], path: str) -> None:
    try:
        build(node)
    except ConfigError as exc:
        cause = exc.__cause__
        if cause is None:
            raise type(exc)(exc.message, path=path or exc.path, hint=exc.hint) from None
        raise type(exc)(_rule_message(node, cause), path=path or exc.path, hint=exc.hint) from cause


def _rule_message(node: Config[Any], cause: BaseException) -> str:
    """What failed, with the rule's own line: ``Model's validation failed: assert h % n == 0 (model.py:12)``."""
    name = getattr(node.__fn_or_cls__, "__qualname__", repr(node.__fn_or_cls__))
    text = str(cause).strip()
    try:
        source = inspect.getsourcefile(node.__fn_or_cls__)
    except TypeError:
        source = None
    frames = [f for f in traceback.extract_tb(cause.__traceback__) if f.filename == source]  # the rule's own line
    where = ""
    if frames:
        last = frames[-1]
        line = (last.line or "").strip()
        where = f"{line} ({last.filename.rsplit('/', 1)[-1]}:{last.lineno})" if line else ""
    detail = ": ".join(part for part in (type(cause).__name__, text) if part)
    return f"{name}'s validation failed: {detail}" + (f" at {where}" if where else "")
