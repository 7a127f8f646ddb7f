"""The override grammar: parsing, applying to one config and to a pipeline, errors; and through the real CLI."""

from __future__ import annotations

import contextlib
import json
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nemoflow.cli.overrides import (
    LoadFile,
    Override,
    OverrideError,
    apply_overrides,
    apply_to_experiment,
    config_paths,
    parse_override,
    split_reserved,
)
from nemoflow.configs.core import Config, Partial
from nemoflow.configs.serialize import save
from nemoflow.errors import ConfigError, UserError
from nemoflow.pipeline.experiment import Experiment

from script_helpers import copy_script, resolved, run_script
from targets_for_tests import Model, Trainer, anything, shaped, train

# ---- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "path", "op", "value", "bare"),
    [
        ("model.hidden_size=1024", ("model", "hidden_size"), "=", 1024, False),
        ("lr=2e-4", ("lr",), "=", 2e-4, False),
        ("x*=2", ("x",), "*=", 2, False),
        ("x+=16", ("x",), "+=", 16, False),
        ("x-=1", ("x",), "-=", 1, False),
        ("x/=2", ("x",), "/=", 2, False),
        ("x=None", ("x",), "=", None, False),
        ("flag=True", ("flag",), "=", True, False),
        ("xs=[1, 2]", ("xs",), "=", [1, 2], False),
        ("d={'a': 1}", ("d",), "=", {"a": 1}, False),
        ("t=(3, 3)", ("t",), "=", (3, 3), False),
        ("s='a b'", ("s",), "=", "a b", False),
        ("data_path=/d", ("data_path",), "=", "/d", True),
        ("act=relu", ("act",), "=", "relu", True),
        ("model=pkg.mod.fn", ("model",), "=", "pkg.mod.fn", True),
        ("when=2024-01-01", ("when",), "=", "2024-01-01", True),
        ("*.seed=1", ("*", "seed"), "=", 1, False),
        ("neg=-3", ("neg",), "=", -3, False),
    ],
)
def test_parse_every_form(token: str, path: tuple[str, ...], op: str, value: Any, bare: bool) -> None:
    parsed = parse_override(token)
    assert isinstance(parsed, Override)
    assert (parsed.path, parsed.op, parsed.value, parsed.bare) == (path, op, value, bare)


def test_parse_factory_calls_and_files() -> None:
    call = parse_override("model=small_model(4, hidden_size=3, name='x')")
    assert isinstance(call, Override)
    assert (call.value.name, call.value.args, dict(call.value.kwargs)) == (
        "small_model",
        (4,),
        {"hidden_size": 3, "name": "x"},
    )
    assert parse_override("m=pkg.mod.make()").value.name == "pkg.mod.make"
    assert parse_override("@runs/a.yaml") == LoadFile("@runs/a.yaml", "runs/a.yaml")


@pytest.mark.parametrize(
    ("token", "column", "words"),
    [
        ("lr==3", 3, "unexpected '='"),
        ("a..b=1", 2, "expected a parameter name"),
        ("=3", 0, "expected a parameter name"),
        ("lr", 2, "missing '='"),
        ("x**=2", 1, "unexpected '*'"),
        ("x=", 2, "missing value"),
        ("tags=[a,b]", 6, "not a Python literal: a"),
        ("x=(1,2", 2, "never closed"),
        ("m=small(x=y)", 10, "not a Python literal"),
        ("a.*.b=1", 2, "expected a parameter name"),
        ("@", 1, "file name"),
        ("x y=1", 1, "unexpected ' '"),
    ],
)
def test_malformed_tokens_say_where_they_break(token: str, column: int, words: str) -> None:
    with pytest.raises(OverrideError) as caught:
        parse_override(token)
    assert caught.value.column == column
    assert words in str(caught.value)
    assert str(caught.value).endswith(f"    {token}\n    {' ' * column}^")


# ---- one config -------------------------------------------------------------------------------


@dataclass
class Knobs:
    """A target with one parameter of each kind the round-trip test writes."""

    count: int = 0
    rate: float = 0.5
    name: str = "n"
    flag: bool = False
    sizes: list[int] | None = None
    table: dict[str, int] | None = None
    maybe: int | None = None
    pair: tuple[int, int] = (0, 0)


def test_set_update_and_nested_configs_from_dataclass_types() -> None:
    cfg = apply_overrides(
        Partial(train),
        ["model.hidden_size=8", "lr=2e-4", "model.hidden_size*=4", "steps+=16", "steps-=1", "model.dropout/=2"],
    )
    assert cfg.model == Config(Model, hidden_size=32, dropout=0.05)
    assert (cfg.lr, cfg.steps) == (2e-4, 25)


def test_values_convert_to_the_parameter_type() -> None:
    cfg = apply_overrides(Config(Knobs), ["rate=1", "name=1.10", "name+=x", "maybe=None", "pair=[1, 2]", "flag=true"])
    assert (cfg.rate, cfg.name, cfg.maybe, cfg.pair, cfg.flag) == (1.0, "1.10x", None, (1, 2), True)
    assert type(cfg.rate) is float
    cfg = apply_overrides(Config(Knobs), ["sizes=[1, 2]", "sizes+=[3]", "table={'a': 1}", "count/=1"])
    assert (cfg.sizes, cfg.table, cfg.count) == ([1, 2, 3], {"a": 1}, 0)


def test_a_default_config_is_copied_not_changed() -> None:
    default = Config(Model, hidden_size=2)

    def takes(model: Model = default) -> Model:  # type: ignore[assignment]
        return model

    cfg = apply_overrides(Partial(takes), ["model.hidden_size=3"])
    assert cfg.model.hidden_size == 3 and default.hidden_size == 2


def test_a_dataclass_instance_default_becomes_a_config() -> None:
    def takes(trainer: Trainer = Trainer(Model(4))) -> Trainer:  # noqa: B008
        return trainer

    cfg = apply_overrides(Partial(takes), ["trainer.model.hidden_size=5", "trainer.lr*=10"])
    assert cfg.trainer == Config(Trainer, model=Config(Model, hidden_size=5, dropout=0.1), lr=1e-2, epochs=1)


@pytest.mark.parametrize(
    ("token", "words"),
    [
        ("model.hiden_size=3", "did you mean 'model.hidden_size'"),
        ("hidden_size=3", "did you mean 'model.hidden_size'"),
        ("model.hidden_size=abc", "expected int, got 'abc'"),
        ("model.hidden_size=1.5", "expected int"),
        ("lr=[1]", "expected float"),
        ("lr.x=1", "not a config"),
        ("steps+=abc", "cannot apply +="),
        ("model.hidden_size+=1", "has no value to update"),
        ("steps/=0", "division by zero"),
        ("model=no_such_factory(x=1)", "no factory named 'no_such_factory'"),
        ("model=nowhere.at_all", "expected Model"),
        ("model=targets_for_tests.square", "expected Model"),  # a function that makes no config is never called
    ],
)
def test_bad_overrides_are_config_errors_with_a_reason(token: str, words: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        apply_overrides(Partial(train), [token])
    assert words in str(caught.value)
    assert caught.value.where == token


def test_factories_by_registered_name_by_call_and_by_import_path() -> None:
    from nemoflow.cli.entrypoints import factory

    @factory
    def tiny_model(hidden_size: int = 1) -> Config[Model]:
        return Config(Model, hidden_size=hidden_size)

    assert apply_overrides(Partial(train), ["model=tiny_model"]).model == Config(Model, hidden_size=1)
    assert apply_overrides(Partial(train), ["model=tiny_model(hidden_size=7)"]).model.hidden_size == 7
    by_class = apply_overrides(Partial(train), ["model=targets_for_tests.Model(hidden_size=9)"]).model
    assert by_class == Config(Model, hidden_size=9)
    # a factory for another type does not apply; a text parameter keeps the text
    assert apply_overrides(Config(shaped), ["table={1: 'tiny_model'}"]).table == {1: "tiny_model"}
    with pytest.raises(ConfigError, match="did you mean 'tiny_model'"):
        apply_overrides(Partial(train), ["model=tiny_mode"])


def test_files_load_a_whole_config_or_a_mapping(tmp_path: Path) -> None:
    save(Partial(train, model=Config(Model, hidden_size=3), lr=0.1), tmp_path / "run.yaml")
    (tmp_path / "values.json").write_text(json.dumps({"lr": 0.2, "model": {"hidden_size": 6}}))
    save(Partial(train, model=Config(Model, hidden_size=4), lr=0.3), tmp_path / "run.toml")
    cfg = apply_overrides(Partial(train), [f"@{tmp_path / 'run.yaml'}", "lr*=2"])
    assert cfg == Partial(train, model=Config(Model, hidden_size=3), lr=0.2)
    cfg = apply_overrides(cfg, [f"@{tmp_path / 'values.json'}"])
    assert (cfg.lr, cfg.model.hidden_size) == (0.2, 6)
    assert apply_overrides(Partial(train), [f"@{tmp_path / 'run.toml'}"]).lr == 0.3
    with pytest.raises(ConfigError, match="holds a config of train, not of shaped"):
        apply_overrides(Partial(shaped), [f"@{tmp_path / 'run.yaml'}"])
    with pytest.raises(UserError, match="does not exist"):
        apply_overrides(Partial(train), ["@missing.yaml"])


def test_broadcast_in_one_tree_sets_every_config_that_takes_the_key() -> None:
    cfg = Partial(anything, a=Config(Trainer, model=Config(Model, hidden_size=1)), b=Config(Model, hidden_size=2))
    apply_overrides(cfg, ["*.hidden_size=5", "*.dropout*=2"])
    assert (cfg.a.model.hidden_size, cfg.b.hidden_size, cfg.b.dropout) == (5, 5, 0.2)
    with pytest.raises(ConfigError, match="did you mean 'hidden_size'"):
        apply_overrides(cfg, ["*.hiden_size=1"])
    with pytest.raises(ConfigError):  # refused somewhere: changed nowhere
        apply_overrides(cfg, ["*.hidden_size=x"])
    assert cfg.b.hidden_size == 5


def test_config_paths_lists_nested_parameters_set_or_not() -> None:
    paths = config_paths(Partial(train, model=Config(Model, hidden_size=1)))
    assert {"model", "model.hidden_size", "model.dropout", "lr", "steps"} <= set(paths)


def test_reserved_words_match_only_exact_first_keys() -> None:
    tokens = ["executor=local", "executor.env_vars={}", "executor_name=x", "run_id=3", "run.direct=True", "plugins=a.B"]
    reserved, rest = split_reserved(tokens)
    assert [r.token for r in reserved] == ["executor=local", "executor.env_vars={}", "run.direct=True", "plugins=a.B"]
    assert rest == ["executor_name=x", "run_id=3"]
    reserved, rest = split_reserved(["executor=fast", "run=1"], taken={"executor", "run"})
    assert reserved == [] and rest == ["executor=fast", "run=1"]


# ---- pipelines ----------------------------------------------------------------------------------


def _experiment() -> Experiment:
    exp = Experiment("e")
    exp.add(Partial(train, model=Config(Model, hidden_size=1), lr=0.1), name="train-small")
    exp.add(Partial(train, model=Config(Model, hidden_size=2), lr=0.1), name="train-small.v2")
    exp.add(Partial(shaped, shape=(1, 1), table={}), name="shape")
    return exp


def test_pipeline_overrides_address_a_step_by_its_longest_name() -> None:
    exp = _experiment()
    apply_to_experiment(exp, ["train-small.lr=0.5", "train-small.v2.model.hidden_size+=1"])
    assert exp.steps["train-small"].task.lr == 0.5
    assert exp.steps["train-small.v2"].task.lr == 0.1
    assert exp.steps["train-small.v2"].task.model.hidden_size == 3


def test_pipeline_broadcast_and_its_errors() -> None:
    exp = _experiment()
    apply_to_experiment(exp, ["*.hidden_size=9"])
    assert [exp.steps[n].task.model.hidden_size for n in ("train-small", "train-small.v2")] == [9, 9]
    with pytest.raises(ConfigError, match=r"no step named 'train-smal'.*did you mean 'train-small'"):
        apply_to_experiment(exp, ["train-smal.lr=1"])
    with pytest.raises(ConfigError, match="starts with the step"):
        apply_to_experiment(exp, ["lr=1"])
    with pytest.raises(ConfigError, match=re.escape("did you mean 'train-small.lr'")):
        apply_to_experiment(exp, ["train-small.lrr=1"])
    with pytest.raises(ConfigError, match="no config takes 'nothing'"):
        apply_to_experiment(exp, ["*.nothing=1"])


# ---- properties ---------------------------------------------------------------------------------

_TEXT = st.text(alphabet=string.ascii_letters + string.digits + "_-./ ", min_size=0, max_size=12)
_VALUES = st.one_of(
    st.tuples(st.just("count"), st.integers(-(10**12), 10**12)),
    st.tuples(st.just("rate"), st.floats(allow_nan=False, allow_infinity=False)),
    st.tuples(st.just("name"), _TEXT),
    st.tuples(st.just("flag"), st.booleans()),
    st.tuples(st.just("sizes"), st.none() | st.lists(st.integers(-1000, 1000), max_size=5)),
    st.tuples(st.just("table"), st.none() | st.dictionaries(_TEXT, st.integers(-9, 9), max_size=3)),
    st.tuples(st.just("maybe"), st.none() | st.integers()),
    st.tuples(st.just("pair"), st.tuples(st.integers(-99, 99), st.integers(-99, 99))),
)


@settings(max_examples=300, deadline=None)
@given(_VALUES, st.booleans())
def test_valid_overrides_round_trip(item: tuple[str, Any], bare: bool) -> None:
    name, value = item
    text = repr(value)
    if (
        bare
        and isinstance(value, str)
        and value
        and value.strip() == value
        and value[0] not in "[{(\"'="
        and value != "None"
    ):
        text = value  # a word may be written without quotes
    cfg = apply_overrides(Config(Knobs), [f"{name}={text}"])
    assert getattr(cfg, name) == value
    assert type(getattr(cfg, name)) is type(value)


_JUNK = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30) | st.from_regex(
    r"[a-z*@.]{0,4}[.=+*/-]{0,3}[=\[\]{}()'\"a-z0-9,.:@ -]{0,12}", fullmatch=True
)


@settings(max_examples=1000, deadline=None)
@given(st.lists(_JUNK, max_size=3))
def test_junk_raises_only_user_errors(tokens: list[str]) -> None:
    with contextlib.suppress(UserError):
        apply_overrides(Partial(train), tokens)


# ---- through the real command line ---------------------------------------------------------------


@pytest.fixture(scope="module")
def script_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("script")
    copy_script(folder)
    return folder


def test_every_form_through_the_cli(script_dir: Path) -> None:
    config = resolved(
        script_dir,
        "model=small_model(hidden_size=3)",
        "model.dropout/=2",
        "training.lr=2e-4",
        "training.batch_size+=16",
        "training.steps*=3",
        "training.steps-=1",
        "optim=adam",
        "data_path=/d",
        "tags=['a', 'b']",
        "table={'x': 1}",
        "shape=(2, 3)",
        "version=1.10",
        "run_id=7",
        "executor_name=slurm",
    )
    assert config["model"] == {"_target_": "train.ModelConfig", "activation": "relu", "dropout": 0.05, "hidden_size": 3}
    assert config["training"] == {"_target_": "train.Training", "batch_size": 48, "lr": 2e-4, "steps": 29}
    assert config["optim"] == {"_target_": "train.Optim", "momentum": 0.9, "name": "adam"}
    assert config["tags"] == ["a", "b"] and config["table"] == {"x": 1} and config["shape"] == {"_tuple_": [2, 3]}
    assert (config["data_path"], config["version"], config["run_id"], config["executor_name"]) == (
        "/d",
        "1.10",
        7,
        "slurm",
    )
    assert resolved(script_dir, "model=train.big_model", "optim=None")["model"]["hidden_size"] == 1024


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["lr==3"], ["lr==3", "unexpected '='", "   ^"]),
        (["model.hiden_size=3"], ["did you mean 'model.hidden_size'"]),
        (["training.steps=many"], ["expected int"]),
        (["model=smal_model"], ["did you mean 'small_model'"]),
        (["tags=[a,b]"], ["not a Python literal", "quote strings"]),
        (["--fatcory", "quick"], ["unknown option '--fatcory'", "--factory"]),
        (["executor=locl"], ["did you mean 'local'"]),
    ],
)
def test_bad_overrides_through_the_cli_exit_2_without_a_traceback(
    script_dir: Path, args: list[str], words: list[str]
) -> None:
    proc = run_script(*args, "--dryrun", cwd=script_dir)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    for word in words:
        assert word in proc.stderr
    assert not (script_dir / "targets").exists()


def test_debug_shows_the_traceback(script_dir: Path) -> None:
    proc = run_script("lr==3", "--debug", cwd=script_dir)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "OverrideError" in proc.stderr


_CLI_JUNK = st.text(alphabet=string.printable.strip() + " é", min_size=1, max_size=20).filter(
    lambda t: not t.startswith("-") and not t.startswith("@")
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_CLI_JUNK)
def test_junk_through_the_cli_never_prints_a_traceback(script_dir: Path, junk: str) -> None:
    proc = run_script(junk, "--dryrun", cwd=script_dir)
    assert proc.returncode in (0, 2), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
