"""nemoflow export-prov: W3C PROV read back by the `prov` package, an RO-Crate read back by `rocrate`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from audit_project import make_project

from helpers import nemoflow, published_target

prov_model = pytest.importorskip("prov.model")  # the optional extra "audit"
rocrate = pytest.importorskip("rocrate.rocrate")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("prov")
    make_project(folder)
    nemoflow("build", "audited.py", cwd=folder, check=True)
    return folder


def _records(doc: object, kind: type) -> list:
    return [r for r in doc.get_records(kind)]  # type: ignore[attr-defined]


def test_prov_json_round_trips_with_entities_activities_agents_and_relations(built: Path) -> None:
    out = built / "prov.json"
    nemoflow("export-prov", "audited", "--format", "prov-json", "-o", str(out), cwd=built, check=True)
    doc = prov_model.ProvDocument.deserialize(source=str(out), format="json")
    again = prov_model.ProvDocument.deserialize(content=doc.serialize(format="json"), format="json")
    assert doc == again  # a lossless round trip

    entities = {str(e.identifier): e for e in _records(doc, prov_model.ProvEntity)}
    types = {}
    for e in entities.values():
        for t in e.get_attribute("prov:type"):
            types.setdefault(str(t), []).append(e)
    double = published_target(built, "double").name
    assert f"nf:target.double.{double}" in entities
    assert {str(next(iter(e.get_attribute("prov:label")))) for e in types["nf:InputFile"]} == {
        "inputs/a.txt",
        "inputs/c.txt",
    }
    assert "code:mylib/helpers.py:scale" in {
        str(next(iter(e.get_attribute("prov:label")))) for e in types["nf:CodeUnit"]
    }
    runs = _records(doc, prov_model.ProvActivity)
    steps = {}
    for run in runs:
        step = run.get_attribute("nf:step")
        if step:
            steps[str(next(iter(step)))] = run
    assert set(steps) == {"load", "double", "stamp"}
    for run in steps.values():
        assert {str(v) for v in run.get_attribute("nf:executor")} == {"local"}
        assert run.get_startTime() is not None and run.get_endTime() >= run.get_startTime()
        assert str(next(iter(run.get_attribute("nf:host"))))
    agents = {str(a.identifier) for a in _records(doc, prov_model.ProvAgent)}
    assert any(a.startswith("nf:user.") for a in agents) and any(a.startswith("nf:host.") for a in agents)

    derived = {
        (str(r.formal_attributes[0][1]), str(r.formal_attributes[1][1]))
        for r in _records(doc, prov_model.ProvDerivation)
    }
    load = published_target(built, "load").name
    assert (f"nf:target.double.{double}", f"nf:target.load.{load}") in derived
    generated = {str(r.formal_attributes[0][1]) for r in _records(doc, prov_model.ProvGeneration)}
    assert f"nf:target.double.{double}" in generated
    used = {str(r.formal_attributes[1][1]) for r in _records(doc, prov_model.ProvUsage)}
    assert f"nf:target.load.{load}" in used and any(u.startswith("nf:input.") for u in used)


def test_prov_n_of_a_target_names_its_chain(built: Path) -> None:
    doubled = published_target(built, "double") / "doubled.txt"
    text = nemoflow("export-prov", str(doubled), "--format", "prov-n", cwd=built, check=True).stdout
    assert text.startswith("document") and "wasDerivedFrom(nf:target.double." in text
    assert "nf:target.load." in text and "nf:target.stamp." not in text  # only the chain of the exported target


def test_the_ro_crate_is_read_back_by_rocrate_with_files_and_actions(built: Path) -> None:
    folder = built / "crate"
    nemoflow("export-prov", "audited", "--format", "ro-crate", "-o", str(folder), cwd=built, check=True)
    crate = rocrate.ROCrate(str(folder))
    actions = crate.get_by_type("CreateAction")
    assert len(actions) == 3
    double = published_target(built, "double")
    doubled = crate.get(f"targets/double/{double.name}/doubled.txt")
    assert doubled is not None and (folder / doubled.id).read_bytes() == (double / "doubled.txt").read_bytes()
    manifest = json.loads((double / "nemoflow.json").read_text())
    assert doubled["sha256"] == next(f["sha256"] for f in manifest["files"] if f["path"] == "doubled.txt")
    assert crate.get("code/mylib/helpers.py") is not None and crate.get("inputs/a.txt") is not None
    build_double = next(a for a in actions if a["name"] == "build double")
    results = build_double["result"]
    assert {r.id for r in (results if isinstance(results, list) else [results])} == {
        f"targets/double/{double.name}/doubled.txt",
        f"targets/double/{double.name}/result.json",
    }
    assert build_double["startTime"] and build_double["agent"].id.startswith("#user-")
