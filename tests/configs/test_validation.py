"""Tests for nemoflow.configs.validation: signatures and value checks, placeholders included."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pathlib
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any, Protocol

import pytest

import nemoflow
from nemoflow.configs.core import Config, Partial
from nemoflow.configs.refs import StepOutput, StepResult
from nemoflow.configs.validation import check_value, signature_of
from nemoflow.errors import ConfigError

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


# ---- string annotations (``from __future__ import annotations``) ----------------------------
#
# Each test writes a module to tmp_path, as a user's code would be: annotations are strings that
# name classes defined later in the module, names imported only for type checkers, class-scope names.

STRING_ANNOTATED = """
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import attrs
import pydantic

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor
    from torch.optim import Optimizer


def train(
    model: ModelConfig,
    lr: float = 0.1,
    layers: list[int] | None = None,
    opt: Optimizer = None,
    head: Head | None = None,
) -> float:
    return lr


def only_unresolvable(secret: Tensor, n: int = 1) -> None: ...


def unresolvable_parts(arr: np.ndarray | None = None, ts: list[Tensor] = (), maybe: Optimizer | None = None) -> None: ...


def constrained(n: Annotated[int, pydantic.Field(ge=0)] = 0, m: Annotated[int, {"doc": "unhashable"}] = 1) -> None: ...


@dataclass
class ModelConfig:
    hidden: int
    act: str = "tanh"
    inner: Inner | None = None


@dataclass
class Inner:
    depth: int = 1
    back: ModelConfig | None = None


class Head(pydantic.BaseModel):
    size: int
    sub: SubHead | None = None


class SubHead(pydantic.BaseModel):
    k: Annotated[int, pydantic.Field(ge=0)] = 0


class Broken(pydantic.BaseModel):  # can never be complete: Tensor does not exist at run time
    t: Tensor
    n: int = 0


@dataclass
class HalfBroken:
    t: Tensor | None = None
    n: int = 0


def takes_broken(b: Broken | None = None, h: HalfBroken | None = None) -> None: ...


@attrs.define
class AttrsThing:
    part: Part
    n: int = 1


@attrs.define
class Part:
    k: int = 0


class Trainer:
    class Options(pydantic.BaseModel):
        depth: int = 1

    def __init__(self, model: ModelConfig, epochs: int = 1, opt: Optimizer | None = None) -> None:
        self.model = model
        self.epochs = epochs

    def fit(self, steps: int, opts: Options | None = None) -> int:
        return steps

    @classmethod
    def make(cls, epochs: int, model: ModelConfig | None = None) -> Trainer:
        return cls(model, epochs)

    @staticmethod
    def check(n: int, opts: Options | None = None) -> None: ...

    def list(self) -> list[str]: ...

    def load(self, ids: list[int]) -> None: ...  # list: the builtin, not the method above


def decorate(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


@decorate
def wrapped(n: int, inner: Inner | None = None) -> None: ...
"""


@pytest.fixture
def strmod(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The module above, imported under a name of its own (signatures are cached per target)."""
    name = "strmod_" + re.sub(r"\W", "_", request.node.name)
    (tmp_path / f"{name}.py").write_text(STRING_ANNOTATED)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    yield module
    sys.modules.pop(name, None)


def test_string_annotations_resolve_in_the_target_module(strmod: Any) -> None:
    params = signature_of(strmod.train).params
    assert params["model"].annotation is strmod.ModelConfig  # defined after train
    assert params["lr"].annotation is float
    assert params["layers"].annotation == list[int] | None
    assert params["opt"].annotation is Any  # imported only under TYPE_CHECKING
    assert params["head"].annotation == strmod.Head | None


def test_string_annotated_function_validates_and_coerces(strmod: Any) -> None:
    cfg = Partial(strmod.train, model=Config(strmod.ModelConfig, hidden="3"), lr="0.3", layers=["1", 2])
    assert (cfg.lr, cfg.layers, cfg.model.hidden) == (0.3, [1, 2], 3)
    built = nemoflow.build(Config(strmod.train, model=Config(strmod.ModelConfig, hidden=3), lr="0.5"))
    assert built == 0.5


def test_wrong_value_for_string_annotation_is_a_config_error(strmod: Any) -> None:
    with pytest.raises(ConfigError) as info:
        Partial(strmod.train, lr="abc")
    assert info.value.path == "train.lr"
    assert "expected float, got 'abc' (str)" in str(info.value)
    with pytest.raises(ConfigError) as info:
        Partial(strmod.train, layers=[1, "x"])
    assert info.value.path == "train.layers"
    assert "expected list[int] | None" in str(info.value)


def test_nested_config_for_a_string_annotated_dataclass_is_checked(strmod: Any) -> None:
    cfg = Partial(strmod.train, model=Config(strmod.ModelConfig, hidden=4, inner=Config(strmod.Inner, depth="2")))
    assert cfg.model.inner.depth == 2
    with pytest.raises(ConfigError, match="expected ModelConfig, got a config that builds Inner") as info:
        Partial(strmod.train, model=Config(strmod.Inner))
    assert info.value.path == "train.model"
    with pytest.raises(ConfigError) as info:
        Partial(strmod.train, model=Config(strmod.ModelConfig, hidden="big"))
    assert info.value.path == "ModelConfig.hidden"  # checked when made, before it has a place


def test_type_checking_only_names_do_not_crash(strmod: Any) -> None:
    anything = object()
    assert Partial(strmod.train, opt=anything).opt is anything
    cfg = Partial(strmod.only_unresolvable, secret=anything, n="2")
    assert (cfg.secret, cfg.n) == (anything, 2)  # the other parameters are still checked
    with pytest.raises(ConfigError, match="expected int"):
        Partial(strmod.only_unresolvable, n="two")


def test_unresolvable_names_inside_an_annotation_stand_for_any(strmod: Any) -> None:
    params = signature_of(strmod.unresolvable_parts).params
    assert params["arr"].annotation is Any  # np.ndarray: nothing to look the attribute up on
    assert params["ts"].annotation == list[Any]
    assert params["maybe"].annotation == Any | None
    cfg = Partial(strmod.unresolvable_parts, arr=[1], ts=(1, "a"), maybe="x")
    assert (cfg.arr, cfg.ts, cfg.maybe) == ([1], [1, "a"], "x")
    with pytest.raises(ConfigError, match="expected list") as info:
        Partial(strmod.unresolvable_parts, ts=5)
    assert info.value.path == "unresolvable_parts.ts"


def test_pydantic_models_with_forward_references(strmod: Any) -> None:
    cfg = Partial(strmod.train, head={"size": "2", "sub": {"k": "1"}})
    assert cfg.head == strmod.Head(size=2, sub=strmod.SubHead(k=1))
    with pytest.raises(ConfigError) as info:
        Partial(strmod.train, head={"size": "x"})
    assert info.value.path == "train.head"
    assert "valid integer" in str(info.value)
    model = Config(strmod.Head, size="3", sub={"k": "2"})
    assert (model.size, model.sub) == (3, strmod.SubHead(k=2))
    with pytest.raises(ConfigError, match="greater than or equal to 0") as info:
        Config(strmod.SubHead, k=-1)  # Annotated metadata (a pydantic Field) is kept
    assert info.value.path == "SubHead.k"


def test_models_that_can_never_be_complete_are_not_a_pydantic_error(strmod: Any) -> None:
    cfg = Partial(strmod.takes_broken, b={"t": 1}, h={"n": "2"})
    assert cfg.h == {"n": "2"}  # no check possible: accepted as given
    assert cfg.b == strmod.Broken(t=1)  # the model completes with Tensor standing for Any: checked
    assert Config(strmod.Broken, n=1).n == 1
    assert nemoflow.build(Config(strmod.Broken, t=object(), n="2")).n == 2  # no raw PydanticUserError
    half = Config(strmod.HalfBroken, n="2", t=object())
    assert half.n == 2
    with pytest.raises(ConfigError, match="expected int"):
        Config(strmod.HalfBroken, n="x")


def test_annotated_metadata_is_checked_even_when_unhashable(strmod: Any) -> None:
    cfg = Partial(strmod.constrained, n="3", m="4")
    assert (cfg.n, cfg.m) == (3, 4)
    with pytest.raises(ConfigError) as info:
        Partial(strmod.constrained, n=-1)
    assert info.value.path == "constrained.n"
    assert "expected int, got -1 (int): Input should be greater than or equal to 0" in str(info.value)
    with pytest.raises(ConfigError, match="expected int, got 'x'"):
        Partial(strmod.constrained, m="x")


def test_class_targets_with_string_annotations(strmod: Any) -> None:
    trainer = Config(strmod.Trainer, model=Config(strmod.ModelConfig, hidden=1), epochs="3", opt=object())
    assert trainer.epochs == 3
    assert nemoflow.build(trainer).model == strmod.ModelConfig(hidden=1)
    with pytest.raises(ConfigError) as info:
        Config(strmod.Trainer, epochs="x")
    assert info.value.path == "Trainer.epochs"
    things = Config(strmod.AttrsThing, part=Config(strmod.Part, k="2"), n="3")  # attrs, Part defined later
    assert (things.part.k, things.n) == (2, 3)
    assert signature_of(strmod.AttrsThing).params["part"].annotation is strmod.Part
    with pytest.raises(ConfigError, match="expected Part, got a config that builds Inner"):
        Config(strmod.AttrsThing, part=Config(strmod.Inner))


def test_methods_see_their_class_namespace(strmod: Any) -> None:
    fit = Partial(strmod.Trainer.fit, steps="3", opts={"depth": "2"})
    assert (fit.steps, fit.opts) == (3, strmod.Trainer.Options(depth=2))
    assert Partial(strmod.Trainer.make, epochs="4").epochs == 4
    with pytest.raises(ConfigError) as info:
        Partial(strmod.Trainer.make, epochs="q")
    assert info.value.path == "Trainer.make.epochs"
    with pytest.raises(ConfigError) as info:
        Partial(strmod.Trainer.check, opts={"depth": "deep"})
    assert info.value.path == "Trainer.check.opts"
    bound = strmod.Trainer(strmod.ModelConfig(hidden=1)).fit
    assert Partial(bound, steps="5").steps == 5
    assert Partial(strmod.Trainer.load, ids=("1", 2)).ids == [1, 2]


def test_decorated_functions_resolve_in_the_wrapped_function_module(strmod: Any) -> None:
    cfg = Partial(strmod.wrapped, n="2", inner={"depth": "3"})
    assert (cfg.n, cfg.inner) == (2, strmod.Inner(depth=3))


def test_cli_overrides_convert_for_a_string_annotated_entrypoint(strmod: Any) -> None:
    from nemoflow.cli.entrypoints import root_config
    from nemoflow.cli.overrides import apply_overrides

    cfg = root_config(strmod.train)
    assert cfg.model == Config(strmod.ModelConfig)  # the dataclass parameter starts as a nested config
    cfg = apply_overrides(cfg, ["lr=0.3", "layers=[1,2]", "model.hidden=5", "model.inner.depth=2"])
    assert (cfg.lr, cfg.layers, cfg.model.hidden, cfg.model.inner.depth) == (0.3, [1, 2], 5, 2)
    with pytest.raises(ConfigError) as info:
        apply_overrides(cfg, ["lr=fast"])
    assert info.value.path == "lr=fast"  # the CLI names the token
    assert "expected float, got 'fast' (str)" in str(info.value)


ENTRYPOINT_SCRIPT = """
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import nemoflow.cli

if TYPE_CHECKING:
    from torch.optim import Optimizer


def train(model: ModelConfig, lr: float = 0.1, layers: list[int] | None = None, opt: Optimizer = None) -> dict:
    return {"hidden": model.hidden, "act": model.act, "lr": lr, "layers": layers}


@dataclass
class ModelConfig:
    hidden: int
    act: str = "tanh"


if __name__ == "__main__":
    nemoflow.cli.main(train)
"""


def test_string_annotated_script_runs_with_converted_overrides(tmp_path: pathlib.Path) -> None:
    (tmp_path / "script.py").write_text(ENTRYPOINT_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "NEMOFLOW_STORE"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "script.py", *args]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    proc = run("lr=0.3", "layers=[1,2]", "model.hidden=5", "-y")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"hidden": 5, "act": "tanh", "lr": 0.3, "layers": [1, 2]}
    bad = run("lr=fast", "model.hidden=5", "-y")
    output = bad.stdout + bad.stderr
    assert bad.returncode == 2, output
    assert "lr=fast: expected float, got 'fast' (str)" in output
    assert "Pydantic" not in output and "Traceback" not in output
