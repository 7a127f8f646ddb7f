"""Config targets for the unit tests, at module level so they are importable as ``targets_for_tests:name``.

Annotations are strings here (``from __future__ import annotations``), as in most user code, so the
tests also check that nemoflow resolves them.
"""

from __future__ import annotations

import enum
import pathlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nemoflow.configs.core import Config


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Mode(enum.StrEnum):
    TRAIN = "train"
    EVAL = "eval"


class Kernel(enum.Enum):
    SMALL = (3, 3)
    WIDE = (1, 5)


@dataclass
class Model:
    hidden_size: int
    dropout: float = 0.1


@dataclass
class Trainer:
    model: Model
    lr: float = 1e-3
    epochs: int = 1


@dataclass
class Outer:
    trainer: Trainer
    name: str = "outer"


@dataclass
class Positive:
    value: int

    def __post_init__(self) -> None:
        if self.value <= 0:
            raise ValueError(f"value must be positive, got {self.value}")


def train(model: Model, lr: float, steps: int = 10) -> dict[str, Any]:
    return {"model": model, "lr": lr, "steps": steps}


def read_inputs(data: str, out: pathlib.Path, count: int = 0) -> tuple[str, pathlib.Path, int]:
    return data, out, count


def read_many(paths: list[str]) -> list[str]:
    return paths


def read_table(files: dict[str, str]) -> dict[str, str]:
    return files


def maybe_model(model: Model | None = None) -> Model | None:
    return model


def takes_model_config(model: Config[Model]) -> Any:
    return model


def with_build(build: int) -> int:
    return build


def with_builds_instance(builds_instance: bool) -> bool:
    return builds_instance


def with_method_names(walk: int, run: str, executor: str) -> tuple[int, str, str]:
    return walk, run, executor


def anything(**kwargs: Any) -> dict[str, Any]:
    return kwargs


def apply(fn: Callable[[int], int], x: int) -> int:
    return fn(x)


def square(x: int) -> int:
    return x * x


def shaped(shape: tuple[int, int], table: dict[int, str], color: Color = Color.RED, mode: Mode = Mode.TRAIN) -> Any:
    return shape, table, color, mode


@dataclass(frozen=True)
class FakeStep:
    """Stands for an experiment's step handle in step references (``StepOutput`` / ``StepResult``)."""

    name: str
    experiment: Any = None
