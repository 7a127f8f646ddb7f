"""Config errors are nemoflow ``UserError``s and also the builtins NeMo Run raises in the same places."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import nemoflow as run
from nemoflow.configs.serialize import dumps, loads
from nemoflow.errors import ConfigError, UserError


@dataclass
class Model:
    hidden_size: int = 8
    num_heads: int = 2

    def __post_init__(self) -> None:
        assert self.hidden_size % self.num_heads == 0, "hidden_size must be divisible by num_heads"


def needs(x: int) -> int:
    return x


def refuses(x: int) -> int:
    raise ValueError(f"x={x} is out of range")


def test_an_unknown_argument_is_a_type_error_and_a_config_error() -> None:
    with pytest.raises(TypeError) as info:
        run.Config(Model, hiden_size=4)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, UserError)
    assert "did you mean 'hidden_size'" in str(info.value)


def test_setting_or_reading_an_unknown_attribute_is_an_attribute_error() -> None:
    cfg = run.Config(Model)
    with pytest.raises(AttributeError):
        cfg.bogus = 1
    with pytest.raises(AttributeError):
        _ = cfg.bogus
    assert not hasattr(cfg, "bogus")
    assert getattr(cfg, "bogus", "fallback") == "fallback"


def test_an_unset_required_argument_is_an_attribute_error_to_read_and_a_type_error_to_build() -> None:
    cfg = run.Config(needs)
    with pytest.raises(AttributeError, match="has not been set"):
        _ = cfg.x
    with pytest.raises(TypeError, match="missing required argument"):
        run.build(cfg)


def test_a_bad_value_is_a_value_error_naming_the_path() -> None:
    with pytest.raises(ValueError) as info:
        run.Config(Model, hidden_size="many")
    assert isinstance(info.value, ConfigError)
    assert info.value.path.endswith("hidden_size")


def test_a_failing_rule_keeps_its_builtin_kind_when_built() -> None:
    with pytest.raises(AssertionError, match="divisible"):
        run.build(run.Config(Model, hidden_size=8, num_heads=3))
    with pytest.raises(ValueError, match="out of range") as info:
        run.build(run.Config(refuses, x=3))
    assert isinstance(info.value, UserError)


def test_an_unsupported_format_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown config format"):
        dumps(run.Config(Model), "xml")
    with pytest.raises(ValueError):
        loads("x: 1", "ini")


def test_a_script_with_neither_path_nor_inline_is_an_assertion_error_and_a_user_error() -> None:
    with pytest.raises(AssertionError) as info:
        run.Script()
    assert isinstance(info.value, UserError)


def test_a_target_that_is_not_callable_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="function or class"):
        run.Config(3)  # type: ignore[arg-type]


def test_a_nested_error_keeps_its_kind_when_its_path_grows() -> None:
    with pytest.raises(TypeError) as info:
        loads("_target_: test_errors.Model\nhiden_size: 4\n", "yaml")
    assert isinstance(info.value, ConfigError)
    with pytest.raises(ValueError):
        loads("_target_: test_errors.Model\nhidden_size: many\n", "yaml")
