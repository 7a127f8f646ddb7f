"""Tests for nemoflow.configs.core: Config, Partial, Script, build."""

from __future__ import annotations

import copy
import functools
import typing

import pytest

import nemoflow
from nemoflow.configs.core import Config, Partial, Script
from nemoflow.errors import ConfigError, UserError

from targets_for_tests import (
    Model,
    Outer,
    Positive,
    Trainer,
    anything,
    takes_model_config,
    train,
    with_build,
    with_builds_instance,
    with_method_names,
)


@pytest.fixture
def trainer() -> Config[Trainer]:
    return Config(Trainer, model=Config(Model, hidden_size=8), lr=0.1)


# ---- construction and access ---------------------------------------------------------------


def test_arguments_and_defaults_read_by_attribute(trainer: Config[Trainer]) -> None:
    assert trainer.lr == 0.1
    assert trainer.epochs == 1  # the target's default
    assert trainer.model.hidden_size == 8
    assert trainer.model.dropout == 0.1


def test_unset_required_argument_is_an_attribute_error_naming_the_path() -> None:
    cfg = Config(Trainer, model=Config(Model))
    with pytest.raises(AttributeError, match=r"model\.hidden_size has not been set"):
        _ = cfg.model.hidden_size


def test_target_must_be_callable() -> None:
    with pytest.raises(ConfigError, match="must be a function or class"):
        Config(42)  # type: ignore[arg-type]


def test_dir_lists_the_target_parameters(trainer: Config[Trainer]) -> None:
    assert {"model", "lr", "epochs"} <= set(dir(trainer))


def test_repr_names_target_and_arguments() -> None:
    assert repr(Config(Model, hidden_size=8)) == "Config[Model](hidden_size=8)"
    assert repr(Partial(train, lr=0.5)) == "Partial[train](lr=0.5)"


def test_delete_restores_the_default(trainer: Config[Trainer]) -> None:
    del trainer.lr
    assert trainer.lr == 1e-3
    with pytest.raises(AttributeError, match="lr has not been set"):
        del trainer.lr


# ---- validation ----------------------------------------------------------------------------


def test_wrong_type_names_path_expected_type_and_value() -> None:
    with pytest.raises(ConfigError) as info:
        Config(Model, hidden_size="big")
    text = str(info.value)
    assert text.startswith("Model.hidden_size: ")  # a config that is not a step yet is named by its target
    assert "expected int" in text
    assert "'big' (str)" in text
    assert info.value.path == "Model.hidden_size"


def test_wrong_type_on_nested_assignment_names_the_full_path(trainer: Config[Trainer]) -> None:
    with pytest.raises(ConfigError) as info:
        trainer.model.hidden_size = "x"
    assert info.value.path == "Trainer.model.hidden_size"
    assert str(info.value).startswith("Trainer.model.hidden_size: expected int, got 'x' (str)")
    assert trainer.model.hidden_size == 8  # a refused value is not stored


def test_deeply_nested_assignment_names_the_full_path() -> None:
    outer = Config(Outer, trainer=Config(Trainer, model=Config(Model, hidden_size=8)))
    with pytest.raises(ConfigError) as info:
        outer.trainer.model.hidden_size = "x"
    assert info.value.path == "Outer.trainer.model.hidden_size"


def test_config_assigned_later_takes_its_place_in_the_path(trainer: Config[Trainer]) -> None:
    trainer.model = Config(Model, hidden_size=4)
    with pytest.raises(ConfigError, match=r"^Trainer\.model\.dropout: expected float"):
        trainer.model.dropout = "high"


def test_unknown_argument_suggests_the_closest_name() -> None:
    with pytest.raises(ConfigError) as info:
        Config(Model, hiden_size=3)
    assert info.value.path == "Model.hiden_size"
    assert "has no argument 'hiden_size'" in str(info.value)
    assert "did you mean 'hidden_size'?" in str(info.value)


def test_unknown_nested_assignment_names_the_path_and_suggests(trainer: Config[Trainer]) -> None:
    with pytest.raises(ConfigError) as info:
        trainer.model.dropuot = 0.2
    assert str(info.value).startswith("Trainer.model.dropuot: ")
    assert "did you mean 'dropout'?" in str(info.value)


def test_unknown_argument_without_a_close_name_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="its arguments are: hidden_size, dropout"):
        Config(Model, zzz=1)


def test_config_error_is_a_user_error() -> None:
    with pytest.raises(UserError) as info:
        Config(Model, hidden_size=[1])
    assert info.value.exit_code == 2


def test_int_is_coerced_to_float() -> None:
    cfg = Config(Trainer, model=Config(Model, hidden_size=1), lr=1)
    assert type(cfg.lr) is float
    assert cfg.lr == 1.0


def test_numeric_string_is_coerced_to_int() -> None:
    cfg = Config(Model, hidden_size="3")
    assert cfg.hidden_size == 3
    assert type(cfg.hidden_size) is int


def test_nested_config_of_the_wrong_class_is_refused() -> None:
    with pytest.raises(ConfigError, match="expected Model, got a config that builds Trainer"):
        Config(Trainer, model=Config(Trainer, model=Config(Model, hidden_size=1)))


# ---- reserved and unusual parameter names --------------------------------------------------


def test_parameter_named_build_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        Config(with_build, build=1)
    assert "parameter named 'build', which is a config method" in str(info.value)
    assert "nemoflow.build(cfg)" in str(info.value)


def test_parameters_named_walk_run_executor_work() -> None:
    cfg = Config(with_method_names, walk=1, run="r", executor="e")
    assert (cfg.walk, cfg.run, cfg.executor) == (1, "r", "e")
    cfg.walk = 2
    assert nemoflow.build(cfg) == (2, "r", "e")


# ---- build ---------------------------------------------------------------------------------


def test_build_is_recursive(trainer: Config[Trainer]) -> None:
    built = trainer.build()
    assert built == Trainer(model=Model(hidden_size=8), lr=0.1)
    assert nemoflow.build(trainer) == built


def test_build_after_nested_assignment(trainer: Config[Trainer]) -> None:
    trainer.model.hidden_size = 1024
    assert trainer.build().model.hidden_size == 1024


def test_build_goes_through_lists_and_dicts() -> None:
    cfg = Config(anything, layers=[Config(Model, hidden_size=1)], named={"b": Config(Model, hidden_size=2)})
    assert cfg.build() == {"layers": [Model(hidden_size=1)], "named": {"b": Model(hidden_size=2)}}


def test_partial_builds_to_functools_partial() -> None:
    cfg = Partial(train, model=Config(Model, hidden_size=2), lr=0.5)
    fn = cfg.build()
    assert isinstance(fn, functools.partial)
    assert fn.func is train
    assert fn.keywords == {"model": Model(hidden_size=2), "lr": 0.5}
    assert fn(steps=3) == {"model": Model(hidden_size=2), "lr": 0.5, "steps": 3}


def test_partial_may_leave_required_arguments_unset() -> None:
    fn = Partial(train, lr=0.5).build()
    assert fn(model=None) == {"model": None, "lr": 0.5, "steps": 10}


def test_post_init_error_surfaces_at_build_as_config_error() -> None:
    cfg = Config(anything, p=Config(Positive, value=-1))  # construction does not run the target
    with pytest.raises(ConfigError) as info:
        cfg.build()
    assert info.value.path == "p"
    assert "building Positive failed: value must be positive, got -1" in str(info.value)


def test_missing_required_argument_fails_at_build_naming_the_path() -> None:
    cfg = Config(Trainer, model=Config(Model))
    with pytest.raises(ConfigError) as info:
        nemoflow.build(cfg)
    assert info.value.path == "model"
    assert "Model is missing required argument(s): hidden_size" in str(info.value)


# ---- generics, copies, equality ------------------------------------------------------------


def test_config_is_generic_over_what_it_builds() -> None:
    cfg: Config[Model] = Config[Model](Model, hidden_size=4)
    assert isinstance(cfg, Config)
    assert typing.get_args(Config[Model]) == (Model,)
    assert cfg.build() == Model(hidden_size=4)
    assert cfg == Config(Model, hidden_size=4)


def test_config_annotation_accepts_a_config_and_refuses_other_values() -> None:
    assert Config(takes_model_config, model=Config(Model, hidden_size=1)).model.hidden_size == 1
    with pytest.raises(ConfigError, match=r"^takes_model_config\.model: expected"):
        Config(takes_model_config, model=3)


def test_equality_compares_kind_target_and_arguments(trainer: Config[Trainer]) -> None:
    same = Config(Trainer, lr=0.1, model=Config(Model, hidden_size=8))
    assert trainer == same
    same.model.dropout = 0.5
    assert trainer != same
    assert Config(train, lr=0.1) != Partial(train, lr=0.1)
    assert Config(Model, hidden_size=1) != Config(Positive, value=1)


def test_configs_are_unhashable(trainer: Config[Trainer]) -> None:
    with pytest.raises(TypeError):
        hash(trainer)


def test_shallow_copy_shares_nested_configs(trainer: Config[Trainer]) -> None:
    clone = copy.copy(trainer)
    assert clone == trainer
    clone.lr = 0.2
    assert trainer.lr == 0.1
    clone.model.hidden_size = 16
    assert trainer.model.hidden_size == 16


def test_deepcopy_is_independent(trainer: Config[Trainer]) -> None:
    clone = copy.deepcopy(trainer)
    assert clone == trainer
    clone.model.hidden_size = 16
    assert trainer.model.hidden_size == 8
    assert clone != trainer
    with pytest.raises(ConfigError, match=r"^Trainer\.model\.hidden_size:"):
        clone.model.hidden_size = "x"


def test_deepcopy_keeps_shared_subconfigs_shared() -> None:
    shared = Config(Model, hidden_size=2)
    clone = copy.deepcopy(Config(anything, a=shared, b=shared))
    assert clone.a is clone.b
    assert clone.a is not shared


def test_partial_decorator_makes_configs_and_keeps_the_function() -> None:
    fn = nemoflow.partial(train)
    assert fn is train
    assert fn.partial(lr=0.1) == Partial(train, lr=0.1)
    assert fn.config(lr=0.1) == Config(train, lr=0.1)


# ---- Script --------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{}, {"path": "run.sh", "inline": "echo hi"}])
def test_script_needs_exactly_one_of_path_and_inline(kwargs: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"exactly one of path=\.\.\. or inline=\.\.\."):
        Script(**kwargs)


def test_script_accepts_strings_numbers_and_files() -> None:
    script = Script("run.sh", args=["--n", 3, 0.5, nemoflow.File("data.csv")], env={"SEED": "1"})
    assert script.args[3] == nemoflow.File("data.csv")
    assert script.command() == ["bash", "run.sh", *script.args]


def test_script_refuses_other_argument_types() -> None:
    with pytest.raises(ConfigError) as info:
        Script(inline="echo", args=["ok", {"a": 1}])
    assert info.value.path == "args[1]"
    assert "expected str, number, File or step output, got {'a': 1} (dict)" in str(info.value)


def test_script_refuses_non_string_env_values() -> None:
    with pytest.raises(ConfigError, match=r"^env\.SEED: expected str, got 1 \(int\)"):
        Script(inline="echo", env={"SEED": 1})  # type: ignore[dict-item]


def test_script_refuses_bad_values_on_assignment() -> None:
    script = Script(inline="echo")
    with pytest.raises(ConfigError, match=r"^args\[0\]:"):
        script.args = [object()]
    with pytest.raises(ConfigError, match=r"^env\.X:"):
        script.env = {"X": 1}
    assert script.args == []
    assert script.env == {}


def test_script_unknown_field_is_refused_with_a_suggestion() -> None:
    script = Script(inline="echo")
    with pytest.raises(ConfigError, match=r"^agrs: Script has no field 'agrs' \(did you mean 'args'\?\)"):
        script.agrs = ["x"]


def test_inline_script_commands() -> None:
    assert Script(inline="echo $1", args=["a"]).command() == ["bash", "-c", "echo $1", "nemoflow-script", "a"]
    assert Script(inline="print(1)", entrypoint="python").command() == ["python", "-c", "print(1)"]


def test_script_equality() -> None:
    assert Script(inline="echo", args=[1]) == Script(inline="echo", args=[1])
    assert Script(inline="echo", args=[1]) != Script(inline="echo", args=[2])


def test_any_name_a_config_itself_uses_is_refused() -> None:
    with pytest.raises(ConfigError, match="parameter named 'builds_instance'"):
        Config(with_builds_instance, builds_instance=True)


def test_nested_paths_follow_the_tree_built_inside_out() -> None:
    model = Config(Model, hidden_size=1)
    trainer = Config(Trainer, model=model)
    outer = Config(Outer, trainer=trainer)
    Config(anything, runs=[outer])
    with pytest.raises(ConfigError) as info:
        model.hidden_size = "x"
    assert info.value.path == "anything.runs[0].trainer.model.hidden_size"


def test_reading_an_unknown_name_is_an_attribute_error_with_a_suggestion(trainer: Config[Trainer]) -> None:
    with pytest.raises(AttributeError, match=r"Trainer\.model\.hiden_size: .*did you mean 'hidden_size'\?"):
        _ = trainer.model.hiden_size
    assert not hasattr(trainer, "optimizer")
    assert getattr(trainer, "optimizer", None) is None
