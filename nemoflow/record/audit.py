"""Reproducibility audits: where did a file come from, and is every link of its chain intact?"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemoflow.errors import UserError
from nemoflow.record.ledger import Ledger
from nemoflow.record.reproduce import nondeterministic
from nemoflow.store.hashing import file_sha256
from nemoflow.store.targets import MANIFEST, ManifestUnreadable, Mismatch, Store


@dataclass
class AuditLink:
    """One target in a provenance chain, with what made it and whether it still matches."""

    step: str
    key: str
    manifest: dict[str, Any] | None
    run: dict[str, Any] | None = None
    environment: dict[str, Any] | None = None
    mismatches: list[Mismatch] = field(default_factory=list)
    nondeterministic: dict[str, Any] | None = None  # its latest `nemoflow reproduce` differed (when, which run)

    @property
    def missing(self) -> bool:
        return self.manifest is None

    @property
    def ok(self) -> bool:
        return not self.missing and not self.mismatches


@dataclass
class AuditReport:
    """The chain from the audited target up to its roots (the audited one first)."""

    subject: str
    chain: list[AuditLink]
    file: str | None = None  # the audited file, relative to its target folder

    @property
    def ok(self) -> bool:
        return all(link.ok for link in self.chain)

    @property
    def tampered(self) -> list[tuple[AuditLink, Mismatch]]:
        return [(link, m) for link in self.chain for m in link.mismatches]


def audit(subject: str | os.PathLike[str], *, store: Store, ledger: Ledger | None = None) -> AuditReport:
    """Trace a file (or a key, or a key prefix) back through every upstream target.

    Every output of every target on the way is re-hashed and compared with its manifest.

    Raises:
        UserError: ``subject`` is neither a file in a published target nor a known key.
    """
    step, key, file = locate_target(str(subject), store)
    chain: list[AuditLink] = []
    seen: set[tuple[str, str]] = set()
    queue = [(step, key)]
    while queue:
        name, k = queue.pop(0)
        if (name, k) in seen:
            continue
        seen.add((name, k))
        link = _link(name, k, store, ledger)
        chain.append(link)
        if link.manifest:
            queue.extend(sorted(link.manifest.get("upstream", {}).items()))
    _mark_nondeterministic(chain, ledger)
    return AuditReport(str(subject), chain, file)


def _mark_nondeterministic(chain: list[AuditLink], ledger: Ledger | None) -> None:
    if ledger is None:
        return
    found = nondeterministic(ledger, [link.key for link in chain])
    for link in chain:
        link.nondeterministic = found.get(link.key)


def locate_target(subject: str, store: Store) -> tuple[str, str, str | None]:
    """(step, key, file relative to its target folder) of a path in the store, or a key (prefix of 8+).

    Raises:
        UserError: neither.
    """
    path = Path(subject)
    if path.exists():
        try:
            folder, manifest = store.locate(path)
        except ManifestUnreadable as exc:  # <root>/<step>/<key>/nemoflow.json: the chain says it is unreadable
            folder = Path(exc.path).parent
            return folder.parent.name, folder.name, None
        except FileNotFoundError:
            raise UserError(
                f"{subject} is not inside a published target of {store.root}",
                hint="audit a file under the store, or pass --store",
            ) from None
        rel = os.path.relpath(path.absolute(), folder) if path.is_file() else None
        return manifest["step"], manifest["key"], rel
    matches = [(s, k) for s, k in _all_targets(store) if k.startswith(subject)] if len(subject) >= 8 else []
    if len(matches) == 1:
        return matches[0][0], matches[0][1], None
    if len(matches) > 1:
        raise UserError(f"key prefix {subject!r} matches {len(matches)} targets", hint="give more of the key")
    raise UserError(f"{subject!r} is neither an existing file nor a key in {store.root}")


def _all_targets(store: Store) -> list[tuple[str, str]]:
    found = []
    if not store.root.is_dir():
        return found
    for step_dir in os.scandir(store.root):
        if step_dir.is_dir() and not step_dir.name.startswith("."):
            found.extend((step_dir.name, k.name) for k in os.scandir(step_dir.path) if k.is_dir())
    return found


def _link(step: str, key: str, store: Store, ledger: Ledger | None) -> AuditLink:
    try:
        manifest = store.read_manifest(step, key)
    except ManifestUnreadable as exc:  # not missing, not intact: say so rather than fail on it
        unreadable = Mismatch(f"{MANIFEST} (manifest unreadable: {exc.reason})", "", None)
        return AuditLink(step, key, {}, mismatches=[unreadable])
    link = AuditLink(step, key, manifest)
    if manifest is None:
        return link
    link.mismatches = store.verify(step, key)
    if ledger is not None:
        runs = [r for r in ledger.runs_of(key) if r["status"] == "succeeded"]
        run_id = manifest.get("run_id")
        link.run = next((r for r in runs if r["id"] == run_id), runs[-1] if runs else None)
        if link.run and link.run.get("environment_id"):
            link.environment = ledger.environment(link.run["environment_id"])
        recorded = {a["path"]: a["sha256"] for a in ledger.artifacts_of(key)}
        for entry in manifest["files"]:
            if entry["path"] in recorded and recorded[entry["path"]] != entry["sha256"]:
                link.mismatches.append(
                    Mismatch(f"{entry['path']} (manifest vs ledger)", recorded[entry["path"]], entry["sha256"])
                )
    return link


@dataclass
class CodeCheck:
    """A module file an experiment run kept: is its kept copy intact, and does the working tree still hold it?"""

    label: str
    sha256: str
    kept: bool  # the blob is there with this content
    in_tree: bool | None  # the working tree's file has this content (None: the file is gone)


@dataclass
class ExperimentAudit:
    """Every target of an experiment run verified, with the run's environments and its kept code."""

    experiment: dict[str, Any]
    links: list[AuditLink]
    environments: list[dict[str, Any]]
    code: list[CodeCheck]

    @property
    def ok(self) -> bool:
        return all(link.ok for link in self.links) and all(c.kept for c in self.code)


def audit_experiment(experiment_id: str, *, store: Store, ledger: Ledger) -> ExperimentAudit:
    """Verify every target of a run (outputs against manifests and ledger), its environment and its code."""
    from nemoflow.record.code_store import blob_path, recorded_code

    row = ledger.experiment(experiment_id)
    if row is None:
        raise UserError(f"no experiment run {experiment_id!r} in {ledger.path}")
    links = [_link(m["name"], m["key"], store, ledger) for m in ledger.experiment_steps(experiment_id)]
    _mark_nondeterministic(links, ledger)
    env_ids = {r["environment_id"] for r in ledger.runs_in(experiment_id) if r.get("environment_id")}
    environments = [e for e in (ledger.environment(i) for i in sorted(env_ids)) if e]
    roots = [Path(p) for p in row.get("sys_path") or []]
    code = []
    for label, entry in recorded_code(ledger, experiment_id).items():
        blob = blob_path(store, entry["sha256"])
        kept = blob.is_file() and file_sha256(blob) == entry["sha256"]
        tree = next((root / label for root in roots if (root / label).is_file()), None)
        code.append(
            CodeCheck(label, entry["sha256"], kept, None if tree is None else file_sha256(tree) == entry["sha256"])
        )
    return ExperimentAudit(row, links, environments, code)
