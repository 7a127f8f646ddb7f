"""``nemoflow export-prov``: a provenance trail as W3C PROV (PROV-JSON, PROV-N, via ``prov``) or an RO-Crate (``rocrate``).

Both libraries are the optional extra ``audit`` (``pip install nemoflow[audit]``), imported here only.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from pathlib import Path
from typing import Any

from nemoflow.errors import UserError
from nemoflow.record.ledger import Ledger
from nemoflow.record.provenance_trail import Target, Trail, gather
from nemoflow.store.targets import Store

NAMESPACE = ("nf", "https://nemoflow.dev/ns/prov#")


def export(subject: str, *, store: Store, ledger: Ledger, fmt: str, output: str | None = None) -> str:
    """The export of ``subject`` in ``fmt``: the text, or (with ``output``) the path written.

    Raises:
        UserError: an unknown format, a subject that names nothing, or the ``audit`` extra not installed.
    """
    trail = gather(subject, store=store, ledger=ledger)
    if fmt == "ro-crate":
        folder = Path(output or f"{trail.targets[0].step}-ro-crate")
        write_ro_crate(trail, folder)
        return str(folder)
    if fmt not in ("prov-json", "prov-n"):
        raise UserError(f"unknown format {fmt!r}", hint="prov-json, prov-n or ro-crate")
    document = prov_document(trail)
    text = document.serialize(format="json", indent=1) if fmt == "prov-json" else document.get_provn()
    if output:
        Path(output).write_text(text)
        return output
    return text


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(
            f"export-prov needs the {module.split('.')[0]!r} package", hint='pip install "nemoflow[audit]"'
        ) from None


def _time(seconds: float | None) -> datetime.datetime | None:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC) if seconds else None


def _code_id(part: str, digest: str) -> str:
    return "nf:code." + hashlib.sha256(f"{part}\0{digest}".encode()).hexdigest()[:24]


def _target_id(t: Target) -> str:
    return f"nf:target.{t.step}.{t.key}"


def prov_document(trail: Trail) -> Any:
    """A ``prov.model.ProvDocument``: entities, activities, agents and their relations."""
    prov = _require("prov.model")
    doc = prov.ProvDocument()
    doc.add_namespace(*NAMESPACE)
    user = doc.agent(f"nf:user.{trail.user}", {"prov:type": prov.PROV["Person"], "prov:label": trail.user})
    experiment = None
    if trail.experiment:
        e = trail.experiment
        experiment = doc.activity(
            f"nf:experiment.{e['id']}",
            _time(e.get("created")),
            _time(e.get("ended")),
            {
                "prov:type": "nf:ExperimentRun",
                "nf:name": e["name"],
                "nf:status": e.get("status") or "",
                "nf:git_commit": e.get("git_commit") or "",
                "nf:pipeline_sha256": e.get("pipeline_sha256") or "",
            },
        )
        doc.wasAssociatedWith(experiment, user)
    by_key = {t.key: t for t in trail.targets}
    for t in trail.targets:
        target = doc.entity(
            _target_id(t),
            {"prov:type": "nf:Target", "nf:step": t.step, "nf:key": t.key, "nf:kind": t.manifest.get("kind", "")},
        )
        run = _run_activity(doc, t, user, experiment)
        if run is not None:
            doc.wasGeneratedBy(target, run)
        for f in t.manifest["files"]:
            out = doc.entity(
                f"nf:file.{t.key[:16]}.{f['sha256'][:16]}",
                {"prov:type": "nf:Output", "prov:label": f["path"], "nf:sha256": f["sha256"], "nf:size": f["size"]},
            )
            doc.specializationOf(out, target)
            if run is not None:
                doc.wasGeneratedBy(out, run)
        for path, sha in sorted(t.manifest.get("inputs", {}).items()):
            source = doc.entity(f"nf:input.{sha}", {"prov:type": "nf:InputFile", "prov:label": path, "nf:sha256": sha})
            doc.wasDerivedFrom(target, source)
            if run is not None:
                doc.used(run, source)
        for part, digest in sorted((t.manifest.get("code_parts") or {}).items()):
            unit = doc.entity(
                _code_id(part, digest), {"prov:type": "nf:CodeUnit", "prov:label": part, "nf:digest": str(digest)}
            )
            if run is not None:
                doc.used(run, unit)
        for up_key in sorted(t.manifest.get("upstream", {}).values()):
            if up_key in by_key:
                doc.wasDerivedFrom(target, _target_id(by_key[up_key]))
                if run is not None:
                    doc.used(run, _target_id(by_key[up_key]))
    return doc.unified()  # one record per entity and agent (an input or a host is named by every run using it)


def _run_activity(doc: Any, t: Target, user: Any, experiment: Any) -> Any:
    """The activity of the run that built ``t``, with executor and host (the host as an agent too)."""
    r = t.run
    if r is None:
        return None
    run = doc.activity(
        f"nf:run.{r['id']}",
        _time(r.get("started")),
        _time(r.get("ended")),
        {
            "prov:type": "nf:Run",
            "nf:step": t.step,
            "nf:executor": r.get("executor") or "",
            "nf:host": r.get("host") or "",
            "nf:status": r.get("status") or "",
            "nf:experiment": r.get("experiment_id") or "",
        },
    )
    host = doc.agent(
        f"nf:host.{r.get('host') or 'unknown'}", {"prov:type": prov_software(), "prov:label": r.get("host") or ""}
    )
    doc.wasAssociatedWith(run, host)
    doc.wasAssociatedWith(run, user)
    if experiment is not None and r.get("experiment_id") == experiment.identifier.localpart.removeprefix("experiment."):
        doc.wasInformedBy(run, experiment)
    return run


def prov_software() -> Any:
    return _require("prov.model").PROV["SoftwareAgent"]


def write_ro_crate(trail: Trail, folder: Path) -> None:
    """An RO-Crate folder: the outputs, the input files and the kept code as data entities, a CreateAction per run."""
    rocrate = _require("rocrate.rocrate")
    from rocrate.model.contextentity import ContextEntity
    from rocrate.model.person import Person

    crate = rocrate.ROCrate()
    crate.name = f"nemoflow provenance of {trail.subject}"
    crate.description = "Targets, inputs and code of a nemoflow build, with the runs that made them"
    person = crate.add(Person(crate, f"#user-{trail.user}", properties={"name": trail.user}))
    crate.creator = person
    nemoflow = crate.add(
        ContextEntity(crate, "#nemoflow", properties={"@type": "SoftwareApplication", "name": "nemoflow"})
    )
    code = [
        crate.add_file(trail.code_blob(e["sha256"]), dest_path=f"code/{label}", properties={"sha256": e["sha256"]})
        for label, e in sorted(trail.code_files.items())
        if trail.code_blob(e["sha256"]).is_file()
    ]
    outputs: dict[str, list[Any]] = {}
    for t in trail.targets:
        outputs[t.key] = [
            crate.add_file(
                t.folder / f["path"],
                dest_path=f"targets/{t.step}/{t.key}/{f['path']}",
                properties={"sha256": f["sha256"], "contentSize": str(f["size"])},
            )
            for f in t.manifest["files"]
        ]
    for t in trail.targets:
        used = [*code, *_inputs(crate, t, trail.workdir)]
        for up_key in t.manifest.get("upstream", {}).values():
            used.extend(outputs.get(up_key, []))
        r = t.run or {}
        props = {"name": f"build {t.step}", "description": f"executor {r.get('executor')}, host {r.get('host')}"}
        if r.get("started"):
            props["startTime"] = _time(r["started"]).isoformat()  # type: ignore[union-attr]
        if r.get("ended"):
            props["endTime"] = _time(r["ended"]).isoformat()  # type: ignore[union-attr]
        action = crate.add_action(
            nemoflow, f"#run-{r.get('id') or t.key}", object=used, result=outputs[t.key], properties=props
        )
        action["agent"] = person
    crate.write(folder)


def _inputs(crate: Any, t: Target, workdir: str | None) -> list[Any]:
    """The input files a target read: copied in when the file still has the recorded content."""
    from nemoflow.store.hashing import file_sha256

    found = []
    for path, sha in sorted(t.manifest.get("inputs", {}).items()):
        local = path if os.path.isabs(path) else os.path.join(workdir or os.getcwd(), path)
        dest = f"inputs/{path.lstrip('/')}" if os.path.isabs(path) else path  # as the pipeline names it
        known = crate.get(dest)
        if known is not None:
            found.append(known)
        elif os.path.isfile(local) and file_sha256(local) == sha:
            found.append(crate.add_file(local, dest_path=dest, properties={"sha256": sha}))
    return found
