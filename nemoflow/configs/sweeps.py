"""Sweeps: named copies of a config over a grid of values, or drawn at random with a seed.

``nemoflow.sweep(train.partial(lr=0.1), grid={"lr": [0.1, 0.01], "model.hidden_size": [8, 16]})``
gives four points; each unpacks as ``(name, config)`` for ``exp.add(config, name=name)``, and its
name (``lr=0.1+model.hidden_size=8``) is made from the varied values only: stable across runs
and machines, unique within the sweep, and a valid step name.
"""

from __future__ import annotations

import copy
import enum
import hashlib
import itertools
import math
import random as _random
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nemoflow.configs.core import Buildable
from nemoflow.configs.serialize import canonical_json, to_data
from nemoflow.errors import ConfigError, UserError, describe_value

_UNSAFE = re.compile(r"[^A-Za-z0-9_.=+-]+")  # what a step name may not hold
_MAX_NAME = 120


@dataclass(frozen=True)
class SweepPoint:
    """One config of a sweep, with its name and the values that make it differ from the base.

    Unpacks as ``(name, config)``: ``for name, cfg in nemoflow.sweep(...): exp.add(cfg, name=name)``.
    """

    name: str
    config: Buildable[Any]
    values: dict[str, Any]  # dotted path -> value

    def __iter__(self) -> Iterator[Any]:
        return iter((self.name, self.config))


@dataclass(frozen=True)
class Distribution:
    """A value drawn at random for a sweep: see :func:`uniform`, :func:`loguniform`, :func:`randint`."""

    kind: str
    low: float
    high: float

    def sample(self, rng: _random.Random) -> Any:
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high)
        if self.kind == "loguniform":
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.randint(int(self.low), int(self.high))


def uniform(low: float, high: float) -> Distribution:
    """A float drawn uniformly from ``[low, high]``."""
    return Distribution("uniform", low, high)


def loguniform(low: float, high: float) -> Distribution:
    """A float whose logarithm is uniform over ``[log(low), log(high)]`` (learning rates); ``low > 0``."""
    if low <= 0 or high <= 0:
        raise UserError(f"loguniform needs positive bounds, got {low}, {high}")
    return Distribution("loguniform", low, high)


def randint(low: int, high: int) -> Distribution:
    """An integer drawn uniformly from ``low`` to ``high``, both included."""
    return Distribution("randint", low, high)


Spec = Sequence[Any] | Distribution | Callable[[_random.Random], Any]


def sweep(
    base: Buildable[Any],
    *,
    grid: Mapping[str, Sequence[Any]] | None = None,
    random: Mapping[str, Spec] | None = None,
    n: int | None = None,
    seed: int = 0,
    prefix: str = "",
) -> list[SweepPoint]:
    """Named copies of ``base`` with some values changed (``base`` itself is not changed).

    Args:
        base: the config to vary (a Partial or Config).
        grid: dotted path -> the values to try; every combination, the last path varying fastest.
        random: dotted path -> a list or tuple (one is picked), a :func:`uniform`, :func:`loguniform`
            or :func:`randint` distribution, or a function of a ``random.Random``; ``n`` points
            are drawn, each different from the others.
        n: how many random points.
        seed: seeds the random draws: the same seed gives the same points.
        prefix: put in front of every name, with a ``-`` (``train-lr=0.1``).

    Returns:
        The points, in order.

    Raises:
        UserError: neither or both of ``grid`` and ``random``, an empty list of values, no ``n``,
            or fewer than ``n`` distinct random points.
        ConfigError: a path the config does not have, or a value of the wrong type (with its path).
    """
    if not isinstance(base, Buildable):
        raise UserError(f"sweep() varies a nemoflow.Partial or Config, got {describe_value(base)}")
    if (grid is None) == (random is None):
        raise UserError("sweep() takes one of grid={...} or random={...}")
    if grid is not None:
        combos = _grid(grid)
    else:
        if n is None or n < 1:
            raise UserError("a random sweep needs n=, the number of points (at least 1)")
        combos = _draws(random or {}, n, seed)
    names = _unique_names(combos, prefix)
    return [SweepPoint(name, _apply(base, values), values) for name, values in zip(names, combos)]


def _grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    for path, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise UserError(f"grid[{path!r}] must be a non-empty list of values, got {describe_value(values)}")
    paths = list(grid)
    return [dict(zip(paths, combo)) for combo in itertools.product(*(grid[p] for p in paths))]


def _draws(specs: Mapping[str, Spec], n: int, seed: int) -> list[dict[str, Any]]:
    rng = _random.Random(seed)
    found: dict[str, dict[str, Any]] = {}
    attempts = 0
    while len(found) < n:
        attempts += 1
        if attempts > 100 * n:
            raise UserError(f"found only {len(found)} distinct random points of the {n} asked for")
        values = {path: _draw(path, spec, rng) for path, spec in specs.items()}
        found.setdefault(_identity(values), values)
    return list(found.values())


def _draw(path: str, spec: Spec, rng: _random.Random) -> Any:
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise UserError(f"random[{path!r}] is an empty list")
        return rng.choice(spec)
    if isinstance(spec, Distribution):
        return spec.sample(rng)
    if callable(spec):
        return spec(rng)
    raise UserError(
        f"random[{path!r}] must be a list, a distribution or a function of a random.Random, got {describe_value(spec)}",
        hint="use nemoflow.configs.sweeps.uniform / loguniform / randint",
    )


def _apply(base: Buildable[Any], values: Mapping[str, Any]) -> Buildable[Any]:
    cfg = copy.deepcopy(base)
    for path, value in values.items():
        _set_path(cfg, path, copy.deepcopy(value))
    return cfg


def _set_path(cfg: Buildable[Any], path: str, value: Any) -> None:
    """Set a dotted path in a config tree; every node on the way must be a config or a dict."""
    *parents, last = path.split(".")
    node: Any = cfg
    for i, part in enumerate(parents):
        where = ".".join(parents[: i + 1])
        try:
            node = node[part] if isinstance(node, dict) else getattr(node, part)
        except (AttributeError, KeyError) as exc:
            raise ConfigError(f"the swept config has no {where!r}: {exc}", path=path) from None
        if not isinstance(node, (Buildable, dict)):
            raise ConfigError(
                f"{where} is {describe_value(node)}, not a config: cannot set {path!r} in it",
                path=path,
                hint=f"set {where} to a nemoflow.Config first",
            )
    if isinstance(node, dict):
        node[last] = value
    else:
        setattr(node, last, value)  # validated against the target's signature


def _unique_names(combos: list[dict[str, Any]], prefix: str) -> list[str]:
    names = [_name(values, prefix) for values in combos]
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    unique = [
        name if counts[name] == 1 else f"{name[:_MAX_NAME]}-{_identity(values)[:8]}"
        for name, values in zip(names, combos)
    ]
    if len(set(unique)) < len(unique):
        raise UserError("the sweep has two identical points", hint="list each value once")
    return unique


def _name(values: Mapping[str, Any], prefix: str) -> str:
    text = "+".join(f"{path}={_text(value)}" for path, value in values.items())
    name = _UNSAFE.sub("-", text)
    if len(name) > _MAX_NAME:
        name = f"{name[:_MAX_NAME]}-{_identity(values)[:8]}"
    return f"{prefix}-{name}" if prefix else name


def _text(value: Any) -> str:
    """A short, readable form of a swept value for a name."""
    if isinstance(value, float):
        short = repr(value)
        return short if len(short) <= 10 else f"{value:.6g}"
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, (str, int, bool)) or value is None:
        return str(value)
    if isinstance(value, Buildable):
        return getattr(value.__fn_or_cls__, "__name__", "config")
    if isinstance(value, (list, tuple)):
        return "-".join(_text(v) for v in value)
    return _identity(value)[:8]


def _identity(value: Any) -> str:
    """A hash of a value's canonical data: equal values, equal hashes, in any process."""
    return hashlib.sha256(canonical_json(to_data(value)).encode()).hexdigest()
