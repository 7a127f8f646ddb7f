"""Tests for nemoflow.validation: signatures and value checks, placeholders included."""

from __future__ import annotations

import inspect
import pathlib
from typing import Any, Protocol

import pytest

import nemoflow
from nemoflow.config import Config, Partial
from nemoflow.errors import ConfigError
from nemoflow.refs import StepOutput, StepResult
from nemoflow.validation import check_value, signature_of

from targets_for_tests import (
    FakeStep,
    Model,
    Trainer,
    anything,
    maybe_model,
    read_inputs,
    read_many,
    read_table,
    train,
)


class HasForward(Protocol):  # not runtime-checkable: issubclass() against it raises
    def forward(self) -> None: ...


def test_signature_resolves_string_annotations() -> None:
    sig = signature_of(train)
    assert sig.target_name == "train"
    assert list(sig.params) == ["model", "lr", "steps"]
    assert sig.params["model"].annotation is Model
    assert sig.params["lr"].annotation is float
    assert sig.params["steps"].default == 10
    assert [p.required for p in sig.params.values()] == [True, True, False]
    assert not sig.var_keyword


def test_signature_of_a_class_reads_its_init() -> None:
    sig = signature_of(Trainer)
    assert list(sig.params) == ["model", "lr", "epochs"]
    assert sig.params["lr"].annotation is float


def test_var_keyword_target_takes_any_name_untyped() -> None:
    sig = signature_of(anything)
    assert sig.var_keyword
    param = sig.param("whatever")
    assert param.annotation is Any
    assert param.kind is inspect.Parameter.KEYWORD_ONLY


def test_unknown_parameter_names_the_closest() -> None:
    with pytest.raises(ConfigError) as info:
        signature_of(train).param("step")
    assert info.value.path == "step"
    assert "did you mean 'steps'?" in str(info.value)


def test_signature_of_something_unreadable_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot read the signature"):
        signature_of(42)


def test_check_value_coerces_like_pydantic_lax_mode() -> None:
    assert check_value(int, "3", path="n") == 3
    assert check_value(float, 2, path="x") == 2.0
    assert check_value(pathlib.Path, "a/b", path="p") == pathlib.Path("a/b")
    assert check_value(tuple[int, int], [1, "2"], path="t") == (1, 2)


def test_check_value_error_names_path_type_value_and_reason() -> None:
    with pytest.raises(ConfigError) as info:
        check_value(list[int], ["a"], path="train.sizes")
    assert info.value.path == "train.sizes"
    assert "expected list[int], got ['a'] (list)" in str(info.value)
    assert "valid integer" in str(info.value)


def test_long_values_are_shortened_in_errors() -> None:
    with pytest.raises(ConfigError) as info:
        check_value(int, "x" * 200, path="n")
    assert "..." in str(info.value)
    assert len(str(info.value)) < 200


def test_any_accepts_everything_unchanged() -> None:
    value = object()
    assert check_value(Any, value, path="v") is value


# ---- placeholders ---------------------------------------------------------------------------


@pytest.mark.parametrize("annotation", [str, pathlib.Path, str | None, pathlib.Path | int])
def test_file_is_accepted_where_a_path_is_expected(annotation: Any) -> None:
    file = nemoflow.File("inputs/x.csv")
    assert check_value(annotation, file, path="data") is file


def test_file_is_refused_for_an_int_parameter() -> None:
    with pytest.raises(ConfigError) as info:
        Config(read_inputs, data="d", out="o", count=nemoflow.File("x"))
    assert info.value.path == "read_inputs.count"
    assert "expected int, got File(path='x') (File), which becomes a path string" in str(info.value)


def test_files_in_configs_keep_their_type() -> None:
    cfg = Config(read_inputs, data=nemoflow.File("a.csv"), out=nemoflow.File("out"))
    assert cfg.data == nemoflow.File("a.csv")
    assert cfg.out == nemoflow.File("out")


def test_list_of_files_is_accepted_for_list_of_str() -> None:
    files = [nemoflow.File("a.csv"), "b.csv", nemoflow.File("c.csv")]
    assert Config(read_many, paths=files).paths == files


def test_list_with_a_wrong_item_names_its_index() -> None:
    with pytest.raises(ConfigError) as info:
        check_value(list[int], [1, nemoflow.File("a")], path="sizes")
    assert info.value.path == "sizes[1]"


def test_files_are_refused_where_no_sequence_is_expected() -> None:
    with pytest.raises(ConfigError, match="expected int, got a list"):
        check_value(int, [nemoflow.File("a")], path="n")


def test_dict_of_files_is_accepted_for_dict_of_str() -> None:
    table = {"train": nemoflow.File("train.csv"), "test": nemoflow.File("test.csv")}
    assert Config(read_table, files=table).files == table
    with pytest.raises(ConfigError, match="expected int, got a dict"):
        check_value(int, table, path="n")


def test_step_output_is_checked_as_a_path_and_step_result_as_anything() -> None:
    output = StepOutput(FakeStep("prepare"), "data.npz")
    assert check_value(pathlib.Path, output, path="data") is output
    with pytest.raises(ConfigError, match="becomes a path string"):
        check_value(int, output, path="n")
    result = StepResult(FakeStep("prepare"))
    assert check_value(int, result, path="n") is result


def test_nested_config_is_checked_for_the_class_it_builds() -> None:
    assert check_value(Model, Config(Model, hidden_size=1), path="m") == Config(Model, hidden_size=1)
    assert Config(maybe_model, model=Config(Model, hidden_size=1)).model.hidden_size == 1
    with pytest.raises(ConfigError, match="expected Model, got a config that builds Trainer"):
        check_value(Model, Config(Trainer), path="m")


def test_partials_and_function_configs_are_not_class_checked() -> None:
    assert check_value(Model, Partial(Trainer), path="m") == Partial(Trainer)
    assert check_value(Model, Config(train), path="m") == Config(train)


@pytest.mark.parametrize("annotation", [Any | None, object, HasForward])
def test_config_is_accepted_for_open_annotations(annotation: Any) -> None:
    cfg = Config(Model, hidden_size=1)
    assert check_value(annotation, cfg, path="m") is cfg
