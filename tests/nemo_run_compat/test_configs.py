"""NeMo Run's ``run.Config`` / ``run.Partial`` through ``import nemoflow as run`` (NeMo Run's test/test_config.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Optional

import pytest

import nemoflow as run
from nemoflow.configs.paths import set_value


@dataclass
class DummyModel:
    hidden: int = 100
    activation: str = "relu"
    seq_length: int = 10


@dataclass
class Optimizer:
    lr: float = 0.1


@run.autoconvert
def dummy_model() -> DummyModel:
    return DummyModel()


@run.autoconvert
def optimizer() -> Optimizer:
    return Optimizer()


def train(model: DummyModel, optim: run.OptionalDefaultConfig[Optimizer] = None):
    return optim


def train_manual(model: DummyModel, optim: Annotated[Optional[Optimizer], run.Config[Optimizer]] = None):  # noqa: UP045
    return optim


def with_falsy_values(count: int = 1, flag: bool = True, label: str = "x") -> tuple[int, bool, str]:
    return count, flag, label


@dataclass
class Data:
    name: str
    value: int


@dataclass
class NestedData:
    data: Data


@dataclass
class Attribute:
    attribute: str = "default"


@dataclass
class SomeObject:
    value_1: int
    value_2: int
    value_3: int


@run.autoconvert
def commonly_used_object() -> SomeObject:
    return SomeObject(value_1=5, value_2=10, value_3=15)


@run.autoconvert(partial=True)
def partial_object(first: int = 1) -> SomeObject:
    return SomeObject(value_1=first, value_2=len("ab"), value_3=3)


class Layer:
    """Not a dataclass: autoconvert still sees the call that made it."""

    def __init__(self, width: int, inner: Layer | None = None) -> None:
        self.width = width
        self.inner = inner


@run.autoconvert
def stacked(width: int) -> Layer:
    return Layer(width=width * 2, inner=Layer(width=width))


@run.autoconvert
def local_executor() -> run.Executor:
    return run.LocalExecutor(env_vars={"SEED": "1"})


# ---- autoconvert -----------------------------------------------------------------------------------


def test_autoconvert_of_an_executor_factory_gives_a_config_that_builds_the_executor() -> None:
    cfg = local_executor()
    assert isinstance(cfg, run.Config)
    assert cfg.env_vars == {"SEED": "1"}
    executor = run.build(cfg)
    assert isinstance(executor, run.LocalExecutor) and executor.env_vars == {"SEED": "1"}


def test_autoconvert_returns_the_config_of_what_the_function_makes() -> None:
    cfg = commonly_used_object()
    assert isinstance(cfg, run.Config)
    assert (cfg.value_1, cfg.value_2, cfg.value_3) == (5, 10, 15)
    assert run.build(cfg) == SomeObject(5, 10, 15)


def test_autoconvert_partial_returns_a_partial_and_builtins_are_still_called() -> None:
    cfg = partial_object(7)
    assert isinstance(cfg, run.Partial)
    assert cfg.value_2 == 2
    assert run.build(cfg)() == SomeObject(7, 2, 3)


def test_autoconvert_makes_nested_calls_configs_too() -> None:
    cfg = stacked(3)
    assert isinstance(cfg.inner, run.Config)
    assert (cfg.width, cfg.inner.width) == (6, 3)
    built = run.build(cfg)
    assert isinstance(built, Layer) and built.inner.width == 3


# ---- OptionalDefaultConfig, dataclass arguments, extra arguments ------------------------------------


def test_resolve_optional() -> None:
    partial = run.Partial(train, model=dummy_model(), optim=optimizer())
    assert run.build(partial)() == run.build(optimizer())


@pytest.mark.parametrize("train_func", [train, train_manual])
def test_default_optional_builds_the_default_object(train_func) -> None:
    partial = run.Partial(train_func, model=dummy_model())
    assert isinstance(partial.optim, run.Config)
    assert run.build(partial)() == Optimizer()


def test_extra_args_are_a_type_error() -> None:
    with pytest.raises(TypeError, match="something"):
        run.Partial(train, model=dummy_model(), optim=optimizer(), something="else")


def test_a_dataclass_argument_becomes_a_config_of_its_fields() -> None:
    partial = run.Partial(NestedData, data=Data(name="test", value=123))
    assert isinstance(partial.data, run.Config)
    assert (partial.data.name, partial.data.value) == ("test", 123)
    assert run.build(partial)() == NestedData(Data("test", 123))


def test_falsy_primitive_args_are_preserved() -> None:
    partial = run.Partial(with_falsy_values, count=0, flag=False, label="")
    assert run.build(partial)() == (0, False, "")


def test_positional_arguments_fill_parameters_in_order() -> None:
    cfg = run.Config(Data, "first", 1)
    assert (cfg.name, cfg.value) == ("first", 1)
    with pytest.raises(TypeError):
        run.Config(Data, "a", 1, 2)


def test_config_of_an_empty_dict_or_dict_builds_a_dict() -> None:
    cfg = run.Config({}, a=1, b=2)
    assert (cfg.a, cfg.b) == (1, 2)
    assert run.build(cfg) == {"a": 1, "b": 2}
    assert run.build(run.Config(dict, x="y")) == {"x": "y"}
    assert run.build(run.Config(dict[str, int], n=3)) == {"n": 3}


# ---- clone, walk, broadcast -----------------------------------------------------------------------


def test_clone_is_an_equal_deep_copy() -> None:
    partial = run.Partial(train, model=dummy_model(), optim=optimizer())
    clone = partial.clone()
    assert clone is not partial and clone == partial
    clone.model.hidden = 5
    assert partial.model.hidden == 100


def test_walk_transforms_every_config_that_has_the_name() -> None:
    partial = run.Partial(train, model=dummy_model(), optim=optimizer())
    new_partial = partial.walk(seq_length=lambda cfg: cfg.seq_length * 2)
    assert new_partial.model.seq_length == 20


def test_broadcast_sets_every_config_that_has_the_name() -> None:
    partial = run.Partial(train, model=dummy_model(), optim=optimizer())
    new_partial = partial.broadcast(hidden=2, lr=0.5)
    assert new_partial.model.hidden == 2
    assert new_partial.optim.lr == 0.5


def test_module_broadcast_takes_the_keyword_form() -> None:
    partial = run.Partial(train, model=dummy_model(), optim=optimizer())
    run.broadcast(partial, hidden=3, lr=0.2)
    assert (partial.model.hidden, partial.optim.lr) == (3, 0.2)


# ---- set_value ------------------------------------------------------------------------------------


def test_set_value_with_valid_key() -> None:
    cfg = run.Config(Attribute)
    set_value(cfg, "attribute", "value")
    assert cfg.attribute == "value"


def test_set_value_on_a_nested_path_and_a_built_object() -> None:
    cfg = run.Partial(train, model=dummy_model())
    run.set_value(cfg, "model.hidden", 7)
    assert cfg.model.hidden == 7
    built = run.build(run.Config(Attribute))
    set_value(built, "attribute", "new_value")
    assert built.attribute == "new_value"


@pytest.mark.parametrize("key", ["non_existent_attribute", "non_existent_key"])
def test_set_value_with_an_unknown_name_is_a_set_value_error(key: str) -> None:
    with pytest.raises(ValueError, match="Could not set"):
        set_value(run.Config(Attribute), key, "value")


def test_set_value_on_a_dict_by_attribute_fails() -> None:
    with pytest.raises(ValueError):
        set_value({"key": "old_value"}, "key", "new_value")


def test_set_value_with_invalid_path() -> None:
    with pytest.raises(ValueError, match="Invalid path"):
        set_value(run.Config(Attribute), "non_existent.attribute", "value")


def test_set_value_with_invalid_path_element() -> None:
    with pytest.raises(ValueError):
        set_value(run.Config(Attribute), "attribute.", "value")


# ---- diff -----------------------------------------------------------------------------------------


def add_object(obj_1: SomeObject, obj_2: SomeObject) -> SomeObject:
    return SomeObject(obj_1.value_1 + obj_2.value_1, obj_1.value_2 + obj_2.value_2, obj_1.value_3 + obj_2.value_3)


def test_diff_names_each_changed_value_by_its_path() -> None:
    old = run.Partial(add_object, obj_1=commonly_used_object(), obj_2=commonly_used_object())
    new = old.clone()
    new.obj_1.value_1 = 1000
    new.obj_2 = run.Config(SomeObject, value_1=5, value_2=10, value_3=16)
    changes = new.diff(old, trim=False)
    assert [(c.path, c.old, c.new) for c in changes] == [
        ("add_object.obj_1.value_1", 5, 1000),
        ("add_object.obj_2.value_3", 15, 16),
    ]
    assert "~ add_object.obj_1.value_1: 5 -> 1000" in str(changes)
    assert str(old.diff(old.clone())) == "no differences"
