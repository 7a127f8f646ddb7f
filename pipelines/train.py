"""The README's script example: a training function turned into a command line.

    python pipelines/train.py model.hidden_size=1024 lr=2e-4 data_path=/d -y
    python pipelines/train.py 'model=small_model(hidden_size=3)' 'lr*=2' -y

Each call is a keyed, cached, ledgered step: the same arguments again are served from the store.
"""

from __future__ import annotations

from dataclasses import dataclass

import nemoflow
import nemoflow.cli


@dataclass
class ModelConfig:
    """The model's shape."""

    hidden_size: int = 16
    activation: str = "tanh"


@nemoflow.cli.factory
def small_model(hidden_size: int = 4) -> nemoflow.Config[ModelConfig]:
    """A small model: ``model=small_model(hidden_size=3)``."""
    return nemoflow.Config(ModelConfig, hidden_size=hidden_size)


@nemoflow.cli.entrypoint
def train(model: ModelConfig, lr: float = 1e-3, data_path: str = "data") -> dict:
    """Pretend to train: write the settings it was called with to ``trained.txt`` and return them."""
    settings = {"hidden_size": model.hidden_size, "activation": model.activation, "lr": lr, "data_path": data_path}
    (nemoflow.output_dir() / "trained.txt").write_text(f"{settings}\n")
    print(f"trained {settings}")
    return settings


if __name__ == "__main__":
    nemoflow.cli.main(train)
