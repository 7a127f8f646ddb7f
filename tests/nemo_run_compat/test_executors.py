"""Executors as a NeMo Run user calls them: nnodes, nproc_per_node, assign, launchers, macros, new fields."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import nemoflow as run
from nemoflow.executors import executor_from_data, executor_to_data
from nemoflow.executors.slurm_script import render_script, sbatch_directives


class Role:
    """What ``ExecutorMacros.apply`` works on (torchx's Role in NeMo Run): args and env."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.args, self.env = args, env


# ---- the base executor ------------------------------------------------------------------------------
def test_base_executor_helpers_are_not_implemented() -> None:
    executor = run.Executor()
    with pytest.raises(NotImplementedError):
        executor.assign("exp_id", "exp_dir", "task_id", "task_id")
    with pytest.raises(NotImplementedError):
        executor.nnodes()
    with pytest.raises(NotImplementedError):
        executor.nproc_per_node()
    assert executor.macro_values() is None
    assert executor.cleanup("handle") is None
    assert executor.info() == "Executor"


def test_get_launcher_defaults_to_a_plain_launcher_and_builds_torchrun_from_its_name() -> None:
    plain = run.Executor().get_launcher()
    assert type(plain).__name__ == "Launcher" and not isinstance(plain, run.Torchrun)
    executor = run.Executor(launcher="torchrun")
    assert isinstance(executor.get_launcher(), run.Torchrun)
    assert executor.get_launcher() is executor.get_launcher()
    mine = run.Torchrun(rdzv_port=29600)
    assert run.Executor(launcher=mine).get_launcher() == mine
    with pytest.raises(ValueError):
        run.Executor(launcher="nosuchlauncher")


def test_clone_is_equal_and_independent() -> None:
    executor = run.LocalExecutor(env_vars={"A": "1"})
    clone = executor.clone()
    assert clone == executor and clone is not executor
    clone.env_vars["A"] = "2"
    assert executor.env_vars == {"A": "1"}


# ---- LocalExecutor ----------------------------------------------------------------------------------
def test_local_executor_counts() -> None:
    executor = run.LocalExecutor(ntasks_per_node=2)
    assert executor.ntasks_per_node == 2
    assert executor.experiment_id is None
    assert run.LocalExecutor().nnodes() == 1
    assert run.LocalExecutor(ntasks_per_node=3).nproc_per_node() == 3


def test_local_executor_assign_sets_the_experiment_and_job_folder(tmp_path: Path) -> None:
    executor = run.LocalExecutor()
    executor.assign(exp_id="test_exp", exp_dir=str(tmp_path), task_id="test_task", task_dir="test_task")
    assert executor.experiment_id == "test_exp"
    assert executor.experiment_dir == str(tmp_path)
    assert executor.job_dir == os.path.join(tmp_path, "test_task")
    assert not os.path.exists(executor.job_dir)


def test_assign_never_reaches_the_recorded_executor(tmp_path: Path) -> None:
    executor = run.LocalExecutor(env_vars={"A": "1"})
    before = executor_to_data(executor)
    executor.assign("exp", str(tmp_path), "task", "task")
    assert (
        executor_to_data(executor)
        == before
        == {
            "class": "nemoflow.executors.local:LocalExecutor",
            "fields": {"env_vars": {"A": "1"}},
        }
    )


# ---- SlurmExecutor ----------------------------------------------------------------------------------
def test_slurm_nnodes_and_nproc_per_node() -> None:
    executor = run.SlurmExecutor(account="test", nodes=2, ntasks_per_node=4)
    assert executor.nnodes() == 2
    assert executor.nproc_per_node() == 4
    assert (
        run.SlurmExecutor(account="test", nodes=2, ntasks_per_node=4, torchrun_nproc_per_node=8).nproc_per_node() == 8
    )
    assert run.SlurmExecutor(account="test", nodes=2, ntasks_per_node=1, gpus_per_node=8).nproc_per_node() == 8
    assert run.SlurmExecutor(account="test", nodes=2, ntasks_per_node=4, gpus_per_task=2).nproc_per_node() == 2
    assert run.SlurmExecutor(account="test", ntasks_per_node=4, gpus_per_node=8).nproc_per_node() == 4


def test_slurm_macro_values() -> None:
    macros = run.SlurmExecutor(account="test").macro_values()
    assert macros.head_node_ip_var == "head_node_ip"
    assert macros.nproc_per_node_var == "SLURM_NTASKS_PER_NODE"
    assert macros.num_nodes_var == "SLURM_NNODES"
    assert macros.node_rank_var == "SLURM_NODEID"
    assert macros.het_group_host_var == "het_group_host"
    assert run.ExecutorMacros.group_host(1) == "$$${het_group_host_var}_1"
    assert macros.substitute(f"server_host={run.ExecutorMacros.group_host(0)}") == "server_host=$het_group_host_0"


def test_executor_macros_substitute_and_apply() -> None:
    macros = run.ExecutorMacros(
        head_node_ip_var="192.168.0.1",
        nproc_per_node_var="4",
        num_nodes_var="2",
        node_rank_var="0",
        het_group_host_var="HOST",
    )
    assert macros.substitute("${head_node_ip_var}") == "192.168.0.1"
    assert macros.substitute(run.ExecutorMacros.NPROC_PER_NODE_VAR) == "4"
    role = Role(["--ip", "${head_node_ip_var}", "--nproc", "${nproc_per_node_var}"], {"VAR": "${num_nodes_var}"})
    applied = macros.apply(role)
    assert applied.args == ["--ip", "192.168.0.1", "--nproc", "4"] and applied.env == {"VAR": "2"}
    assert role.args[1] == "${head_node_ip_var}"  # a copy was changed


def test_slurm_local_and_docker_assign() -> None:
    for executor in (run.SlurmExecutor(account="a"), run.DockerExecutor(container_image="img")):
        executor.assign("exp_1", "/exp", "task", "task_dir")
        assert (executor.experiment_id, executor.job_dir) == ("exp_1", "/exp/task_dir")


def _directives(executor: run.SlurmExecutor) -> list[str]:
    return sbatch_directives(executor, job_name="j", log_file="/l")


def test_slurm_exclusive_takes_a_bool_or_a_string() -> None:
    assert "#SBATCH --exclusive" in _directives(run.SlurmExecutor(exclusive=True))
    assert "#SBATCH --exclusive=user" in _directives(run.SlurmExecutor(exclusive="user"))
    assert not [d for d in _directives(run.SlurmExecutor(exclusive=False)) if "exclusive" in d]
    assert not [d for d in _directives(run.SlurmExecutor()) if "exclusive" in d]


def test_slurm_torchrun_nproc_per_node_reaches_torchrun() -> None:
    executor = run.SlurmExecutor(nodes=2, ntasks_per_node=1, torchrun_nproc_per_node=3, launcher="torchrun")
    text = render_script(
        executor, header="h", job_name="j", log_file="/l", workdir="/w", command=["py", "-m", "m"], env={}
    )
    assert "--nnodes=2 --nproc_per_node=3" in text.strip().splitlines()[-1]


def test_slurm_torchrun_object_sets_the_rendezvous_port() -> None:
    executor = run.SlurmExecutor(ntasks_per_node=2, launcher=run.Torchrun(rdzv_port=29611))
    text = render_script(
        executor, header="h", job_name="j", log_file="/l", workdir="/w", command=["py", "-m", "m"], env={}
    )
    assert "--rdzv_endpoint=$head_node_ip:29611" in text


def test_new_fields_round_trip_as_recorded_data_and_defaults_stay_out() -> None:
    executors = [
        run.SlurmExecutor(exclusive="mcs", torchrun_nproc_per_node=4, launcher=run.Torchrun(rdzv_port=29700)),
        run.LocalExecutor(cpus=[0], memory="1g", gpus=2, ntasks_per_node=2, launcher="torchrun"),
        run.DockerExecutor(container_image="img", runtime="nvidia", ipc_mode="host"),
    ]
    for executor in executors:
        assert executor_from_data(executor_to_data(executor)) == executor
    assert executor_to_data(run.SlurmExecutor())["fields"] == {}
    assert executor_to_data(run.LocalExecutor())["fields"] == {}


# ---- DockerExecutor ---------------------------------------------------------------------------------
def test_docker_executor_takes_runtime_and_ipc_mode() -> None:
    executor = run.DockerExecutor(container_image="python:3.12", num_gpus=-1, runtime="nvidia", ipc_mode="host")
    assert (executor.runtime, executor.ipc_mode) == ("nvidia", "host")
    assert executor.nnodes() == 1 and executor.nproc_per_node() == 1
    assert run.DockerExecutor(container_image="img", ntasks_per_node=4).nproc_per_node() == 4


# ---- import_executor --------------------------------------------------------------------------------
EXECUTORS_FILE = """
import nemoflow as run

local = run.LocalExecutor(env_vars={"WHERE": "file"})


def gpu(devices: int = 1):
    return run.LocalExecutor(gpus=devices)
"""


def test_import_executor_reads_an_executors_file(tmp_path: Path) -> None:
    path = tmp_path / "executors.py"
    path.write_text(EXECUTORS_FILE)
    assert run.import_executor("local", file_path=str(path)).env_vars == {"WHERE": "file"}
    assert run.import_executor("gpu", file_path=str(path), devices=2).gpus == 2
    assert callable(run.import_executor("gpu", file_path=str(path), call=False))
    with pytest.raises(AttributeError, match="defines no 'gpus'"):
        run.import_executor("gpus", file_path=str(path))


def test_import_executor_defaults_to_nemorun_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEMORUN_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError):
        run.import_executor("local")
    (tmp_path / "executors.py").write_text(EXECUTORS_FILE)
    assert isinstance(run.import_executor("local"), run.LocalExecutor)
