"""A script turned into a command line by ``@nemoflow.cli.entrypoint``; the CLI tests copy it to ``train.py``."""

from __future__ import annotations

import os
from dataclasses import dataclass

import nemoflow
import nemoflow.cli


@dataclass
class ModelConfig:
    hidden_size: int = 16
    activation: str = "tanh"
    dropout: float = 0.1


@dataclass
class Training:
    lr: float = 1e-3
    batch_size: int = 32
    steps: int = 10


@dataclass
class Optim:
    name: str = "sgd"
    momentum: float = 0.0


@nemoflow.cli.factory
def small_model(hidden_size: int = 4) -> nemoflow.Config[ModelConfig]:
    """A registered factory: picked by ``model=small_model``."""
    return nemoflow.Config(ModelConfig, hidden_size=hidden_size, activation="relu")


@nemoflow.cli.factory(name="adam")
def adam_optim(momentum: float = 0.9) -> nemoflow.Config[Optim]:
    return nemoflow.Config(Optim, name="adam", momentum=momentum)


def big_model() -> nemoflow.Config[ModelConfig]:
    """Not registered: reachable by import path, ``model=train.big_model``."""
    return nemoflow.Config(ModelConfig, hidden_size=1024)


class SetRunId(nemoflow.Plugin):
    """A plugin that changes the config: ``plugins=train.SetRunId(value=5)``."""

    def __init__(self, value: int = 42) -> None:
        self.value = value

    def setup(self, task: nemoflow.Partial, executor: object) -> None:
        task.run_id = self.value


@nemoflow.cli.entrypoint(help="Train a toy model (writes weights.txt).")
def train(
    model: ModelConfig,
    training: Training,
    optim: nemoflow.Config[Optim] | None = None,
    data_path: str = "/data",
    tags: list[str] | None = None,
    table: dict[str, int] | None = None,
    shape: tuple[int, int] = (1, 1),
    version: str = "1",
    run_id: int = 0,
    executor_name: str = "none",
    fail: bool = False,
) -> dict:
    """Record what it was called with."""
    if fail:
        raise RuntimeError("asked to fail")
    (nemoflow.output_dir() / "weights.txt").write_text(f"{model.hidden_size}\n")
    return {
        "model": {"hidden_size": model.hidden_size, "activation": model.activation, "dropout": model.dropout},
        "training": {"lr": training.lr, "batch_size": training.batch_size, "steps": training.steps},
        "optim": None if optim is None else {"name": optim.name, "momentum": optim.momentum},
        "data_path": data_path,
        "tags": tags,
        "table": table,
        "shape": list(shape),
        "version": version,
        "run_id": run_id,
        "executor_name": executor_name,
        "greeting": os.environ.get("NF_TEST_GREETING"),
        "cwd": os.getcwd(),
    }


@nemoflow.cli.factory(for_type=train)
def quick() -> nemoflow.Partial:
    """A factory of the whole entrypoint config: ``--factory quick``."""
    return nemoflow.Partial(train, model=small_model(2), data_path="/quick")


if __name__ == "__main__":
    nemoflow.cli.main(train)
