"""Tests for nemoflow.configs.serialize: data form, canonical JSON, YAML/TOML/JSON/Python files."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

import nemoflow
from nemoflow.configs.core import Config, Partial, Script
from nemoflow.configs.refs import StepOutput, StepResult
from nemoflow.configs.serialize import (
    canonical_json,
    dotted,
    dumps,
    from_data,
    load,
    loads,
    python_source,
    save,
    to_data,
)
from nemoflow.errors import ConfigError, UserError

from targets_for_tests import (
    Color,
    FakeStep,
    Kernel,
    Mode,
    Model,
    Trainer,
    anything,
    apply,
    read_inputs,
    read_many,
    shaped,
    square,
    train,
)

TEXT_FORMATS = ["yaml", "toml", "json"]


def nested() -> Config[Trainer]:
    return Config(Trainer, model=Config(Model, hidden_size=8, dropout=0.2), lr=0.1, epochs=3)


def with_values() -> Config[Any]:
    return Config(shaped, shape=(2, 3), table={1: "one", 2: "two"}, color=Color.GREEN, mode=Mode.EVAL)


def with_paths() -> Config[Any]:
    return Config(anything, out=pathlib.Path("out/model.npz"), data=read_inputs_config(), none=None, nan=float("inf"))


def read_inputs_config() -> Config[Any]:
    return Config(read_inputs, data=nemoflow.File("inputs/x.csv"), out="results", count=2)


def with_callables() -> Config[Any]:
    return Config(anything, fn=Partial(apply, fn=square), cls=Model, many=[Config(read_many, paths=["a", "b"])])


def with_script() -> Config[Any]:
    script = Script("run.sh", args=["--in", nemoflow.File("a.csv"), 3], env={"SEED": "1"})
    return Config(anything, script=script, inline=Script(inline="echo hi", entrypoint="sh"))


def with_sets() -> Config[Any]:
    return Config(anything, tags={"cat", "dog", "bird"}, ids=frozenset({3, 1, 2}), empty=set())


def with_tag_like_keys() -> Config[Any]:
    return Config(anything, meta={"_target_": "x", "_path_": None, "_none_": True, "plain": 1})


CONFIGS: dict[str, Callable[[], Any]] = {
    "nested": nested,
    "tuples, int keys, enums": with_values,
    "paths, files, none, inf": with_paths,
    "callables and lists of configs": with_callables,
    "scripts": with_script,
    "sets": with_sets,
    "user dicts with tag-like keys": with_tag_like_keys,
}


@pytest.fixture(params=list(CONFIGS))
def config(request: pytest.FixtureRequest) -> Any:
    return CONFIGS[request.param]()


# ---- the data form -------------------------------------------------------------------------


def test_data_form_names_targets_by_import_path() -> None:
    assert to_data(nested()) == {
        "_target_": "targets_for_tests:Trainer",
        "epochs": 3,
        "lr": 0.1,
        "model": {"_target_": "targets_for_tests:Model", "dropout": 0.2, "hidden_size": 8},
    }
    assert to_data(Partial(train, lr=0.5)) == {"_target_": "targets_for_tests:train", "_partial_": True, "lr": 0.5}


def test_data_form_is_json_text(config: Any) -> None:
    assert json.loads(json.dumps(to_data(config))) == to_data(config)


def test_data_round_trip_gives_an_equal_config(config: Any) -> None:
    assert from_data(to_data(config)) == config


def test_values_keep_their_types_through_a_round_trip() -> None:
    back = from_data(json.loads(json.dumps(to_data(with_values()))))
    assert back.shape == (2, 3)
    assert back.table == {1: "one", 2: "two"}
    assert back.color is Color.GREEN
    assert back.mode is Mode.EVAL
    paths = from_data(json.loads(json.dumps(to_data(with_paths()))))
    assert paths.out == pathlib.Path("out/model.npz")
    assert paths.data.data == nemoflow.File("inputs/x.csv")
    sets = from_data(json.loads(json.dumps(to_data(with_sets()))))
    assert (type(sets.tags), type(sets.ids)) == (set, frozenset)
    called = from_data(to_data(with_callables()))
    assert called.fn.fn is square
    assert called.cls is Model


def test_enums_with_tuple_values_round_trip() -> None:
    cfg = Config(anything, kernel=Kernel.WIDE)
    assert loads(dumps(cfg, "json"), "json").kernel is Kernel.WIDE


def test_callables_are_named_by_import_path() -> None:
    assert to_data(Config(apply, fn=square)) == {
        "_target_": "targets_for_tests:apply",
        "fn": {"_import_": "targets_for_tests:square"},
    }


def test_unnamed_callables_fall_back_to_dill() -> None:
    data = to_data(Config(anything, fn=lambda x: x + 1))
    assert set(data["fn"]) == {"_dill_"}
    assert from_data(data, trusted=True).fn(1) == 2
    with pytest.raises(ConfigError, match="'_dill_' \\(pickled\\) value is refused"):
        from_data(data)


def test_a_target_without_an_import_path_is_refused() -> None:
    def local(x: int) -> int:
        return x

    with pytest.raises(ConfigError, match="cannot be named by import path"):
        to_data(Config(local, x=1))


def test_numpy_scalars_become_plain_numbers() -> None:
    data = to_data(Config(anything, lr=np.float64(0.25)))
    assert type(data["lr"]) is float
    assert loads(dumps(Config(anything, lr=np.float64(0.25)), "yaml"), "yaml").lr == 0.25


def test_step_references_round_trip_with_the_experiment_steps() -> None:
    prepare = FakeStep("prepare")
    cfg = Config(anything, data=StepOutput(prepare, "data.npz"), meta=StepResult(prepare))
    data = to_data(cfg)
    assert data["data"] == {"_output_": "prepare", "path": "data.npz"}
    assert from_data(data, steps={"prepare": prepare}) == cfg


def test_a_reference_to_an_unknown_step_names_it_and_suggests() -> None:
    data = {"_target_": "targets_for_tests:anything", "data": {"_output_": "prepare", "path": "x"}}
    with pytest.raises(ConfigError) as info:
        from_data(data, steps={"prepared": FakeStep("prepared")})
    assert "refers to step 'prepare', which is not in this experiment" in str(info.value)
    assert "did you mean 'prepared'?" in str(info.value)
    assert info.value.path.endswith("data")


def test_an_unknown_import_path_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot import 'targets_for_tests:nope'"):
        from_data({"_target_": "targets_for_tests:nope"})


def test_a_wrong_value_in_data_names_its_path() -> None:
    data = to_data(nested())
    data["model"]["hidden_size"] = "wide"
    with pytest.raises(ConfigError) as info:
        from_data(data)
    assert info.value.path == "Trainer.model.hidden_size"
    assert "expected int, got 'wide' (str)" in str(info.value)


def test_loaded_nested_config_reports_full_paths_on_assignment() -> None:
    cfg = from_data(to_data(nested()))
    with pytest.raises(ConfigError) as info:
        cfg.model.hidden_size = "x"
    assert info.value.path == "Trainer.model.hidden_size"


# ---- canonical JSON ------------------------------------------------------------------------


def test_canonical_json_is_key_order_independent() -> None:
    assert canonical_json({"b": 1, "a": {"y": 2, "x": 3}}) == canonical_json({"a": {"x": 3, "y": 2}, "b": 1})
    assert canonical_json({"b": 1, "a": 2}) == '{"a":2,"b":1}'


def test_argument_order_does_not_change_the_canonical_form() -> None:
    a = Config(Trainer, lr=0.1, model=Config(Model, dropout=0.2, hidden_size=8), epochs=3)
    assert canonical_json(to_data(a)) == canonical_json(to_data(nested()))


def test_dicts_with_non_string_keys_have_one_canonical_form() -> None:
    a = Config(anything, table={1: "one", 2: "two"})
    b = Config(anything, table={2: "two", 1: "one"})
    assert a == b
    assert canonical_json(to_data(a)) == canonical_json(to_data(b))


def test_canonical_json_refuses_what_is_not_data() -> None:
    with pytest.raises(TypeError, match="not canonical data"):
        canonical_json({"x": object()})


# ---- text formats and files ----------------------------------------------------------------


@pytest.mark.parametrize("fmt", TEXT_FORMATS)
def test_text_round_trip_gives_an_equal_config(config: Any, fmt: str) -> None:
    assert loads(dumps(config, fmt), fmt) == config


@pytest.mark.parametrize("fmt", TEXT_FORMATS)
def test_text_round_trip_keeps_the_canonical_form(config: Any, fmt: str) -> None:
    back = loads(dumps(config, fmt), fmt)
    assert canonical_json(to_data(back)) == canonical_json(to_data(config))


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".toml", ".json", ".py"])
def test_save_and_load_give_an_equal_config(config: Any, tmp_path: pathlib.Path, suffix: str) -> None:
    path = tmp_path / f"config{suffix}"
    save(config, path)
    assert load(path) == config


def test_yaml_reads_like_the_data_form_with_dotted_targets() -> None:
    assert yaml.safe_load(dumps(nested(), "yaml")) == dotted(to_data(nested()))
    assert yaml.safe_load(dumps(nested(), "yaml"))["_target_"] == "targets_for_tests.Trainer"


def test_python_source_is_readable(tmp_path: pathlib.Path) -> None:
    source = python_source(nested())
    assert "from targets_for_tests import Model" in source
    assert "from targets_for_tests import Trainer" in source
    assert "config = nemoflow.Config(\n    Trainer,\n" in source
    assert "        hidden_size=8,\n" in source
    assert dumps(nested(), "py") == source


def test_python_source_writes_values_as_code() -> None:
    source = python_source(with_values())
    assert "color=Color['GREEN']" in source
    assert "shape=(2, 3, )" in source
    assert "table={1: 'one', 2: 'two'}" in source


def test_python_config_file_must_define_config(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "empty.py"
    path.write_text("x = 1\n")
    with pytest.raises(UserError, match="must define `config`"):
        load(path)


def test_yaml_is_loaded_safely(tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "marker"
    text = f"!!python/object/apply:os.system ['touch {marker}']\n"
    with pytest.raises(yaml.YAMLError):
        loads(text, "yaml")
    path = tmp_path / "evil.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_unknown_formats_are_user_errors(tmp_path: pathlib.Path) -> None:
    with pytest.raises(UserError, match="unknown config format 'xml'"):
        dumps(nested(), "xml")
    with pytest.raises(UserError, match="cannot load configs from 'py' text"):
        loads("config = 1", "py")
    with pytest.raises(UserError, match=r"cannot tell the format of .*config\.ini"):
        save(nested(), tmp_path / "config.ini")


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("bad.json", '{"_target_": "targets_for_tests:Model",\n "hidden_size": }\n'),
        ("bad.yaml", "_target_: targets_for_tests:Model\nhidden_size: [1, 2\n"),
        ("bad.toml", '_target_ = "targets_for_tests:Model"\nhidden_size = = 3\n'),
        ("bad.py", "import nemoflow\nconfig = nemoflow.Config(\n"),
    ],
)
def test_a_syntax_error_names_the_file(tmp_path: pathlib.Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load(path)
    assert str(info.value).startswith(str(path))
    assert info.value.exit_code == 2


def test_a_wrong_value_in_a_file_names_the_file_and_the_path(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "_target_: targets_for_tests:Trainer\nmodel:\n  _target_: targets_for_tests:Model\n  hidden_size: wide\n"
    )
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}: Trainer.model.hidden_size: expected int")


def test_a_missing_file_is_a_user_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load(tmp_path / "nope.yaml")


# ---- property: any JSON-like arguments survive -------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
argument_names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(argument_names, json_values, max_size=5))
@example({"a": {"_path_": None}})  # a user's key that looks like a tag
def test_json_like_arguments_round_trip_unchanged(arguments: dict[str, Any]) -> None:
    cfg = Config(anything, **arguments)
    data = to_data(cfg)
    back = from_data(json.loads(canonical_json(data)))
    assert back == cfg
    assert canonical_json(to_data(back)) == canonical_json(data)
