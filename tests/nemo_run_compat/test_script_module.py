"""``run.Script("pkg.train", m=True)``: NeMo Run's module scripts run as ``python -m pkg.train`` in a build, and
the key sees the module's source (editing it reruns the step; a no-op rebuild runs nothing)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from helpers import last_json, names, nemoflow

PIPELINE = """
import nemoflow as run

exp = run.Experiment("module-script")
exp.add(run.Script("pkg.train", entrypoint="python", m=True, args=["--n", "3"]), name="train")
"""


def _project(folder: Path, body: str) -> None:
    (folder / "pkg").mkdir(exist_ok=True)
    (folder / "pkg" / "__init__.py").write_text("")
    (folder / "pkg" / "train.py").write_text(textwrap.dedent(body))
    (folder / "p.py").write_text(PIPELINE)


TRAIN = """
    import os, sys
    from pathlib import Path

    n = int(sys.argv[sys.argv.index("--n") + 1])
    print(f"running as {__name__}, n={n}")
    Path(os.environ["NEMOFLOW_OUTPUT_DIR"], "out.txt").write_text(str(n * FACTOR))
"""


def test_a_module_script_runs_with_python_dash_m_and_its_source_is_in_the_key(tmp_path: Path) -> None:
    _project(tmp_path, TRAIN.replace("FACTOR", "2"))
    first = nemoflow("build", "p.py", "--json", cwd=tmp_path, check=True)
    assert names(last_json(first.stdout)["ran"]) == {"train"}
    [out] = (tmp_path / "targets" / "train").glob("*/out.txt")
    assert out.read_text() == "6"
    log = nemoflow("logs", "module-script", "train", cwd=tmp_path, check=True).stdout
    assert "running as __main__, n=3" in log

    assert last_json(nemoflow("build", "p.py", "--json", cwd=tmp_path, check=True).stdout)["ran"] == []
    _project(tmp_path, TRAIN.replace("FACTOR", "5"))  # the module changed: the step reruns
    again = last_json(nemoflow("build", "p.py", "--json", cwd=tmp_path, check=True).stdout)
    assert names(again["ran"]) == {"train"}


def test_a_module_that_does_not_exist_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(PIPELINE.replace("pkg.train", "pkg.nowhere"))
    done = nemoflow("build", "p.py", cwd=tmp_path)
    assert done.returncode == 2
    assert "module script 'pkg.nowhere'" in done.stderr + done.stdout
