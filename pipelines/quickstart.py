"""Quickstart: make a dataset, train a small sweep of MLPs, evaluate each, write a report.

    nemoflow build pipelines/quickstart.py

Everything is numpy on the CPU and takes a few seconds. Change one learning rate below and
build again: only that model's train and evaluate steps, and the report, run again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import nemoflow


@dataclass
class ModelConfig:
    """A one-hidden-layer MLP."""

    hidden_size: int = 16
    activation: str = "tanh"

    def __post_init__(self) -> None:
        if self.hidden_size <= 0:
            raise ValueError(f"hidden_size must be positive, got {self.hidden_size}")
        if self.activation not in ("tanh", "relu"):
            raise ValueError(f"activation must be 'tanh' or 'relu', got {self.activation!r}")


def make_dataset(n_samples: int = 2000, noise: float = 0.2, test_fraction: float = 0.25, seed: int = 0) -> dict:
    """Two interleaved half-moons, split into train and test sets (writes data.npz)."""
    rng = np.random.default_rng(seed)
    half = n_samples // 2
    angle = rng.uniform(0, np.pi, size=n_samples)
    upper = np.stack([np.cos(angle[:half]), np.sin(angle[:half])], axis=1)
    lower = np.stack([1 - np.cos(angle[half:]), 0.5 - np.sin(angle[half:])], axis=1)
    x = np.concatenate([upper, lower]) + rng.normal(scale=noise, size=(n_samples, 2))
    y = np.concatenate([np.zeros(half), np.ones(n_samples - half)])
    order = rng.permutation(n_samples)
    x, y = x[order], y[order]
    n_test = int(n_samples * test_fraction)
    np.savez(
        nemoflow.output_dir() / "data.npz", x_train=x[n_test:], y_train=y[n_test:], x_test=x[:n_test], y_test=y[:n_test]
    )
    print(f"wrote {n_samples - n_test} training and {n_test} test samples")
    return {"n_train": n_samples - n_test, "n_test": n_test}


def _forward(params: dict, x: np.ndarray, activation: str) -> tuple[np.ndarray, np.ndarray]:
    pre = x @ params["w1"] + params["b1"]
    hidden = np.tanh(pre) if activation == "tanh" else np.maximum(pre, 0.0)
    logits = hidden @ params["w2"] + params["b2"]
    return hidden, 1.0 / (1.0 + np.exp(-logits[:, 0]))


def train(data: str, model: ModelConfig, lr: float = 0.5, epochs: int = 300, seed: int = 0) -> dict:
    """Full-batch gradient descent on the training set (writes model.npz, logs the loss)."""
    arrays = np.load(data)
    x, y = arrays["x_train"], arrays["y_train"]
    rng = np.random.default_rng(seed)
    params = {
        "w1": rng.normal(scale=1.0, size=(2, model.hidden_size)),
        "b1": np.zeros(model.hidden_size),
        "w2": rng.normal(scale=1.0 / np.sqrt(model.hidden_size), size=(model.hidden_size, 1)),
        "b2": np.zeros(1),
    }
    for epoch in range(epochs):
        hidden, prob = _forward(params, x, model.activation)
        loss = float(-np.mean(y * np.log(prob + 1e-9) + (1 - y) * np.log(1 - prob + 1e-9)))
        grad_logits = ((prob - y) / len(y))[:, None]
        grad_hidden = grad_logits @ params["w2"].T
        grad_pre = grad_hidden * (1 - hidden**2) if model.activation == "tanh" else grad_hidden * (hidden > 0)
        params["w2"] -= lr * hidden.T @ grad_logits
        params["b2"] -= lr * grad_logits.sum(axis=0)
        params["w1"] -= lr * x.T @ grad_pre
        params["b1"] -= lr * grad_pre.sum(axis=0)
        if epoch % 50 == 0 or epoch == epochs - 1:
            nemoflow.log_metrics(epoch=epoch, loss=loss)
    np.savez(nemoflow.output_dir() / "model.npz", activation=model.activation, **params)
    print(f"final training loss {loss:.4f}")
    return {"final_loss": loss}


def evaluate(data: str, model: str) -> dict:
    """Accuracy of a trained model on the test set (writes metrics.json)."""
    arrays, saved = np.load(data), np.load(model)
    params = {name: saved[name] for name in ("w1", "b1", "w2", "b2")}
    _, prob = _forward(params, arrays["x_test"], str(saved["activation"]))
    accuracy = float(np.mean((prob > 0.5) == arrays["y_test"]))
    metrics = {"accuracy": accuracy, "n_test": len(prob)}
    (nemoflow.output_dir() / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def report(names: list[str], metrics: list[str]) -> str:
    """A markdown table of every model's test accuracy (writes report.md)."""
    rows = ["| model | test accuracy |", "| --- | --- |"]
    for name, path in zip(names, metrics):
        accuracy = json.loads(Path(path).read_text())["accuracy"]
        rows.append(f"| {name} | {accuracy:.3f} |")
    text = "\n".join(rows) + "\n"
    (nemoflow.output_dir() / "report.md").write_text(text)
    print(text)
    return text


SWEEP = {
    "small": {"hidden_size": 4, "lr": 0.5},
    "medium": {"hidden_size": 16, "lr": 0.5},
    "large": {"hidden_size": 32, "lr": 0.3},
}


def pipeline() -> nemoflow.Experiment:
    exp = nemoflow.Experiment("quickstart", description="two-moons MLP sweep", tags=["demo", "numpy"])
    data = exp.add(nemoflow.Partial(make_dataset, n_samples=2000, noise=0.2), name="prepare")
    names, metrics = [], []
    for name, values in SWEEP.items():
        model = nemoflow.Config(ModelConfig, hidden_size=values["hidden_size"])
        trained = exp.add(
            nemoflow.Partial(train, data=data.output("data.npz"), model=model, lr=values["lr"]),
            name=f"train-{name}",
        )
        evaluated = exp.add(
            nemoflow.Partial(evaluate, data=data.output("data.npz"), model=trained.output("model.npz")),
            name=f"evaluate-{name}",
        )
        names.append(name)
        metrics.append(evaluated.output("metrics.json"))
    exp.add(nemoflow.Partial(report, names=names, metrics=metrics), name="report")
    return exp
