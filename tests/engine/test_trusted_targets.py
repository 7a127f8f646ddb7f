"""A target is published only when it can be trusted: inputs unchanged by the run, declared outputs there, any file name."""

from __future__ import annotations

import json
import os
import sqlite3
import textwrap
from pathlib import Path

import pytest

from helpers import last_json, nemoflow, published_target, runs_by_step

PIPELINE = textwrap.dedent("""
    import os
    from pathlib import Path

    import nemoflow


    def make(src: str) -> None:
        text = Path(src).read_text()
        if os.environ.get("NF_TEST_EDIT_INPUT"):  # the user edits the input while the step runs
            text = "edited while running\\n"
            Path(src).write_text(text)
        if not os.environ.get("NF_TEST_WRITE_NOTHING"):
            (nemoflow.output_dir() / "out.txt").write_text(text.upper())
        if os.environ.get("NF_TEST_ODD_NAME"):  # a name that is not UTF-8
            with open(os.path.join(os.fsencode(nemoflow.output_dir()), b"caf\\xe9.txt"), "wb") as out:
                out.write(b"odd")


    def consume(data: str, scale: int = 1) -> int:
        return scale * len(Path(data).read_text())


    def pipeline():
        exp = nemoflow.Experiment("trust")
        made = exp.add(nemoflow.Partial(make, src=nemoflow.File("inputs/x.csv")), name="make")
        exp.add(nemoflow.Partial(consume, data=made.output("out.txt")), name="consume")
        return exp
""")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "x.csv").write_text("a,b\n")
    (tmp_path / "trust.py").write_text(PIPELINE)
    return tmp_path


def _build(folder: Path, *args: str, env: dict[str, str] | None = None) -> dict:
    return last_json(nemoflow("build", "trust.py", "--json", *args, cwd=folder, env=env).stdout)


@pytest.mark.parametrize("direct", [False, True], ids=["subprocess", "direct"])
def test_an_input_edited_while_its_step_runs_publishes_nothing(folder: Path, direct: bool) -> None:
    options = ("--direct",) if direct else ()
    result = _build(folder, *options, env={"NF_TEST_EDIT_INPUT": "1"})
    failed = {s["name"]: s for s in result["failed"]}
    assert "input inputs/x.csv changed while the step ran; nothing was published — build again" in failed["make"]["error"]
    assert not any((folder / "targets" / "make").glob("*/nemoflow.json"))  # no poisoned target under the old key
    assert list((folder / "targets" / ".failed" / "make").iterdir())  # kept like any failure
    assert runs_by_step(folder)["make"]["status"] == "failed"

    (folder / "inputs" / "x.csv").write_text("a,b\n")  # put back: the key of the first attempt again
    again = _build(folder, *options)
    assert {s["name"] for s in again["ran"]} == {"make", "consume"}
    assert (published_target(folder, "make") / "out.txt").read_text() == "A,B\n"


def test_a_step_that_does_not_write_a_declared_output_fails(folder: Path) -> None:
    result = _build(folder, env={"NF_TEST_WRITE_NOTHING": "1"})
    failed = {s["name"]: s for s in result["failed"]}
    assert "did not write out.txt" in failed["make"]["error"]
    assert "nothing was published" in failed["make"]["error"]
    assert not (folder / "targets" / "make").exists() or not any((folder / "targets" / "make").glob("*/nemoflow.json"))
    assert "upstream make failed" in failed["consume"]["error"]


def test_an_output_whose_name_is_not_utf8_is_recorded(folder: Path) -> None:
    odd = os.fsdecode(b"caf\xe9.txt")
    try:
        (folder / odd).write_bytes(b"")
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    (folder / odd).unlink()
    result = _build(folder, env={"NF_TEST_ODD_NAME": "1"})
    assert {s["name"] for s in result["ran"]} == {"make", "consume"}, result
    target = published_target(folder, "make")
    manifest = json.loads((target / "nemoflow.json").read_text())
    assert odd in {f["path"] for f in manifest["files"]}  # the exact name, back from JSON
    assert runs_by_step(folder)["make"]["status"] == "succeeded"
    conn = sqlite3.connect(folder / "targets" / "ledger.db")
    try:
        paths = {row[0] for row in conn.execute("select path from artifacts")}
    finally:
        conn.close()
    assert {"caf\\xe9.txt", "out.txt"} <= paths
    assert _build(folder)["ran"] == []  # the no-op check stats the odd name too
    assert nemoflow("audit", str(target / "out.txt"), cwd=folder).returncode == 0
