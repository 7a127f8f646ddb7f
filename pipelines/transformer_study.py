"""A transformer-architecture study, ported from NeMo Run: the import line is the only change.

A 4x3 sweep of train steps (num_layers x hidden_size), an evaluation of every trained model and an analysis
that ranks the architectures, on small numpy models (a bag-of-embeddings encoder with ``num_layers`` tanh
layers of ``hidden_size`` units; the task: name the most frequent token of a sequence). Steps hand their
models on through ``TrainingConfig.checkpoint_dir``, as NeMo Run programs do.

    python pipelines/transformer_study.py          # exp.run(tail_logs=True, max_concurrent=4), then reload it
    nemoflow build pipelines/transformer_study.py  # the same steps, the same keys
    nemoflow build pipelines/transformer_study.py 'train-L2-H32.training.lr=0.1'   # reruns that step and what follows

A second run rebuilds nothing; changing one model's config reruns that train step, the evaluation and the
analysis. A rule in ``ModelConfig.__post_init__`` (heads must divide the width) is checked when the
experiment is planned, before any step starts.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import nemoflow as run  # NeMo Run: import nemo_run as run

LAYERS = (1, 2, 3, 4)
WIDTHS = (16, 32, 64)


@dataclass
class ModelConfig:
    num_layers: int = 2
    hidden_size: int = 32
    num_heads: int = 4
    vocab_size: int = 8
    seq_length: int = 12

    def __post_init__(self) -> None:
        assert self.hidden_size % self.num_heads == 0, "hidden_size must be divisible by num_heads"


@dataclass
class TrainingConfig:
    steps: int = 250
    lr: float = 0.3
    batch_size: int = 64
    seed: int = 0
    checkpoint_dir: str = "study-checkpoints"


def make_batch(model: ModelConfig, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sequences of tokens and, for each, its most frequent token (ties: the smallest)."""
    tokens = rng.integers(0, model.vocab_size, size=(size, model.seq_length))
    counts = np.stack([(tokens == t).sum(axis=1) for t in range(model.vocab_size)], axis=1)
    return tokens, counts.argmax(axis=1)


def init_params(model: ModelConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    params = {"embed": rng.normal(0, 0.5, (model.vocab_size, model.hidden_size))}
    for layer in range(model.num_layers):
        scale = 1.0 / np.sqrt(model.hidden_size)
        params[f"w{layer}"] = rng.normal(0, scale, (model.hidden_size, model.hidden_size))
        params[f"b{layer}"] = np.zeros(model.hidden_size)
    params["out"] = rng.normal(0, 1.0 / np.sqrt(model.hidden_size), (model.hidden_size, model.vocab_size))
    return params


def forward(
    params: dict[str, np.ndarray], model: ModelConfig, tokens: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Logits, and the activations of every layer (for the backward pass)."""
    hidden = params["embed"][tokens].mean(axis=1)
    activations = [hidden]
    for layer in range(model.num_layers):
        hidden = np.tanh(hidden @ params[f"w{layer}"] + params[f"b{layer}"])
        activations.append(hidden)
    return hidden @ params["out"], activations


def loss_and_grads(
    params: dict[str, np.ndarray], model: ModelConfig, tokens: np.ndarray, labels: np.ndarray
) -> tuple[float, dict[str, np.ndarray]]:
    logits, activations = forward(params, model, tokens)
    logits = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    n = len(labels)
    loss = float(-np.log(probs[np.arange(n), labels] + 1e-12).mean())
    grad = probs
    grad[np.arange(n), labels] -= 1
    grad /= n
    grads = {"out": activations[-1].T @ grad}
    back = grad @ params["out"].T
    for layer in reversed(range(model.num_layers)):
        back = back * (1 - activations[layer + 1] ** 2)
        grads[f"w{layer}"] = activations[layer].T @ back
        grads[f"b{layer}"] = back.sum(axis=0)
        back = back @ params[f"w{layer}"].T
    embed_grad = np.zeros_like(params["embed"])
    np.add.at(embed_grad, tokens, np.repeat(back[:, None, :] / tokens.shape[1], tokens.shape[1], axis=1))
    grads["embed"] = embed_grad
    return loss, grads


def accuracy(params: dict[str, np.ndarray], model: ModelConfig, tokens: np.ndarray, labels: np.ndarray) -> float:
    return float((forward(params, model, tokens)[0].argmax(axis=1) == labels).mean())


def train(model: ModelConfig, training: TrainingConfig, name: str) -> dict[str, float]:
    """Train one architecture; save it to ``checkpoint_dir/<name>.npz``; its final loss and validation accuracy."""
    rng = np.random.default_rng(training.seed)
    params = init_params(model, rng)
    val_tokens, val_labels = make_batch(model, 1000, np.random.default_rng(1000 + training.seed))
    loss = float("nan")
    for step in range(1, training.steps + 1):
        loss, grads = loss_and_grads(params, model, *make_batch(model, training.batch_size, rng))
        for key, value in grads.items():
            params[key] -= training.lr * value
        if step % 100 == 0 or step == training.steps:
            print(f"{name} step {step}: loss {loss:.3f}", flush=True)
    metrics = {"train_loss": round(loss, 4), "val_accuracy": round(accuracy(params, model, val_tokens, val_labels), 4)}
    folder = Path(training.checkpoint_dir)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / f"{name}.npz", config=json.dumps(asdict(model)), **params)
    print(f"{name}: {metrics}", flush=True)
    return metrics


def evaluate(names: list[str], checkpoint_dir: str = "study-checkpoints", seed: int = 7) -> dict[str, float]:
    """Test accuracy of every trained model on sequences none of them saw; written to evaluation.json."""
    scores = {}
    for name in names:
        with np.load(Path(checkpoint_dir) / f"{name}.npz") as saved:
            model = ModelConfig(**json.loads(str(saved["config"])))
            params = {key: saved[key] for key in saved.files if key != "config"}
        tokens, labels = make_batch(model, 2000, np.random.default_rng(seed))
        scores[name] = round(accuracy(params, model, tokens, labels), 4)
        print(f"{name}: test accuracy {scores[name]:.3f}", flush=True)
    (Path(checkpoint_dir) / "evaluation.json").write_text(json.dumps(scores, indent=1))
    return scores


def analyze(checkpoint_dir: str = "study-checkpoints") -> dict[str, object]:
    """The best architecture, and the mean test accuracy per depth and per width."""
    scores = json.loads((Path(checkpoint_dir) / "evaluation.json").read_text())

    def mean_of(prefix: str) -> float:
        picked = [v for k, v in scores.items() if prefix in k]
        return round(sum(picked) / len(picked), 4)

    report = {
        "best": max(scores, key=scores.get),
        "by_layers": {n: mean_of(f"-L{n}-") for n in LAYERS},
        "by_width": {w: mean_of(f"-H{w}") for w in WIDTHS},
    }
    print(json.dumps(report, indent=1), flush=True)
    return report


def study() -> run.Experiment:
    exp = run.Experiment("transformer-study", description="4x3 architecture sweep", tags=["study"])
    executor = run.LocalExecutor()
    names, trained = [], []
    for layers in LAYERS:
        for width in WIDTHS:
            name = f"train-L{layers}-H{width}"
            model = run.Config(ModelConfig, num_layers=layers, hidden_size=width, num_heads=4)
            training = run.Config(TrainingConfig, lr=0.3 if layers < 4 else 0.2)
            names.append(name)
            trained.append(
                exp.add(run.Partial(train, model=model, training=training, name=name), name=name, executor=executor)
            )
    evaluation = exp.add(run.Partial(evaluate, names=names), name="evaluate", executor=executor, dependencies=trained)
    exp.add(run.Partial(analyze), name="analyze", executor=executor, dependencies=[evaluation])
    return exp


def pipeline() -> run.Experiment:
    """What ``nemoflow build`` runs."""
    return study()


if __name__ == "__main__":
    exp = study()
    exp.run(tail_logs=True, max_concurrent=4)
    again = run.Experiment.from_id(exp.id)
    print(again.logs("analyze"))
