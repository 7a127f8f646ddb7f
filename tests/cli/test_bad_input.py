"""Bad input: one clear message (where, what, a suggestion), exit code 2, store and ledger untouched."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from helpers import copy_pipeline, nemoflow, snapshot

GOOD_HEAD = """
import nemoflow

def double(x: int = 1) -> int:
    return 2 * x

def read(path: str) -> str:
    return open(path).read()
"""

CASES = {
    "syntax error": (
        "def broken(:\n    pass\n",
        [r"bad.py:10", "syntax error", "def broken(:"],
    ),
    "import error": (
        "import numpy_that_does_not_exist\n",
        [r"bad.py:10", "ModuleNotFoundError", "numpy_that_does_not_exist"],
    ),
    "no experiment": (
        "x = 1\n",
        ["defines no Experiment", "pipeline()"],
    ),
    "two steps with one name": (
        "exp = nemoflow.Experiment('e')\nexp.add(nemoflow.Partial(double), name='a')\nexp.add(nemoflow.Partial(double), name='a')\n",
        [r"bad.py:12", "two steps are named 'a'", "unique name"],
    ),
    "wrong type": (
        "exp = nemoflow.Experiment('e')\nexp.add(nemoflow.Partial(double, x='many'), name='a')\n",
        [r"bad.py:11", "x", "expected int", "'many'"],
    ),
    "unknown key": (
        "exp = nemoflow.Experiment('e')\nexp.add(nemoflow.Partial(double, y=3), name='a')\n",
        [r"bad.py:11", "no argument 'y'", "its arguments are: x"],
    ),
    "typo with suggestion": (
        "exp = nemoflow.Experiment('e')\nexp.add(nemoflow.Partial(read, pth='x'), name='a')\n",
        ["no argument 'pth'", "did you mean 'path'?"],
    ),
    "missing input file": (
        "exp = nemoflow.Experiment('e')\nexp.add(nemoflow.Partial(read, path=nemoflow.File('inputs/nope.txt')), name='a')\n",
        ["a.path", "input file 'inputs/nope.txt' not found"],
    ),
    "reference to another experiment": (
        "other = nemoflow.Experiment('other')\nh = other.add(nemoflow.Partial(double), name='up')\n"
        "def pipeline():\n    exp = nemoflow.Experiment('e')\n    exp.add(nemoflow.Partial(read, path=h.output('x')), name='a')\n    return exp\n",
        ["a.path", "refers to step 'up' of experiment 'other'"],
    ),
    "dependency cycle": (
        "def pipeline():\n    exp = nemoflow.Experiment('e')\n    a = exp.add(nemoflow.Partial(read, path='x'), name='a')\n"
        "    b = exp.add(nemoflow.Partial(read, path=a.output('f')), name='b')\n    a.task.path = b.output('g')\n    return exp\n",
        ["dependency cycle", "a -> b -> a"],
    ),
    "pipeline() raises": (
        "def pipeline():\n    raise RuntimeError('no GPU budget left')\n",
        [r"bad.py:11", "RuntimeError", "no GPU budget left"],
    ),
}


@pytest.fixture(scope="module")
def store_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a built quickstart, so there is a store and a ledger to protect."""
    folder = tmp_path_factory.mktemp("protected")
    copy_pipeline("quickstart.py", folder)
    nemoflow("build", "quickstart.py", "--direct", cwd=folder, check=True)
    return folder


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_pipeline_gives_one_clear_message_and_exit_2(case: str, store_folder: Path) -> None:
    body, expected = CASES[case]
    (store_folder / "bad.py").write_text(GOOD_HEAD + "\n" + textwrap.dedent(body))
    before = snapshot(store_folder / "targets")
    proc = nemoflow("build", "bad.py", cwd=store_folder)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    message = proc.stderr
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert "Traceback" not in message
    assert snapshot(store_folder / "targets") == before


def test_debug_shows_the_traceback(store_folder: Path) -> None:
    (store_folder / "bad.py").write_text(GOOD_HEAD + "import numpy_that_does_not_exist\n")
    proc = nemoflow("--debug", "build", "bad.py", cwd=store_folder)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr


def test_missing_pipeline_file(tmp_path: Path) -> None:
    proc = nemoflow("build", "nope.py", cwd=tmp_path)
    assert proc.returncode == 2
    assert "pipeline file 'nope.py' does not exist" in proc.stderr


def test_unknown_step_for_force_suggests_the_closest(store_folder: Path) -> None:
    proc = nemoflow("build", "quickstart.py", "--force", "train-smal", cwd=store_folder)
    assert proc.returncode == 2
    assert "did you mean 'train-small'" in proc.stderr


def test_a_failing_step_exits_1_and_its_dependents_do_not_run(tmp_path: Path) -> None:
    (tmp_path / "fails.py").write_text(
        textwrap.dedent("""
        import nemoflow

        def boom(x: int = 1) -> None:
            raise ValueError(f"x={x} is cursed")

        def after(value: object = None) -> None:
            pass

        def ok() -> int:
            return 1

        def pipeline():
            exp = nemoflow.Experiment("fails")
            b = exp.add(nemoflow.Partial(boom, x=13), name="boom")
            exp.add(nemoflow.Partial(after, value=b.result), name="after")
            exp.add(nemoflow.Partial(ok), name="ok")
            return exp
    """)
    )
    for mode in ([], ["--direct"]):
        proc = nemoflow("build", "fails.py", "--json", *mode, cwd=tmp_path)
        assert proc.returncode == 1
        from helpers import last_json

        result = last_json(proc.stdout)
        failed = {f["name"]: f for f in result["failed"]}
        assert "x=13 is cursed" in failed["boom"]["error"]
        assert failed["after"]["error"] == "not run: upstream boom failed"
        assert (
            not list((tmp_path / "targets" / "boom").glob("*/nemoflow.json"))
            if (tmp_path / "targets" / "boom").exists()
            else True
        )
    logs = list((tmp_path / "targets" / ".failed" / "boom").glob("*/nemoflow.log"))
    assert logs and "ValueError: x=13 is cursed" in logs[0].read_text()
