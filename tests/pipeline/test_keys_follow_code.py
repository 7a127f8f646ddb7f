"""Keys that see all the code a step reaches: a mutation matrix and a property test on a generated project.

The project (``fingerprint_project.py``) has a pipeline file, a package of its own helper modules
and a script. Each edit a researcher makes must rebuild exactly the steps it can affect, name the
changed part in ``--dry-run --why``, and nothing else.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nemoflow
from nemoflow.engine.build import run_plan
from nemoflow.pipeline.plan import make_plan
from nemoflow.store.targets import Store

from fingerprint_project import AFFECTS, EDITS, SLOTS, STEPS, forget_modules, write_project
from helpers import built_quickstart, last_json, names
from helpers import nemoflow as run_cli

ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "200"}


def nemoflow_cli(*args: str, cwd: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "nemoflow.cli", *args, "--json"], cwd=cwd, env=ENV, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def dry_run(cwd: Path) -> dict[str, dict]:
    plan = nemoflow_cli("build", "pipeline.py", "--dry-run", "--why", cwd=cwd)
    return {s["name"]: s for s in plan["steps"] if s["runs"]}


def build(cwd: Path) -> set[str]:
    result = nemoflow_cli("build", "pipeline.py", "--direct", cwd=cwd)
    assert not result["failed"], result["failed"]
    return {o["name"] for o in result["ran"]}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("keys")
    write_project(root, SLOTS)
    assert build(root) == set(STEPS)
    assert build(root) == set()
    return root


@pytest.mark.parametrize("slot", sorted(EDITS))
def test_each_edit_rebuilds_exactly_what_it_can_affect(project: Path, slot: str) -> None:
    changed = write_project(project, {**SLOTS, slot: EDITS[slot]})
    assert changed, slot
    try:
        would = dry_run(project)
        assert set(would) == AFFECTS[slot], f"{slot}: the dry run lists {sorted(would)}"
        for name, step in would.items():
            assert step["why"] and all(c["kind"] != "output missing" for c in step["why"]), (name, step["why"])
        assert build(project) == AFFECTS[slot]
    finally:
        write_project(project, SLOTS)
    assert build(project) == set(), "going back to the old code must find its targets"


# slot -> (a value no earlier test built, {step: what --why says})
WHY: dict[str, tuple[str, dict[str, str]]] = {
    "forward": ("sum(rows) * lr * 7", {"train": "code mylib/model.py:forward"}),
    "inner": ("value + 7", {"train": "code mylib/model.py:_inner"}),
    "scale": ("7", {"train": "constant pipeline.SCALE: 3 → 7"}),
    "factor": ("7", {"train": "constant mylib.model.FACTOR: 2 → 7"}),
    "lr": ("0.7", {"train": "config train.lr: 0.1 → 0.7"}),
    "net_width": ("7", {"train": "config train.net.width: 2 → 7"}),
    "double": ("x * 7", {"evaluate": "code pipeline.py:_double"}),
    "load": ("list(range(n + 7))", {"prepare": "code mylib/data.py:load", "train": "upstream prepare"}),
    "vocab": ("a b c g", {"lookup": "file vocab.txt"}),
    "lookup_version": ("7", {"lookup": "version step: 1 → 7"}),
    "lookup_table": ("{'a': 7}", {"lookup": "module mylib/tables.py"}),
    "fmt": ("f'{value:.7f}'", {"report": "module mylib/fmt.py"}),
    "scaler_k": ("7", {"train": "constant mylib.nets.make_scaler.<locals>.scale.k: 2 → 7"}),
}


@pytest.mark.parametrize("slot", sorted(WHY))
def test_why_names_the_part_that_changed(project: Path, slot: str) -> None:
    value, expected = WHY[slot]
    write_project(project, {**SLOTS, slot: value})
    try:
        would = dry_run(project)
    finally:
        write_project(project, SLOTS)
    for name, text in expected.items():
        assert text in [c["text"] for c in would[name]["why"]], would[name]["why"]


def test_why_in_text_lists_each_change_under_its_step(project: Path) -> None:
    write_project(project, {**SLOTS, "inner": "value + 8", "lr": "0.8"})
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "nemoflow.cli", "build", "pipeline.py", "--dry-run", "--why"],
            cwd=project,
            env=ENV,
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        write_project(project, SLOTS)
    out = proc.stdout
    assert "2 of 5 steps would run" in out
    train = out[out.index("\ntrain\n") :]
    assert "code mylib/model.py:_inner" in train and "config train.lr: 0.1 → 0.8" in train
    assert "upstream train" in out[out.index("\nevaluate\n") :]


def test_the_code_units_of_a_target_are_in_its_manifest_status_and_audit(project: Path) -> None:
    status = nemoflow_cli("status", "pipeline.py", cwd=project)
    train = next(r for r in status if r["name"] == "train")
    units = set(train["code_units"])
    assert {
        "code:pipeline.py:train",
        "code:mylib/model.py:forward",
        "code:mylib/model.py:_inner",
        "code:mylib/deco.py:traced",
        "code:mylib/nets.py:Net",
        "code:mylib/nets.py:Base",
        "constant:pipeline.SCALE",
        "constant:mylib.model.FACTOR",
    } <= units
    assert not any("unused" in u or "unrelated" in u or "_double" in u for u in units)
    target = project / "targets" / "train" / train["key"]
    manifest = json.loads((target / "nemoflow.json").read_text())
    assert manifest["code_parts"] == train["code_units"]
    audited = nemoflow_cli("audit", str(target / "result.json"), cwd=project)
    assert audited["chain"][0]["manifest"]["code_parts"]["code:mylib/model.py:forward"]


# ---- the quickstart, as the user tried it ------------------------------------------------------


def test_quickstart_helper_edit_reruns_train_evaluate_and_report_and_a_docstring_nothing(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    folder = built_quickstart(tmp_path_factory, "quickstart-keys")
    pipeline = folder / "quickstart.py"
    source = pipeline.read_text()
    pipeline.write_text(source.replace("np.maximum(pre, 0.0)", "np.maximum(pre, 0.01 * pre)"))
    plan = last_json(run_cli("build", "quickstart.py", "--dry-run", "--why", "--json", cwd=folder, check=True).stdout)
    expected = {f"{kind}-{size}" for kind in ("train", "evaluate") for size in ("small", "medium", "large")}
    assert set(plan["would_run"]) == expected | {"report"}
    assert all(
        "code quickstart.py:_forward" in [c["text"] for c in s["why"]] for s in plan["steps"] if s["name"] in expected
    )
    built = last_json(run_cli("build", "quickstart.py", "--json", cwd=folder, check=True).stdout)
    assert names(built["ran"]) == expected | {"report"}

    edited = pipeline.read_text()
    pipeline.write_text(edited.replace('"""Full-batch gradient descent', '"""Plain full-batch gradient descent'))
    assert edited != pipeline.read_text()
    plan = last_json(run_cli("build", "quickstart.py", "--dry-run", "--json", cwd=folder, check=True).stdout)
    assert plan["would_run"] == []


# ---- a property: the dry run says exactly what the build then does ----------------------------------


class LiveProject:
    """The generated project, loaded and built in this process; remembers the slots last built."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.slots = dict(SLOTS)

    def plan(self):
        forget_modules()
        return make_plan(
            nemoflow.load_pipeline(self.root / "pipeline.py"), Store(self.root / "targets"), workdir=self.root
        )


@pytest.fixture
def live_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveProject]:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    write_project(tmp_path, SLOTS)
    live = LiveProject(tmp_path)
    assert run_plan(live.plan(), direct=True).ok
    yield live
    forget_modules()


MUTATION = st.tuples(st.sampled_from(sorted(EDITS)), st.booleans())  # (slot, edited or back to its default)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=st.lists(MUTATION, min_size=1, max_size=3))
def test_the_dry_run_lists_what_the_build_runs_and_why(live_project: LiveProject, mutations: list) -> None:
    """Over random edits of configs, code, constants, docstrings and files (each example goes on from the
    state the last one built): the plan lists exactly what the build runs, names a changed part for each,
    and never a step outside the cone of the slots that changed."""
    slots = dict(live_project.slots)
    for slot, edited in mutations:
        slots[slot] = EDITS[slot] if edited else SLOTS[slot]
    write_project(live_project.root, slots)
    changed = {slot for slot in slots if slots[slot] != live_project.slots[slot]}
    plan = live_project.plan()
    would = {s.name for s in plan.to_run()}
    for s in plan.to_run():
        assert s.why and s.why[0].kind != "output missing", (s.name, s.why)
    assert would <= set().union(*(AFFECTS[slot] for slot in changed)), (changed, would)
    result = run_plan(plan, direct=True)
    assert result.ok, result.failed
    assert {o.name for o in result.ran} == would
    live_project.slots = slots
    assert not live_project.plan().to_run(), "a second plan after the build finds everything built"
