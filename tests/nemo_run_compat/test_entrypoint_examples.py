"""NeMo Run's examples/entrypoint programs (task.py, task_with_defaults.py, experiment.py), with only the import
line changed to ``import nemoflow as run``, run as a user runs them: every command line of its README, through
real subprocesses. They print what they print under NeMo Run; nemoflow adds the build summary and the cache.

Under NeMo Run some README lines fail on these files (task.py's ``train_model`` has no defaults for ``model`` and
``optimizer``, so setting one field of them leaves the others missing); those must fail here too, as one message.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent / "scripts"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name in ("task.py", "task_with_defaults.py", "experiment.py", "task.yaml"):
        shutil.copy(SCRIPTS / name, tmp_path / name)
    return tmp_path


def run(folder: Path, script: str, *args: str, answer: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python SCRIPT ARGS`` in ``folder`` (its store: ``folder/targets``); ``answer`` is typed at the prompt."""
    env = {k: v for k, v in os.environ.items() if k != "NEMOFLOW_STORE"}
    env.update({"COLUMNS": "200", "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])})
    return subprocess.run(
        [sys.executable, script, *args],
        cwd=folder,
        env=env,
        input=answer if answer is not None else "",
        capture_output=True,
        text=True,
        timeout=180,
    )


def trained(proc: subprocess.CompletedProcess[str]) -> str:
    """The program's own output (what train_model printed), with nemoflow's step prefix taken off."""
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return "\n".join(re.sub(r"^\[train_model(_\d+)?\] ", "", line) for line in proc.stdout.splitlines())


def failed_cleanly(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


def test_the_examples_are_nemo_runs_with_only_the_import_line_changed() -> None:
    mirror = Path("/work/.mirror/NVIDIA-NeMo+Run/repo")
    if not mirror.exists():
        pytest.skip("no NeMo Run mirror on this machine")
    for name in ("task.py", "task_with_defaults.py", "experiment.py", "task.yaml", "test.toml"):
        upstream = subprocess.run(
            ["git", "-C", str(mirror), "show", f"HEAD:examples/entrypoint/{name}"], capture_output=True, text=True
        ).stdout
        assert (SCRIPTS / name).read_text() == upstream.replace("import nemo_run as run", "import nemoflow as run")


# ---- task.py: the README's "Using the Single Task Entrypoint" ---------------------------------------------


def test_task_help_lists_parameters_and_factories(folder: Path) -> None:
    proc = run(folder, "task.py", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "Train a model using the specified configuration." in proc.stdout
    for word in ("model", "optimizer", "epochs", "batch_size", "my_model", "my_optimizer", "train_recipe"):
        assert word in proc.stdout
    assert not (folder / "targets").exists()


def test_task_without_arguments_says_what_is_missing(folder: Path) -> None:
    # train_model(model: Model, optimizer: Optimizer) has no defaults: as under NeMo Run, it cannot run
    failed_cleanly(run(folder, "task.py"), "missing required argument")


@pytest.mark.parametrize(
    "args",
    [
        ("model.hidden_size=512", "optimizer.learning_rate=0.01", "epochs=20"),
        ("model=my_model(hidden_size=1024)", "model.num_layers=5", "optimizer.weight_decay=1e-4"),
        ("optimizer.betas=[0.9,0.999]",),
    ],
)
def test_task_readme_lines_that_leave_fields_unset_fail_as_one_message(folder: Path, args: tuple[str, ...]) -> None:
    failed_cleanly(run(folder, "task.py", *args), "missing required argument")
    assert not (folder / "targets" / "train_model").exists()


def test_task_arithmetic_on_unset_values_fails_as_one_message(folder: Path) -> None:
    failed_cleanly(
        run(folder, "task.py", "model.hidden_size*=2", "optimizer.learning_rate/=10", "batch_size+=16"),
        "no value to update",
    )


def test_task_factory_calls_with_arguments(folder: Path) -> None:
    out = trained(
        run(
            folder,
            "task.py",
            "model=my_model(hidden_size=1024,activation='tanh')",
            "optimizer=my_optimizer(learning_rate=0.005)",
        )
    )
    assert "Launching train_model..." in out
    assert "Training model with the following configuration:" in out
    assert "Model: Model(hidden_size=1024, num_layers=3, activation='tanh')" in out
    assert "Optimizer: Optimizer(learning_rate=0.005, weight_decay=1e-05, betas=[0.9, 0.999])" in out
    assert "Epochs: 10" in out and "Batch size: 32" in out
    assert [f"Epoch {i}/10" for i in range(1, 11)] == re.findall(r"Epoch \d+/10", out)
    assert "Training completed!" in out


def test_task_factories_then_fields_then_arithmetic(folder: Path) -> None:
    out = trained(
        run(
            folder,
            "task.py",
            "model=my_model(hidden_size=1024)",
            "optimizer=my_optimizer",
            "model.num_layers=5",
            "optimizer.weight_decay=1e-4",
            "model.hidden_size*=2",
            "optimizer.learning_rate/=10",
            "batch_size+=16",
            "optimizer.betas=[0.95,0.999]",
        )
    )
    assert "Model: Model(hidden_size=2048, num_layers=5, activation='relu')" in out
    assert "Optimizer: Optimizer(learning_rate=0.0001, weight_decay=0.0001, betas=[0.95, 0.999])" in out
    assert "Batch size: 48" in out


def test_task_factory_option_and_a_second_run_from_the_store(folder: Path) -> None:
    first = trained(run(folder, "task.py", "--factory", "train_recipe"))
    assert "Model: Model(hidden_size=512, num_layers=3, activation='relu')" in first
    assert "Optimizer: Optimizer(learning_rate=0.0005, weight_decay=1e-05, betas=[0.9, 0.999])" in first
    assert "Epochs: 50" in first and "Batch size: 2048" in first
    second = run(folder, "task.py", "--factory", "train_recipe")
    assert "up to date" in second.stdout + second.stderr  # served from the store ...
    assert "Epochs: 50" in trained(second) and "Training completed!" in trained(second)  # ... and its output shown


def test_task_repl_runs_nothing_until_asked(folder: Path) -> None:
    proc = run(folder, "task.py", "model=my_model", "optimizer=my_optimizer", "--repl")
    assert proc.returncode == 0, proc.stderr
    assert "Entering interactive mode" in proc.stderr
    assert "Training" not in proc.stdout and not (folder / "targets" / "train_model").exists()
    asked = run(
        folder, "task.py", "model=my_model", "optimizer=my_optimizer", "--repl", answer="task.epochs = 2\nrun_task()\n"
    )
    assert asked.returncode == 0, asked.stderr
    assert "Epochs: 2" in asked.stdout and "Training completed!" in asked.stdout


def test_task_yaml_file_with_factories(folder: Path) -> None:
    out = trained(run(folder, "task.py", "--yaml", "task.yaml", "epochs=2"))
    assert "Model: Model(hidden_size=256, num_layers=3, activation='relu')" in out
    assert "Optimizer: Optimizer(learning_rate=0.001, weight_decay=1e-05, betas=[0.9, 0.999])" in out
    assert "Epochs: 2" in out


def test_task_from_nemo_runs_toml_export(folder: Path) -> None:
    # test.toml is what NeMo Run's --to-toml wrote for task.py: its targets name __main__
    shutil.copy(SCRIPTS / "test.toml", folder / "test.toml")
    out = trained(run(folder, "task.py", "@test.toml", "epochs=2"))
    assert "Model: Model(hidden_size=256, num_layers=5, activation='relu')" in out
    assert "Optimizer: Optimizer(learning_rate=0.001, weight_decay=1e-05, betas=[0.9, 0.999])" in out
    assert "Epochs: 2" in out


# ---- task_with_defaults.py: main(default_factory=, default_executor=, default_plugins=) ------------------------


def test_task_with_defaults_uses_its_factory_executor_and_plugin(folder: Path) -> None:
    shown = run(folder, "task_with_defaults.py", "--help")
    assert shown.returncode == 0 and "custom_defaults" in shown.stdout and "DummyPlugin" in shown.stdout
    out = trained(run(folder, "task_with_defaults.py", "--yes"))
    assert "Model: Model(hidden_size=512, num_layers=3, activation='relu')" in out
    assert "Optimizer: Optimizer(learning_rate=0.0005, weight_decay=1e-05, betas=[0.9, 0.999])" in out
    assert "Epochs: 100" in out  # custom_defaults' 50, doubled by DummyPlugin
    assert "Batch size: 2048" in out


def test_task_with_defaults_asks_first(folder: Path) -> None:
    refused = run(folder, "task_with_defaults.py")
    assert refused.returncode == 1 and "Training" not in refused.stdout
    assert not (folder / "targets" / "train_model").exists()
    out = trained(run(folder, "task_with_defaults.py", "epochs=3", answer="y\n"))
    assert "Epochs: 6" in out


def test_task_with_defaults_readme_lines(folder: Path) -> None:
    out = trained(
        run(folder, "task_with_defaults.py", "model.hidden_size=512", "optimizer.learning_rate=0.01", "epochs=20", "-y")
    )
    assert "Model: Model(hidden_size=512, num_layers=3, activation='relu')" in out
    assert "Optimizer: Optimizer(learning_rate=0.01, weight_decay=1e-05, betas=[0.9, 0.999])" in out
    assert "Epochs: 40" in out
    out = trained(
        run(
            folder,
            "task_with_defaults.py",
            "model.hidden_size*=2",
            "optimizer.learning_rate/=10",
            "batch_size+=16",
            "-y",
        )
    )
    assert "Model: Model(hidden_size=1024, num_layers=3, activation='relu')" in out
    assert "Optimizer: Optimizer(learning_rate=5e-05, weight_decay=1e-05, betas=[0.9, 0.999])" in out
    assert "Batch size: 2064" in out


# ---- experiment.py: the README's "Using the Experiment Entrypoint" ----------------------------------------


def test_experiment_with_defaults(folder: Path) -> None:
    out = trained(run(folder, "experiment.py", "-y"))
    assert "Model: Model(hidden_size=256, num_layers=3, activation='relu')" in out
    assert "Model: Model(hidden_size=512, num_layers=3, activation='relu')" in out
    assert "Optimizer: Optimizer(learning_rate=0.01, weight_decay=1e-05, betas=[0.9, 0.999])" in out
    assert out.count("Training completed!") == 2
    assert sorted(p.name for p in (folder / "targets").iterdir() if p.name.startswith("train_model")) == [
        "train_model_0",
        "train_model_1",
    ]


def test_experiment_indexed_overrides(folder: Path) -> None:
    out = trained(run(folder, "experiment.py", "models[0].hidden_size=1024", "optimizers[1].learning_rate=0.001", "-y"))
    assert "Model: Model(hidden_size=1024, num_layers=3, activation='relu')" in out
    assert "Model: Model(hidden_size=512, num_layers=3, activation='relu')" in out
    assert "Optimizer: Optimizer(learning_rate=0.01," not in out


def test_experiment_added_model_and_sequential_and_executor(folder: Path) -> None:
    # zip(models, optimizers) stops at two pairs: the third model is parsed but trains nowhere, as under NeMo Run
    out = trained(run(folder, "experiment.py", "models+=[my_model(hidden_size=2048)]", "-y"))
    assert out.count("Training completed!") == 2
    out = trained(run(folder, "experiment.py", "sequential=True", "ctx.executor=local_executor", "-y"))
    assert out.count("Training completed!") == 2  # from the store this time, its output shown again


def test_experiment_help_and_dryrun(folder: Path) -> None:
    proc = run(folder, "experiment.py", "--help")
    assert proc.returncode == 0 and "models" in proc.stdout and "my_model" in proc.stdout
    dry = run(folder, "experiment.py", "--dryrun")
    assert dry.returncode == 0, dry.stderr
    assert "train_model_0" in dry.stdout and "train_model_1" in dry.stdout and "Training" not in dry.stdout
    assert not (folder / "targets" / "train_model_0").exists()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("executor=skypilot_executor", "executor.instance_type=p3.2xlarge"), "skypilot_executor"),
        (("plugins=wandb_logger", "plugins.project_name=my_experiment"), "wandb_logger"),
        (("model=my_model", "optimizer=my_optimizer"), "model"),
        (("model.hidden_size=1024", "optimizer.betas=[0.95,0.999]"), "model"),
        (("model.hidden_size*=2", "optimizer.learning_rate/=10"), "model"),
    ],
)
def test_experiment_readme_lines_for_other_programs_fail_as_one_message(
    folder: Path, args: tuple[str, ...], said: str
) -> None:
    # the "Advanced" lines name executors, plugins and parameters experiment.py does not have (NeMo Run fails too)
    failed_cleanly(run(folder, "experiment.py", *args, "-y"), said)
    assert not (folder / "targets" / "train_model_0").exists()
