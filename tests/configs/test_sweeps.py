"""Sweeps: grid and seeded random points, their names, and adding them to an experiment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import nemoflow
from nemoflow.configs.sweeps import loguniform, randint, uniform
from nemoflow.errors import ConfigError, UserError
from nemoflow.pipeline.plan import make_plan
from nemoflow.store.targets import Store

from targets_for_tests import Model, Trainer, read_inputs, train

STEP_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.=+-]*$")


def _base() -> nemoflow.Partial:
    return nemoflow.Partial(train, model=nemoflow.Config(Model, hidden_size=4), lr=0.5)


def test_a_grid_gives_every_combination_named_by_its_values() -> None:
    base = _base()
    points = nemoflow.sweep(base, grid={"lr": [0.1, 1e-3], "model.hidden_size": [8, 16]})
    assert [p.name for p in points] == [
        "lr=0.1+model.hidden_size=8",
        "lr=0.1+model.hidden_size=16",
        "lr=0.001+model.hidden_size=8",
        "lr=0.001+model.hidden_size=16",
    ]
    assert [(p.config.lr, p.config.model.hidden_size) for p in points] == [(0.1, 8), (0.1, 16), (1e-3, 8), (1e-3, 16)]
    assert points[0].values == {"lr": 0.1, "model.hidden_size": 8}
    assert (base.lr, base.model.hidden_size) == (0.5, 4), "the base config is not changed"
    name, config = points[1]
    assert (name, config) == (points[1].name, points[1].config)


def test_points_are_steps_with_distinct_keys(tmp_path: Path) -> None:
    exp = nemoflow.Experiment("swept")
    for name, config in nemoflow.sweep(_base(), grid={"lr": [0.1, 0.2], "steps": [1, 2]}, prefix="train"):
        exp.add(config, name=name)
    plan = make_plan(exp, Store(tmp_path / "t"))
    assert list(exp.steps) == [
        "train-lr=0.1+steps=1",
        "train-lr=0.1+steps=2",
        "train-lr=0.2+steps=1",
        "train-lr=0.2+steps=2",
    ]
    assert len({s.key for s in plan}) == 4


def test_names_are_safe_stable_and_unique() -> None:
    floats = nemoflow.sweep(
        nemoflow.Partial(Trainer, model=nemoflow.Config(Model, hidden_size=1)),
        grid={"model.dropout": [0.5, 1 / 3], "lr": [0.1]},
    )
    assert [p.name for p in floats] == ["model.dropout=0.5+lr=0.1", "model.dropout=0.333333+lr=0.1"]
    texts = nemoflow.sweep(nemoflow.Partial(read_inputs, out="o"), grid={"data": ["a b/c", "a-b-c"]})
    names = [p.name for p in texts]
    assert all(STEP_NAME.match(n) for n in names) and len(set(names)) == 2
    assert all(n.startswith("data=a-b-c-") for n in names), "names that clash once made safe get a hash"
    again = nemoflow.sweep(nemoflow.Partial(read_inputs, out="o"), grid={"data": ["a b/c", "a-b-c"]})
    assert [p.name for p in again] == names


def test_a_random_sweep_is_seeded() -> None:
    spec = {"lr": loguniform(1e-4, 1e-1), "steps": randint(1, 100), "model.dropout": uniform(0.0, 0.5)}
    first = nemoflow.sweep(_base(), random=spec, n=5, seed=7)
    same = nemoflow.sweep(_base(), random=spec, n=5, seed=7)
    other = nemoflow.sweep(_base(), random=spec, n=5, seed=8)
    assert [p.values for p in first] == [p.values for p in same]
    assert [p.name for p in first] == [p.name for p in same]
    assert [p.values for p in first] != [p.values for p in other]
    assert len({p.name for p in first}) == 5
    for p in first:
        assert 1e-4 <= p.config.lr <= 1e-1 and 1 <= p.config.steps <= 100 and 0 <= p.config.model.dropout <= 0.5
        assert STEP_NAME.match(p.name)


def test_random_choices_are_distinct_points() -> None:
    points = nemoflow.sweep(_base(), random={"steps": [1, 2, 3], "lr": (0.1, 0.2)}, n=6, seed=0)
    assert sorted((p.config.steps, p.config.lr) for p in points) == [(s, lr) for s in (1, 2, 3) for lr in (0.1, 0.2)]
    with pytest.raises(UserError, match="found only 6 distinct random points of the 7"):
        nemoflow.sweep(_base(), random={"steps": [1, 2, 3], "lr": (0.1, 0.2)}, n=7)
    drawn = nemoflow.sweep(_base(), random={"steps": lambda rng: rng.choice([5, 6])}, n=2, seed=1)
    assert sorted(p.config.steps for p in drawn) == [5, 6]


def test_bad_sweeps_name_what_is_wrong() -> None:
    with pytest.raises(UserError, match="one of grid"):
        nemoflow.sweep(_base())
    with pytest.raises(UserError, match="non-empty list"):
        nemoflow.sweep(_base(), grid={"lr": []})
    with pytest.raises(UserError, match="needs n="):
        nemoflow.sweep(_base(), random={"lr": [0.1]})
    with pytest.raises(ConfigError, match=r"train\.lr"):
        nemoflow.sweep(_base(), grid={"lr": ["fast"]})
    with pytest.raises(ConfigError, match="no 'modle'"):
        nemoflow.sweep(_base(), grid={"modle.hidden_size": [1]})
    with pytest.raises(ConfigError, match="not a config"):
        nemoflow.sweep(_base(), grid={"lr.x": [1]})
    with pytest.raises(UserError, match="two identical points"):
        nemoflow.sweep(_base(), grid={"lr": [0.1, 0.1]})
