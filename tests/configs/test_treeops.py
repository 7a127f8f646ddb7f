"""Tests for nemoflow.configs.treeops: walk, broadcast, diff."""

from __future__ import annotations

import copy

import pytest

import nemoflow
from nemoflow.configs.core import Config, Partial, Script
from nemoflow.configs.treeops import Change, children, walk
from nemoflow.errors import ConfigError

from targets_for_tests import Model, Trainer, anything


@pytest.fixture
def sweep() -> Config[dict]:
    """Two trainers and a spare model, under one ``anything`` config."""
    return Config(
        anything,
        runs=[
            Config(Trainer, model=Config(Model, hidden_size=4), lr=0.1),
            Config(Trainer, model=Config(Model, hidden_size=8), lr=0.2),
        ],
        spare={"model": Config(Model, hidden_size=16)},
    )


def test_walk_yields_every_node_with_its_path(sweep: Config[dict]) -> None:
    paths = [path for path, _node in walk(sweep)]
    assert paths == [
        "",
        "runs",
        "runs[0]",
        "runs[0].model",
        "runs[0].model.hidden_size",
        "runs[0].lr",
        "runs[1]",
        "runs[1].model",
        "runs[1].model.hidden_size",
        "runs[1].lr",
        "spare",
        "spare.model",
        "spare.model.hidden_size",
    ]
    nodes = dict(walk(sweep))
    assert nodes["runs[1].model.hidden_size"] == 8
    assert nodes["spare.model"] is sweep.spare["model"]


def test_walk_starts_from_a_given_path() -> None:
    cfg = Config(Trainer, model=Config(Model, hidden_size=4))
    assert [path for path, _ in walk(cfg, "train")] == ["train", "train.model", "train.model.hidden_size"]


def test_walk_goes_into_script_args_and_tuples() -> None:
    script = Script(inline="echo", args=["a", nemoflow.File("x.csv")])
    assert dict(walk(script, "s"))["s.args[1]"] == nemoflow.File("x.csv")
    assert [path for path, _ in children((1, 2), "t")] == ["t[0]", "t[1]"]
    assert list(children(3, "leaf")) == []


def test_nemoflow_walk_is_the_same_function() -> None:
    assert nemoflow.walk is walk


def test_broadcast_sets_a_field_everywhere_it_occurs(sweep: Config[dict]) -> None:
    assert nemoflow.broadcast(sweep, "dropout", 0.5) == 3
    assert [run.model.dropout for run in sweep.runs] == [0.5, 0.5]
    assert sweep.spare["model"].dropout == 0.5


def test_broadcast_validates_and_coerces(sweep: Config[dict]) -> None:
    assert nemoflow.broadcast(sweep, "epochs", "3") == 2
    assert [run.epochs for run in sweep.runs] == [3, 3]
    with pytest.raises(ConfigError, match="expected int"):
        nemoflow.broadcast(sweep, "epochs", "many")
    assert [run.epochs for run in sweep.runs] == [3, 3]


def test_broadcast_changes_nothing_when_one_place_refuses_the_value() -> None:
    tree = Config(anything, first=Config(anything, hidden_size=1), second=Config(Model, hidden_size=2))
    with pytest.raises(ConfigError, match=r"second\.hidden_size: expected int"):
        nemoflow.broadcast(tree, "hidden_size", "many")
    assert (tree.first.hidden_size, tree.second.hidden_size) == (1, 2)


def test_broadcast_counts_a_shared_config_once() -> None:
    shared = Config(Model, hidden_size=1)
    tree = Config(anything, a=shared, b=shared)
    assert nemoflow.broadcast(tree, "dropout", 0.3) == 1
    assert shared.dropout == 0.3


def test_broadcast_refuses_a_name_no_config_takes(sweep: Config[dict]) -> None:
    with pytest.raises(ConfigError) as info:
        nemoflow.broadcast(sweep, "hidden_sise", 1)
    assert info.value.path == "hidden_sise"
    assert "no config in the tree takes an argument 'hidden_sise'" in str(info.value)


def test_diff_of_equal_configs_is_empty(sweep: Config[dict]) -> None:
    assert nemoflow.diff(sweep, copy.deepcopy(sweep)) == []


def test_diff_reports_added_removed_and_changed_with_paths() -> None:
    a = Config(Trainer, model=Config(Model, hidden_size=4), lr=0.1, epochs=3)
    b = Config(Trainer, model=Config(Model, hidden_size=8, dropout=0.5), lr=0.1)
    assert nemoflow.diff(a, b) == [
        Change("epochs", "removed", old=3),
        Change("model.dropout", "added", new=0.5),
        Change("model.hidden_size", "changed", old=4, new=8),
    ]


def test_change_str_reads_like_a_patch() -> None:
    a = Config(Trainer, model=Config(Model, hidden_size=4), epochs=3)
    b = Config(Trainer, model=Config(Model, hidden_size=8, dropout=0.5))
    assert [str(change) for change in nemoflow.diff(a, b)] == [
        "- epochs = 3",
        "+ model.dropout = 0.5",
        "~ model.hidden_size: 4 -> 8",
    ]


def test_diff_sees_target_kind_and_list_changes() -> None:
    a = Config(anything, layers=[1, 2], fn=Config(Model, hidden_size=1))
    b = Config(anything, layers=[1, 3], fn=Partial(Model, hidden_size=1))
    assert [str(change) for change in nemoflow.diff(a, b)] == ["+ fn._partial_ = True", "~ layers[1]: 2 -> 3"]
    c = Config(anything, layers=[1, 2, 3], fn=Config(Trainer))
    assert [change.path for change in nemoflow.diff(a, c)] == ["fn._target_", "fn.hidden_size", "layers"]


def test_diff_tells_int_from_float() -> None:
    changes = nemoflow.diff(Config(anything, x=1), Config(anything, x=1.0))
    assert changes == [Change("x", "changed", old=1, new=1.0)]
