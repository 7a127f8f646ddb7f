"""Targets written with ``from __future__ import annotations`` (string annotations) validate and build."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

import nemoflow as run

MODULE = """
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import pydantic

if TYPE_CHECKING:
    import numpy as np


class Optim(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)

    lr: float = 0.1
    schedule: Schedule | None = None
    mask: Optional[np.ndarray] = None


class Schedule(pydantic.BaseModel):
    warmup: int = 0


@dataclass
class Model:
    hidden: int = 4
    head: Head | None = None


@dataclass
class Head:
    width: int = 2


def train(model: Model, optim: Optim, steps: int = 1) -> tuple[int, float, int]:
    return model.hidden, optim.lr, steps
"""


@pytest.fixture
def annotated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    (tmp_path / "annotated_targets.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("annotated_targets", None)
    return importlib.import_module("annotated_targets")


def test_a_pydantic_model_with_string_annotations_checks_and_builds(annotated: ModuleType) -> None:
    cfg = run.Config(annotated.Optim, lr="0.5", schedule=run.Config(annotated.Schedule, warmup=3))
    assert cfg.lr == 0.5
    built = run.build(cfg)
    assert built.lr == 0.5 and built.schedule.warmup == 3


def test_a_bad_value_is_a_config_error_not_a_pydantic_error(annotated: ModuleType) -> None:
    with pytest.raises(ValueError) as info:
        run.Config(annotated.Optim, lr="fast")
    assert isinstance(info.value, run.ConfigError)
    assert "lr" in str(info.value)
    with pytest.raises(run.ConfigError):
        run.Config(annotated.Optim, schedule=3)


def test_an_unknown_field_of_such_a_model_is_refused(annotated: ModuleType) -> None:
    with pytest.raises(TypeError, match="did you mean 'lr'"):
        run.Config(annotated.Optim, lrr=0.1)


def test_a_step_of_dataclasses_and_models_with_string_annotations_builds(annotated: ModuleType) -> None:
    cfg = run.Partial(
        annotated.train,
        model=run.Config(annotated.Model, hidden="8", head=run.Config(annotated.Head)),
        optim=run.Config(annotated.Optim, lr=0.2),
        steps="3",
    )
    assert run.build(cfg)() == (8, 0.2, 3)
