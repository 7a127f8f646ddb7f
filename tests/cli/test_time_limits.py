"""`nemoflow build --step-timeout` stops a step that runs too long; `--timeout` alone is refused, not ignored."""

from __future__ import annotations

import textwrap
from pathlib import Path

from helpers import last_json, nemoflow

PIPELINE = textwrap.dedent("""
    import time
    import nemoflow

    def slow(s: float) -> float:
        time.sleep(s)
        return s

    def pipeline():
        exp = nemoflow.Experiment("limits")
        exp.add(nemoflow.Partial(slow, s=30), name="slow")
        return exp
""")


def test_step_timeout_stops_the_step_and_fails_the_build(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(PIPELINE)
    proc = nemoflow("build", "p.py", "--step-timeout", "1", "--json", cwd=tmp_path, timeout=60)
    assert proc.returncode == 1
    [failed] = last_json(proc.stdout)["failed"]
    assert failed["name"] == "slow" and "timed out after 1 s" in failed["error"] and failed["seconds"] < 10


def test_timeout_without_a_scheduler_is_refused_with_the_option_meant(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(PIPELINE)
    proc = nemoflow("build", "p.py", "--timeout", "5", cwd=tmp_path)
    assert proc.returncode == 2 and "--step-timeout 5" in proc.stderr
    assert not (tmp_path / "targets").exists()
    bad = nemoflow("build", "p.py", "--step-timeout", "-1", cwd=tmp_path)
    assert bad.returncode == 2 and "positive number of seconds" in bad.stderr
