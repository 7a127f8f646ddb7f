"""`exp.run` from `python -c` or a script: a function it cannot run fails first with one line saying why;
a step that fails raises BuildFailed with its cause and where its full log is."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from helpers import REPO

FILELESS = """\
import nemoflow

def train(n: int) -> int:
    return n

exp = nemoflow.Experiment("c")
exp.add(nemoflow.Partial(train, n=1), name="train")
print("ok" if exp.run(DIRECT).ok else "not ok")
"""

FAILING = """\
import nemoflow


def report() -> None:
    print("rendering the report", flush=True)
    raise RuntimeError("the report template is missing")


if __name__ == "__main__":
    exp = nemoflow.Experiment("s")
    exp.add(nemoflow.Partial(report), name="report")
    exp.run()
"""


def _python(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NEMOFLOW_STORE"}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_python_c_functions_fail_before_running_with_what_to_do(tmp_path: Path) -> None:
    proc = _python("-c", FILELESS.replace("DIRECT", ""), cwd=tmp_path)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert "'train'" in last and "without a file" in last and "direct=True" in last, proc.stderr
    assert not (tmp_path / "targets" / ".failed").exists()  # nothing ran


def test_python_c_functions_run_in_process_with_direct(tmp_path: Path) -> None:
    proc = _python("-c", FILELESS.replace("DIRECT", "direct=True"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_build_failed_from_a_script_names_the_cause_and_the_log(tmp_path: Path) -> None:
    (tmp_path / "s.py").write_text(FAILING)
    proc = _python("s.py", cwd=tmp_path)
    assert proc.returncode == 1
    message = proc.stderr[proc.stderr.index("BuildFailed") :]
    assert "1 step(s) failed: report" in message
    assert "RuntimeError: the report template is missing" in message
    assert 'raise RuntimeError("the report template is missing")' in message  # the log's last lines
    log = re.search(r"full log: (\S+)", message)
    assert log, message
    assert "rendering the report" in Path(log.group(1)).read_text()
