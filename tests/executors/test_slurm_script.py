"""The sbatch script nemoflow writes (golden file), the torchrun line, and how Slurm's reports are read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nemoflow.executors.base import JobState
from nemoflow.executors.slurm import SlurmExecutor
from nemoflow.executors.slurm_poll import parse_report, parse_state, query_command
from nemoflow.executors.slurm_script import render_script
from nemoflow.executors.tunnels import SSHTunnel

GOLDEN = Path(__file__).parent.parent / "golden" / "sbatch_torchrun.sh"


def representative() -> SlurmExecutor:
    return SlurmExecutor(
        account="llm",
        partition="batch",
        qos="high",
        nodes=2,
        ntasks_per_node=8,
        gpus_per_node=8,
        cpus_per_task=12,
        mem="0",
        time="04:00:00",
        exclusive=True,
        job_name_prefix="team-",
        additional_parameters={"comment": "nemoflow golden", "requeue": True},
        container_image="nvcr.io/nvidia/pytorch:24.01-py3",
        container_mounts=["/lustre/data:/data"],
        launcher="torchrun",
        env_vars={"NCCL_DEBUG": "INFO"},
        tunnel=SSHTunnel(host="login.cluster", user="alice", job_dir="/lustre/alice/jobs"),
        python="python",
    )


def render_representative() -> str:
    root = "/lustre/alice/jobs/exp_1/train-0123456789ab-deadbeef"
    return render_script(
        representative(),
        header="nemoflow step 'train', key 0123456789ab, run 20261126-000000-deadbeef",
        job_name="train-0123456789ab-deadbeef",
        log_file=f"{root}/nemoflow.log",
        workdir="/lustre/alice/jobs/.nemoflow/code-0011223344556677",
        command=["python", "-m", "nemoflow.run_step", f"{root}/nemoflow-job.json"],
        env={"PYTHONPATH": "/lustre/alice/jobs/.nemoflow/runtime-aa", "NCCL_DEBUG": "INFO", "NOTE": "two words"},
        after=["1001", "1002"],
        mounts=[f"{root}:{root}"],
    )


def test_sbatch_script_matches_the_golden_file():
    text = render_representative()
    if os.environ.get("NEMOFLOW_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_golden_script_is_valid_bash():
    import subprocess

    subprocess.run(["bash", "-n", str(GOLDEN)], check=True)


def test_torchrun_line_uses_the_head_node_and_one_launcher_per_node():
    text = render_representative()
    srun = text.strip().splitlines()[-1]
    assert srun.startswith("srun --nodes=2 --ntasks=2 --ntasks-per-node=1 --container-image=nvcr.io/nvidia/pytorch:24.01-py3")
    assert "python -m torch.distributed.run --nnodes=2 --nproc_per_node=8" in srun
    assert "--rdzv_endpoint=$head_node_ip:29500" in srun  # left for bash to expand
    assert "head_node_ip=" in text


def test_dependency_lines_only_with_upstream_jobs():
    text = render_script(
        SlurmExecutor(), header="h", job_name="j", log_file="/l", workdir="/w", command=["python"], env={}
    )
    assert "--dependency" not in text and "--kill-on-invalid-dep" not in text
    assert "--account" not in text  # unset fields are left to the cluster's defaults
    after = render_script(
        SlurmExecutor(dependency_type="afterany"),
        header="h",
        job_name="j",
        log_file="/l",
        workdir="/w",
        command=["python"],
        env={},
        after=["7"],
    )
    assert "#SBATCH --dependency=afterany:7" in after


@pytest.mark.parametrize(
    ("word", "code", "state", "exit_code"),
    [
        ("COMPLETED", "0:0", JobState.SUCCEEDED, 0),
        ("FAILED", "3:0", JobState.FAILED, 3),
        ("CANCELLED by 0", "0:15", JobState.CANCELLED, 0),
        ("TIMEOUT", "0:0", JobState.FAILED, 0),
        ("OUT_OF_MEMORY", "0:125", JobState.FAILED, 0),
        ("PENDING", "0:0", JobState.PENDING, 0),
        ("RUNNING", "0:0", JobState.RUNNING, 0),
        ("REQUEUED", "0:0", JobState.RUNNING, 0),
    ],
)
def test_sacct_states(word, code, state, exit_code):
    parsed = parse_state(word, code)
    assert parsed.state is state and parsed.exit_code == exit_code


def test_one_query_reports_many_jobs_and_squeue_knows_live_jobs_first():
    command = query_command(["11", "12", "13"])
    assert command.count("sacct ") == 1 and command.count("squeue ") == 1 and command.count("-j 11,12,13") == 2
    report = parse_report(
        "11|COMPLETED|0:0\n12|PENDING|0:0\n13_0|COMPLETED|0:0\n13_1|FAILED|2:0\n#squeue\n12|RUNNING\n"
    )
    assert report["11"].state is JobState.SUCCEEDED
    assert report["12"].state is JobState.RUNNING  # accounting lags behind the controller
    assert report["13"].state is JobState.FAILED and report["13"].exit_code == 2  # an array fails when a task does


def test_executor_round_trips_through_its_data():
    from nemoflow.executors import executor_from_data, executor_to_data

    ex = representative()
    again = executor_from_data(executor_to_data(ex))
    assert again == ex and isinstance(again.tunnel, SSHTunnel)


PREVIEW_PIPELINE = """
import nemoflow
from nemoflow.executors.packagers import PatternPackager
from nemoflow.executors.slurm import SlurmExecutor
from nemoflow.executors.tunnels import SSHTunnel


def make(n: int = 1) -> int:
    return n


def pipeline():
    exp = nemoflow.Experiment("preview")
    tunnel = SSHTunnel(host="login.cluster", user="alice", job_dir="~/jobs")
    plain = SlurmExecutor(partition="debug", tunnel=tunnel)
    packaged = SlurmExecutor(
        partition="debug",
        tunnel=tunnel,
        packager=PatternPackager(include=["*.py"]),
        container_image="nvcr.io/nvidia/pytorch:24.01-py3",
    )
    exp.add(nemoflow.Partial(make), name="plain", executor=plain)
    exp.add(nemoflow.Partial(make, n=2), name="packaged", executor=packaged)
    return exp
"""


def test_dry_run_scripts_are_valid_shell_with_their_placeholders_marked(tmp_path: Path):
    """``build --dry-run`` prints what it would submit: ``~`` as "$HOME", unknown digests as variables."""
    import subprocess

    from helpers import last_json, nemoflow

    (tmp_path / "p.py").write_text(PREVIEW_PIPELINE)
    proc = nemoflow("build", "p.py", "--dry-run", "--json", cwd=tmp_path, check=True)
    scripts = last_json(proc.stdout)["scripts"]
    assert set(scripts) == {"plain", "packaged"}
    for name, text in scripts.items():
        path = tmp_path / f"{name}.sh"
        path.write_text(text)
        subprocess.run(["bash", "-n", str(path)], check=True)
        assert "'~" not in text and "<digest>" not in text, text
        assert 'cd "$HOME"/jobs/' in text
        assert '"${NEMOFLOW_RUNTIME_DIGEST}"' in text
        assert ': "${NEMOFLOW_RUNTIME_DIGEST:?' in text  # run as printed, it stops at once and says why
    assert 'code-"${NEMOFLOW_CODE_DIGEST}"' in scripts["packaged"]
    assert "NEMOFLOW_CODE_DIGEST" not in scripts["plain"]
    # run as printed, the script stops at the first placeholder it cannot fill, naming it
    run = subprocess.run(["bash", str(tmp_path / "plain.sh")], capture_output=True, text=True)
    assert run.returncode != 0 and "NEMOFLOW_RUNTIME_DIGEST: dry-run placeholder" in run.stderr
