"""LocalExecutor's CPU, memory and GPU control, and a local multi-process torchrun step, as a ported user sets them."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import textwrap
from pathlib import Path

import pytest

import nemoflow as run
from nemoflow.pipeline.loading import load_pipeline

TORCH_PYTHON = "/opt/nemoflow-torch/bin/python"

PIPELINE = """
import json
import os
import nemoflow as run


def affinity() -> list:
    return sorted(os.sched_getaffinity(0))


def devices() -> str:
    return os.environ.get("CUDA_VISIBLE_DEVICES", "")


def hog(megabytes: int) -> int:
    block = bytearray(megabytes * 2**20)
    block[:: 4096] = b"x" * len(block[:: 4096])  # touch every page
    return len(block)


exp = run.Experiment("resources")
"""


def _build(tmp_path: Path, body: str) -> run.BuildResult:
    (tmp_path / "p.py").write_text(PIPELINE + textwrap.dedent(body))
    exp = load_pipeline(tmp_path / "p.py")
    try:
        return run.build_experiment(exp, store=tmp_path / "targets", workdir=tmp_path)
    except run.BuildFailed as exc:  # the steps' logs, shown when a test did not expect the failure
        exc.add_note("\n".join(p.read_text()[-3000:] for p in (tmp_path / "targets").rglob("nemoflow.log")))
        raise


def _result(tmp_path: Path, step: str) -> object:
    [target] = [p for p in (tmp_path / "targets" / step).iterdir() if (p / "nemoflow.json").exists()]
    return json.loads((target / "result.json").read_text())


def test_cpus_pins_the_step_to_that_many_cpus(tmp_path: Path) -> None:
    first = sorted(os.sched_getaffinity(0))[0]
    _build(
        tmp_path,
        f"""
        exp.add(run.Partial(affinity), name="one", executor=run.LocalExecutor(cpus=1))
        exp.add(run.Partial(affinity), name="listed", executor=run.LocalExecutor(cpus=[{first}]))
        """,
    )
    assert _result(tmp_path, "one") == [first]
    assert _result(tmp_path, "listed") == [first]


def test_cpus_beyond_this_machine_is_a_value_error() -> None:
    allowed = len(os.sched_getaffinity(0))
    executor = run.LocalExecutor(cpus=allowed + 1)  # valid as data: it may run on a bigger machine
    assert executor.cpus == allowed + 1
    with pytest.raises(ValueError):
        run.LocalExecutor(cpus=[0, 0])
    with pytest.raises(ValueError):
        run.LocalExecutor(cpus=0)


def test_gpus_selects_cuda_visible_devices(tmp_path: Path) -> None:
    _build(
        tmp_path,
        """
        exp.add(run.Partial(devices), name="two", executor=run.LocalExecutor(gpus=2))
        exp.add(run.Partial(devices), name="picked", executor=run.LocalExecutor(gpus=[1, 3]))
        exp.add(run.Partial(devices), name="by_env", executor=run.LocalExecutor(env_vars={"CUDA_VISIBLE_DEVICES": "5"}))
        """,
    )
    assert _result(tmp_path, "two") == "0,1"
    assert _result(tmp_path, "picked") == "1,3"
    assert _result(tmp_path, "by_env") == "5"


def test_gpus_and_cuda_visible_devices_together_are_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        run.LocalExecutor(gpus=1, env_vars={"CUDA_VISIBLE_DEVICES": "0"})


def test_memory_sizes_are_checked() -> None:
    assert run.LocalExecutor(memory="512m").memory == "512m"
    assert run.LocalExecutor(memory=2**30).memory == 2**30
    with pytest.raises(ValueError, match="bad memory size"):
        run.LocalExecutor(memory="lots")


def test_a_step_over_its_memory_limit_fails_as_out_of_memory_in_the_ledger(tmp_path: Path) -> None:
    with pytest.raises(run.BuildFailed) as caught:
        _build(
            tmp_path,
            """
            exp.add(run.Partial(hog, megabytes=400), name="hog", executor=run.LocalExecutor(memory="150m"))
            exp.add(run.Partial(hog, megabytes=20), name="small", executor=run.LocalExecutor(memory="150m"))
            """,
        )
    [failed] = caught.value.result.failed
    assert failed.name == "hog" and "out of memory" in (failed.error or "")
    assert _result(tmp_path, "small") == 20 * 2**20  # under the limit: runs as usual
    db = sqlite3.connect(tmp_path / "targets" / "ledger.db")
    status, error = db.execute("select status, error from runs where step = 'hog'").fetchone()
    assert status == "failed" and "out of memory" in error and "memory='150m'" in error


def test_ntasks_per_node_without_a_launcher_is_refused(tmp_path: Path) -> None:
    with pytest.raises(run.BuildFailed) as caught:
        _build(tmp_path, 'exp.add(run.Partial(devices), name="d", executor=run.LocalExecutor(ntasks_per_node=2))\n')
    assert "torchrun" in (caught.value.result.failed[0].error or "")


def _torch_python() -> str:
    if not os.access(TORCH_PYTHON, os.X_OK):
        pytest.skip(f"needs torch: {TORCH_PYTHON} (Debian's python3-torch venv of .ci/services.sh) is missing")
    probe = subprocess.run([TORCH_PYTHON, "-c", "import torch.distributed, pydantic, dill"], check=False)
    if probe.returncode != 0:
        pytest.skip(f"needs torch: {TORCH_PYTHON} cannot import torch.distributed, pydantic and dill")
    return TORCH_PYTHON


def test_ntasks_per_node_with_torchrun_runs_a_local_multi_process_step(tmp_path: Path) -> None:
    python = _torch_python()
    _build(
        tmp_path,
        f"""
        def allreduce() -> int | None:
            import torch
            import torch.distributed as dist

            dist.init_process_group("gloo")
            rank, world = dist.get_rank(), dist.get_world_size()
            total = torch.tensor([float(rank + 1)])
            dist.all_reduce(total)
            print(f"rank {{rank}} of {{world}}: sum {{total.item()}}", flush=True)
            return world if rank == 0 else None


        ex = run.LocalExecutor(ntasks_per_node=2, launcher="torchrun", python={python!r},
                               launcher_args=["--redirects=1", "--tee=1"])  # torch 1.13 on Python 3.11 needs them
        exp.add(run.Partial(allreduce), name="allreduce", executor=ex)
        """,
    )
    assert _result(tmp_path, "allreduce") == 2
    [target] = [p for p in (tmp_path / "targets" / "allreduce").iterdir() if (p / "nemoflow.json").exists()]
    log = (target / "nemoflow.log").read_text()
    assert "rank 0 of 2: sum 3.0" in log and "rank 1 of 2: sum 3.0" in log
