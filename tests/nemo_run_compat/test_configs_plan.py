"""A dataclass's validation rule (``__post_init__`` assert) fails when the plan is made, before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import nemoflow

PIPELINE = """
from dataclasses import dataclass

import nemoflow as run


@dataclass
class ModelConfig:
    hidden_size: int = 64
    num_heads: int = 4

    def __post_init__(self) -> None:
        assert self.hidden_size % self.num_heads == 0, "hidden_size must be divisible by num_heads"


def train(model: ModelConfig, steps: int = 1) -> int:
    print("TRAINING STARTED")
    return model.hidden_size * steps


def pipeline() -> run.Experiment:
    exp = run.Experiment("rules")
    exp.add(run.Partial(train, model=run.Config(ModelConfig, hidden_size=64, num_heads={heads})), name="train")
    return exp
"""


def _write(tmp_path: Path, heads: int) -> None:
    (tmp_path / "p.py").write_text(PIPELINE.format(heads=heads))


def test_a_failing_rule_stops_the_build_with_the_config_path_and_nothing_runs(tmp_path: Path) -> None:
    _write(tmp_path, heads=3)
    store = tmp_path / "store"
    proc = nemoflow("build", "p.py", "--store", str(store), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    text = proc.stdout + proc.stderr
    assert "train.model" in text
    assert "hidden_size must be divisible by num_heads" in text
    assert "Traceback" not in text
    assert "TRAINING STARTED" not in text


def test_a_rule_that_holds_plans_and_builds(tmp_path: Path) -> None:
    _write(tmp_path, heads=4)
    store = tmp_path / "store"
    proc = nemoflow("build", "p.py", "--store", str(store), "--dry-run", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plan = json.loads(proc.stdout.strip().splitlines()[-1])
    assert plan["would_run"] == ["train"]


def test_in_process_the_plan_raises_an_assertion_error_that_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nemoflow as run

    _write(tmp_path, heads=5)
    monkeypatch.chdir(tmp_path)
    exp = run.load_pipeline("p.py")
    with pytest.raises(AssertionError) as info:
        run.make_plan(exp, run.Store(tmp_path / "store"))
    assert isinstance(info.value, run.ConfigError)
    assert info.value.path == "train.model"


MODEL_PIPELINE = """
import pydantic

import nemoflow as run


class Attention(pydantic.BaseModel):
    hidden_size: int = 64
    num_heads: int = 4

    @pydantic.model_validator(mode="after")
    def heads_divide_hidden(self) -> "Attention":
        if self.hidden_size % self.num_heads:
            raise ValueError("num_heads must divide hidden_size")
        return self


def train(attention: Attention) -> int:
    return attention.hidden_size


def pipeline() -> run.Experiment:
    exp = run.Experiment("pydantic-rules")
    exp.add(run.Partial(train, attention=run.Config(Attention, hidden_size=64, num_heads={heads})), name="fit")
    return exp
"""


def test_a_pydantic_model_validator_fails_at_plan_time_as_a_value_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nemoflow as run

    (tmp_path / "m.py").write_text(MODEL_PIPELINE.format(heads=5))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="num_heads must divide hidden_size") as info:
        run.make_plan(run.load_pipeline("m.py"), run.Store(tmp_path / "store"))
    assert isinstance(info.value, run.ConfigError)
    assert info.value.path == "fit.attention"
