"""Exported configs name targets as NeMo Run and Hydra do (``_target_: module.Model``); both spellings read."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import nemoflow as run
from nemoflow.configs.serialize import canonical_json, dumps, load, loads, save, to_data


@dataclass
class Model:
    hidden_size: int = 8
    dropout: float = 0.1


class Outer:
    @dataclass
    class Inner:
        width: int = 1


def train(model: Model, lr: float = 0.1) -> float:
    return lr


def test_yaml_and_json_write_the_dotted_target() -> None:
    cfg = run.Partial(train, model=run.Config(Model, hidden_size=16), lr=0.5)
    data = yaml.safe_load(dumps(cfg, "yaml"))
    assert data["_target_"] == "test_export.train"
    assert data["_partial_"] is True
    assert data["model"] == {"_target_": "test_export.Model", "hidden_size": 16}
    assert json.loads(dumps(cfg, "json"))["model"]["_target_"] == "test_export.Model"


@pytest.mark.parametrize("target", ["test_export.Model", "test_export:Model"])
def test_both_spellings_are_read(target: str) -> None:
    cfg = loads(f"_target_: {target}\nhidden_size: 32\n", "yaml")
    assert cfg == run.Config(Model, hidden_size=32)
    assert run.build(cfg) == Model(hidden_size=32)


def test_a_nested_class_reads_back_from_its_dotted_name() -> None:
    cfg = run.Config(Outer.Inner, width=3)
    assert yaml.safe_load(dumps(cfg, "yaml"))["_target_"] == "test_export.Outer.Inner"
    assert loads(dumps(cfg, "yaml"), "yaml") == cfg


@pytest.mark.parametrize("suffix", [".yaml", ".toml", ".json"])
def test_a_saved_file_loads_back_equal_and_with_the_same_key_form(tmp_path: Path, suffix: str) -> None:
    cfg = run.Partial(train, model=run.Config(Model, hidden_size=16), lr=0.5)
    save(cfg, tmp_path / f"c{suffix}")
    back = load(tmp_path / f"c{suffix}")
    assert back == cfg
    assert canonical_json(to_data(back)) == canonical_json(to_data(cfg))


def test_the_key_form_keeps_the_module_colon_spelling() -> None:
    assert to_data(run.Config(Model))["_target_"] == "test_export:Model"


def test_a_dotted_name_of_a_missing_module_is_a_config_error() -> None:
    with pytest.raises(run.ConfigError, match="cannot import"):
        loads("_target_: no_such_module_here.Model\n", "yaml")
