"""log_metrics keeps the clock out of the step's outputs: metrics.jsonl depends only on what was logged."""

from __future__ import annotations

import json
from pathlib import Path

from audit_project import make_project

import nemoflow as nf

from helpers import nemoflow, published_target


def test_metrics_rows_hold_no_time_and_the_sidecar_is_not_an_output(tmp_path: Path) -> None:
    make_project(tmp_path)
    nemoflow("build", "audited.py", cwd=tmp_path, check=True)
    folder = published_target(tmp_path, "load")
    assert [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()] == [{"n": 3}]
    (stamp,) = [json.loads(line) for line in (folder / "metrics.times.jsonl").read_text().splitlines()]
    assert isinstance(stamp["time"], float)
    outputs = {f["path"] for f in json.loads((folder / "nemoflow.json").read_text())["files"]}
    assert outputs == {"metrics.jsonl", "values.json"}  # the sidecar is not hashed, so not compared


def test_exp_metrics_still_gives_each_row_its_time(tmp_path: Path) -> None:
    make_project(tmp_path)
    nemoflow("build", "audited.py", cwd=tmp_path, check=True)
    exp = nf.Experiment.from_title("audited", store=str(tmp_path / "targets"))
    (row,) = exp.metrics("load")
    assert row["n"] == 3 and isinstance(row["time"], float)
