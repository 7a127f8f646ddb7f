"""NeMo Run's CLI through real entrypoint scripts: the multi-command app of namespaced entrypoints
(NeMo Run's test/cli/test_api.py TestEntrypointRunner), run options, files, plugins and exports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

APP = '''
from dataclasses import dataclass, field

import nemoflow as run


@dataclass
class Model:
    hidden_size: int
    num_layers: int
    activation: str


@dataclass
class Optimizer:
    learning_rate: float = 0.001
    weight_decay: float = 1e-5
    betas: list = field(default_factory=lambda: [0.9, 0.999])


@run.cli.factory
def my_model(hidden_size: int = 256, num_layers: int = 3, activation: str = "relu") -> run.Config[Model]:
    return run.Config(Model, hidden_size=hidden_size, num_layers=num_layers, activation=activation)


@run.cli.factory
def my_other_model(hidden_size: int = 512, num_layers: int = 3, activation: str = "relu") -> run.Config[Model]:
    return run.Config(Model, hidden_size=hidden_size, num_layers=num_layers, activation=activation)


@run.cli.factory
def my_optimizer(learning_rate: float = 0.001) -> run.Config[Optimizer]:
    return run.Config(Optimizer, learning_rate=learning_rate)


def defaults() -> run.Partial["train_model"]:
    return run.Partial(train_model, model=my_model(), optimizer=my_optimizer(), epochs=4, batch_size=1024)


class Scale(run.Plugin):
    def __init__(self, factor: int = 2):
        self.factor = factor

    def setup(self, task, executor):
        task.epochs *= self.factor


@run.cli.factory
def triple() -> run.Config[Scale]:
    return run.Config(Scale, factor=3)


@run.cli.entrypoint(default_factory=defaults, namespace="my_llm", skip_confirmation=True)
def train_model(model: Model, optimizer: Optimizer, epochs: int = 10, batch_size: int = 32):
    """Train a model using the specified configuration."""
    print("Training model with the following configuration:")
    print(f"Model: {model}")
    print(f"Optimizer: {optimizer}")
    print(f"Epochs: {epochs}")
    print(f"Batch size: {batch_size}")
    print("Training completed!")


@run.cli.factory(target=train_model)
def custom_defaults() -> run.Partial["train_model"]:
    return run.Partial(train_model, model=my_model(), optimizer=my_optimizer(), epochs=1, batch_size=1024)


@run.cli.entrypoint(namespace="my_llm.eval")
def score(executor_name: str = "none", run_id: int = 0):
    """Score a model."""
    print(f"scored with {executor_name} {run_id}")


if __name__ == "__main__":
    run.cli.create_cli().main()
'''


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(APP)
    return tmp_path


def app(folder: Path, *args: str, answer: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NEMOFLOW_STORE"}
    env.update({"COLUMNS": "200", "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])})
    return subprocess.run(
        [sys.executable, "app.py", *args],
        cwd=folder,
        env=env,
        input=answer,
        capture_output=True,
        text=True,
        timeout=180,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_commands_are_listed_by_namespace(folder: Path) -> None:
    assert "my_llm" in ok(app(folder))
    listed = ok(app(folder, "my_llm", "--help"))
    assert "train_model" in listed and "eval" in listed
    assert "score" in ok(app(folder, "my_llm", "eval"))
    wrong = app(folder, "my_llm", "trian_model")
    assert wrong.returncode == 2 and "train_model" in wrong.stderr and "Traceback" not in wrong.stderr


def test_with_factory(folder: Path) -> None:
    out = ok(app(folder, "my_llm", "train_model", "--factory", "custom_defaults", "model.hidden_size=200", "--yes"))
    assert "Training model with the following configuration:" in out
    assert "Model: Model(hidden_size=200, num_layers=3, activation='relu')" in out
    assert "Epochs: 1" in out


def test_with_defaults_and_run_skip_confirmation(folder: Path) -> None:
    out = ok(
        app(
            folder,
            "my_llm",
            "train_model",
            "model.hidden_size=1024",
            "optimizer.learning_rate=0.005",
            "epochs=30",
            "run.skip_confirmation=True",
        )
    )
    assert "Model: Model(hidden_size=1024, num_layers=3, activation='relu')" in out
    assert "Optimizer: Optimizer(learning_rate=0.005, weight_decay=1e-05, betas=[0.9, 0.999])" in out
    assert "Epochs: 30" in out and "Batch size: 1024" in out and "Training completed!" in out


def test_with_factory_and_overwrite(folder: Path) -> None:
    out = ok(app(folder, "my_llm", "train_model", "model=my_other_model", "model.num_layers=10", "--yes"))
    assert "Model: Model(hidden_size=512, num_layers=10, activation='relu')" in out


def test_help_lists_the_factories_of_each_parameter(folder: Path) -> None:
    out = ok(app(folder, "my_llm", "train_model", "--help"))
    assert "Train a model using the specified configuration." in out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") == 3}
    assert "my_model" in rows["model"] and "my_other_model" in rows["model"]
    assert "my_optimizer" in rows["optimizer"] and "my_model" not in rows["optimizer"]
    assert "custom_defaults" in rows["--factory"]


def test_the_tasks_own_prints_are_on_the_terminal_unless_asked_not_to(folder: Path) -> None:
    assert "Epochs: 4" in ok(app(folder, "my_llm", "train_model", "batch_size=1"))
    quiet = ok(app(folder, "my_llm", "train_model", "batch_size=2", "--no-tail-logs"))
    assert "Epochs: 4" not in quiet
    logs = list((folder / "targets" / "train_model").glob("*/nemoflow.log"))
    assert any("Epochs: 4" in log.read_text() for log in logs)


def test_executor_words_are_only_special_as_executor_or_executor_dot(folder: Path) -> None:
    # NeMo Run bug #604: there, executor_name=... is taken for an executor override
    out = ok(app(folder, "my_llm", "eval", "score", "executor_name=slurm", "run_id=3", "-y"))
    assert "scored with slurm 3" in out
    bad = app(folder, "my_llm", "eval", "score", "executor=no_such_executor", "-y")
    assert bad.returncode != 0 and "no_such_executor" in bad.stderr and "Traceback" not in bad.stderr


def test_plugins_by_path_then_their_fields_by_index(folder: Path) -> None:
    out = ok(app(folder, "my_llm", "train_model", "plugins=app.Scale", "plugins[0].factor=3", "-y"))
    assert "Epochs: 12" in out
    assert "Epochs: 12" in ok(app(folder, "my_llm", "train_model", "plugins=triple", "-y"))  # a plugin factory
    wrong = app(folder, "my_llm", "train_model", "plugins=my_model", "-y")  # a factory, but not of a plugin
    assert wrong.returncode == 2 and "my_model" in wrong.stderr
    bad = app(folder, "my_llm", "train_model", "plugins=app.Scale", "plugins[1].factor=3", "-y")
    assert bad.returncode == 2 and "plugins[1]" in bad.stderr


def test_to_yaml_of_one_section_and_factory_from_a_file(folder: Path) -> None:
    proc = app(folder, "my_llm", "train_model", "model.hidden_size=64", "--to-yaml", "model.yaml:model")
    ok(proc)
    section = yaml.safe_load((folder / "model.yaml").read_text())
    assert section["hidden_size"] == 64 and section["num_layers"] == 3
    assert not (folder / "targets").exists()
    bad = app(folder, "my_llm", "train_model", "--to-yaml", "x.yaml:nothing")
    assert bad.returncode == 2 and "Section 'nothing' not found" in bad.stderr

    ok(app(folder, "my_llm", "train_model", "epochs=2", "--to-yaml", "whole.yaml"))
    out = ok(app(folder, "my_llm", "train_model", "--factory", "@whole.yaml", "batch_size=5"))
    assert "Epochs: 2" in out and "Batch size: 5" in out
    out = ok(app(folder, "my_llm", "train_model", "--yaml", "whole.yaml", "model=@model.yaml"))
    assert "Model: Model(hidden_size=64, num_layers=3, activation='relu')" in out and "Epochs: 2" in out


def test_confirmation_reads_a_piped_answer(folder: Path) -> None:
    refused = app(folder, "my_llm", "eval", "score", answer="n\n")
    assert refused.returncode == 1 and "scored" not in refused.stdout
    assert "scored with none 0" in ok(app(folder, "my_llm", "eval", "score", answer="y\n"))
