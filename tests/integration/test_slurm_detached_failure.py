"""A detached Slurm job that fails says the same whether a waiting build or ``nemoflow status`` collects it:
the backend's words and the log's last line (real Slurm on the login node, as in test_slurm.py)."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import Any

from helpers import nemoflow, runs_by_step

PIPELINE = """
import sys

import nemoflow


def fail(code: int) -> None:
    print("the last words before exit", code)
    sys.exit(code)


ex = nemoflow.SlurmExecutor(partition={partition!r}, time="00:05:00", poll_interval=0.3,
                            tunnel=nemoflow.LocalTunnel(job_dir={job_dir!r}))
exp = nemoflow.Experiment("slurm_detached_failure")
exp.add(nemoflow.Partial(fail, code={code}), name="bad", executor=ex)
"""


def _pipeline(folder: Path, slurm: Any, code: int) -> Path:
    folder.mkdir()
    path = folder / "p.py"
    text = PIPELINE.format(partition=slurm.partition, job_dir=str(folder / "jobs"), code=code)
    path.write_text(textwrap.dedent(text))
    return path


def _explained(folder: Path) -> None:
    """The failed run's error is Slurm's words, then the last line of the log it kept (how a waiting build says it)."""
    run = runs_by_step(folder)["bad"]
    assert run["status"] == "failed" and run["exit_code"] == 7, run
    head = f"Slurm job {run['job_id']} FAILED with exit code 7: "
    assert run["error"].startswith(head), run["error"]
    lines = [line.strip() for line in Path(run["log_path"]).read_text().splitlines() if line.strip()]
    assert "the last words before exit 7" in lines
    assert run["error"] == head + lines[-1].removeprefix("nemoflow: "), (run["error"], lines[-3:])


def test_status_reports_a_failed_detached_job_with_its_log_like_a_waiting_build(tmp_path, slurm_service):
    waited = tmp_path / "waited"
    nemoflow("build", str(_pipeline(waited, slurm_service, 7)), cwd=waited)
    _explained(waited)

    detached = tmp_path / "detached"
    pipeline = _pipeline(detached, slurm_service, 7)
    nemoflow("build", str(pipeline), "--detach", cwd=detached, check=True)
    deadline = time.monotonic() + 120
    while runs_by_step(detached)["bad"]["status"] == "submitted" and time.monotonic() < deadline:
        nemoflow("status", str(pipeline), cwd=detached, check=True)  # collects the job once it ended
        time.sleep(1)
    _explained(detached)
