"""The sbatch script of a Ray cluster on Slurm (RayCluster, RayJob, ``SlurmExecutor(ray_cluster=True)``):
valid bash, one live cluster per name, a head and a worker per other node, and each node's Ray ended with it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from nemoflow.executors.slurm import SlurmExecutor
from nemoflow.executors.slurm_ray import cluster_script


def _script(executor: SlurmExecutor, tmp_path: Path, **options: object) -> str:
    text = cluster_script(
        executor,
        name="sweep",
        job_name="nemoflow-ray-sweep",
        cluster_dir="/shared/jobs/ray-clusters/sweep",
        log_file="/shared/jobs/ray-clusters/sweep/ray-cluster.log",
        python="/shared/venvs/ray/bin/python",
        ready_timeout=300,
        **options,  # type: ignore[arg-type]
    )
    path = tmp_path / "script.sh"
    path.write_text(text)
    checked = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    return text


def test_a_cluster_script_holds_one_live_cluster_per_name(tmp_path: Path) -> None:
    executor = SlurmExecutor(partition="batch", nodes=4, ntasks_per_node=8, gpus_per_node=8, env_vars={"A": "b c"})
    text = _script(executor, tmp_path, pre_ray_start_commands=["module load cuda"])
    assert "#SBATCH --dependency=singleton" in text
    assert "#SBATCH --nodes=4" in text and "#SBATCH --ntasks-per-node=1" in text  # one Ray per node
    assert "#SBATCH --gpus-per-node=8" in text and "--num-gpus=8" in text
    assert "export A='b c'" in text
    assert text.index("module load cuda") < text.index("start --head")
    assert 'for node in "${NODES[@]:1}"' in text and "start --block --address=" in text
    assert "head.json" in text and 'wait "${STEPS[0]}"' in text  # held until scancel


def test_a_job_script_runs_its_command_on_the_head_and_ends(tmp_path: Path) -> None:
    text = _script(SlurmExecutor(), tmp_path, command="python train.py --lr 0.1", workdir="/shared/code")
    assert "--dependency=singleton" not in text  # a job's cluster is its own
    assert 'export RAY_ADDRESS="$HEAD_IP:$GCS_PORT"' in text
    assert "cd /shared/code" in text and "python train.py --lr 0.1" in text
    assert text.rstrip().endswith('exit "$code"')


def test_a_runtime_env_goes_through_ray_job_submit(tmp_path: Path) -> None:
    text = _script(SlurmExecutor(), tmp_path, command="python eval.py", runtime_env_yaml="/shared/env.yaml")
    assert "job submit" in text and "--runtime-env=/shared/env.yaml" in text


def test_a_step_on_its_own_ray_cluster_waits_for_its_upstream_jobs(tmp_path: Path) -> None:
    text = _script(SlurmExecutor(dependency_type="afterany"), tmp_path, command="true", after=["11", "12"])
    assert "#SBATCH --dependency=afterany:11:12" in text


def test_each_node_ends_every_process_of_its_ray_session(tmp_path: Path) -> None:
    """The per-node wrapper, for real: a child that outlives its 'ray start --block' stand-in is ended."""
    text = _script(SlurmExecutor(), tmp_path)
    wrapper = text.split("RAY_NODE=", 1)[1].split("\nfree_port()", 1)[0]
    orphan = tmp_path / "orphan.pid"
    script = tmp_path / "node.sh"
    # the stand-in leaves a child behind, as Ray's agents outlive a raylet that died
    script.write_text(
        f"RAY_NODE={wrapper}\nbash -c \"$RAY_NODE\" ray-node bash -c 'sleep 300 & echo $! > {orphan}; sleep 1'\n"
    )
    subprocess.run(["bash", str(script)], timeout=60, check=True)
    pid = int(orphan.read_text())
    assert not _alive(pid), "the orphan of the node's session was ended with it"


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
