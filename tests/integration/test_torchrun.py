"""``launcher="torchrun"`` on the real single-node Slurm: two processes rendezvous at the head node and all-reduce.

The CPU torch is Debian's ``python3-torch`` (PyPI's wheels are CUDA builds; no other index is reachable),
seen by the venv /opt/nemoflow-torch that .ci/services.sh makes. Its torchrun (1.13 on Python 3.11) cannot
parse the default ``--redirects=0 --tee=0`` (IntFlag iteration changed in 3.11), so the test passes
``--redirects=1 --tee=1`` through ``launcher_args``.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from nemoflow.executors.launchers import HEAD_NODE_LINES
from nemoflow.executors.slurm import SlurmExecutor
from nemoflow.executors.slurm_script import render_script

from helpers import nemoflow

PIPELINE = """
import nemoflow


def allreduce() -> int | None:
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    total = torch.tensor([float(rank + 1)])
    dist.all_reduce(total)
    print(f"rank {{rank}} of {{world}}: sum {{total.item()}}", flush=True)
    if rank == 0:
        (nemoflow.output_dir() / "sum.txt").write_text(str(total.item()))
        return world
    return None


ex = nemoflow.SlurmExecutor(
    partition={partition!r}, ntasks_per_node=2, launcher="torchrun", launcher_args=["--redirects=1", "--tee=1"],
    time="00:05:00", poll_interval=0.5, python={python!r},
)
exp = nemoflow.Experiment("torchrun")
exp.add(nemoflow.Partial(allreduce), name="allreduce", executor=ex)
"""


def _script(executor: SlurmExecutor, command: list[str]) -> str:
    return render_script(executor, header="h", job_name="j", log_file="/l", workdir="/w", command=command, env={})


def test_torchrun_script_starts_one_launcher_per_node_at_the_head_node():
    executor = SlurmExecutor(nodes=2, ntasks_per_node=4, launcher="torchrun")
    text = _script(executor, ["py", "-m", "nemoflow.run_step", "J"])
    assert 'head_node_ip=$(srun --nodes=1 --ntasks=1 -w "$head_node"' in text
    last = text.strip().splitlines()[-1]
    assert last.startswith("srun --nodes=2 --ntasks=2 --ntasks-per-node=1 py -m torch.distributed.run")
    assert "--nnodes=2 --nproc_per_node=4 --rdzv_backend=c10d --rdzv_endpoint=$head_node_ip:29500" in last
    assert last.endswith("-m nemoflow.run_step J")  # the step module, started by torchrun with the same Python


def test_single_node_script_runs_two_processes_at_the_head_node():
    executor = SlurmExecutor(partition="debug", nodes=1, ntasks_per_node=2, launcher="torchrun")
    text = _script(executor, ["/opt/py", "-m", "nemoflow.run_step", "/w/job.json"])
    lines = text.strip().splitlines()
    assert "#SBATCH --ntasks-per-node=2" in lines  # the allocation holds both processes ...
    assert lines[-4:-1] == HEAD_NODE_LINES
    assert lines[-1] == (  # ... and srun starts one torchrun in it, which starts both
        "srun --nodes=1 --ntasks=1 --ntasks-per-node=1 /opt/py -m torch.distributed.run --nnodes=1 --nproc_per_node=2"
        " --rdzv_backend=c10d --rdzv_endpoint=$head_node_ip:29500 --rdzv_id=$SLURM_JOB_ID -m nemoflow.run_step /w/job.json"
    )


def _torch_python(slurm_service: Any) -> str:
    """The interpreter with Debian's torch that .ci/services.sh makes; skips the test when it is missing."""
    why = "needs Debian python3-torch and /opt/nemoflow-torch: run sudo bash .ci/services.sh"
    python = slurm_service.torch_python
    if not python or not os.access(python, os.X_OK):
        pytest.skip(f"{why} (no torch_python in services.json, or it is not there)")
    probe = subprocess.run(
        [python, "-c", "import torch, torch.distributed, pydantic, dill"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"{why} ({python} cannot import torch, pydantic, dill: {probe.stderr.strip().splitlines()[-1:]})")
    return python


def test_two_process_torchrun_step_on_slurm(tmp_path: Path, slurm_service: Any) -> None:
    python = _torch_python(slurm_service)
    pipeline = tmp_path / "torchrun_pipeline.py"
    pipeline.write_text(textwrap.dedent(PIPELINE.format(partition=slurm_service.partition, python=python)))
    nemoflow("build", str(pipeline), cwd=tmp_path, check=True, timeout=240)
    [target] = [p for p in (tmp_path / "targets" / "allreduce").iterdir() if (p / "nemoflow.json").exists()]
    assert (target / "sum.txt").read_text() == "3.0"  # 1 + 2: both ranks took part
    assert json.loads((target / "result.json").read_text()) == 2
    log = (target / "nemoflow.log").read_text()
    assert "rank 0 of 2: sum 3.0" in log and "rank 1 of 2: sum 3.0" in log
    assert "torch.distributed.run --nnodes=1 --nproc_per_node=2" in (target / "nemoflow-sbatch.sh").read_text()
