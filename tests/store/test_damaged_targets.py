"""A target is up to date only while it verifies: a changed, deleted or unreadable one is set aside and rebuilt."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from nemoflow.store.targets import INTACT, MANIFEST, ManifestUnreadable, Store

from helpers import last_json, nemoflow, published_target

KEY = "b" * 64

PIPELINE = textwrap.dedent("""
    from pathlib import Path

    import nemoflow


    def make(n: int = 3) -> None:
        (nemoflow.output_dir() / "model.npz").write_text("weights " * n)


    def consume(model: str, scale: int = 1) -> int:
        return scale * len(Path(model).read_text())


    def pipeline():
        exp = nemoflow.Experiment("damage")
        made = exp.add(nemoflow.Partial(make), name="make")
        exp.add(nemoflow.Partial(consume, model=made.output("model.npz")), name="consume")
        return exp
""")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "damage.py").write_text(PIPELINE)
    nemoflow("build", "damage.py", cwd=tmp_path, check=True)
    return tmp_path


def _build(folder: Path, *args: str) -> dict:
    proc = nemoflow("build", "damage.py", "--json", *args, cwd=folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return last_json(proc.stdout)


def _dry_run_why(folder: Path, *args: str) -> dict[str, list[str]]:
    proc = nemoflow("build", "damage.py", "--dry-run", "--why", "--json", *args, cwd=folder, check=True)
    return {s["name"]: [c["text"] for c in s.get("why", [])] for s in last_json(proc.stdout)["steps"]}


def _ran(result: dict) -> dict[str, str]:
    return {s["name"]: s["reason"] for s in result["ran"]}


def _corrupt(folder: Path) -> list[Path]:
    kept = folder / "targets" / ".corrupt" / "make"
    return sorted(kept.iterdir()) if kept.exists() else []


def _flip_first_byte(path: Path, *, keep_mtime: bool = False) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[0] ^= 1
    path.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_tampered_output_is_set_aside_and_rebuilt(folder: Path) -> None:
    model = published_target(folder, "make") / "model.npz"
    original = model.read_text()
    _flip_first_byte(model)
    assert _dry_run_why(folder)["make"] == ["output changed on disk: model.npz"]
    assert _corrupt(folder) == []  # a dry run moves nothing
    assert _ran(_build(folder)) == {"make": "target damaged"}
    assert (published_target(folder, "make") / "model.npz").read_text() == original
    [kept] = _corrupt(folder)
    assert (kept / "model.npz").read_text() != original  # kept for inspection
    assert _build(folder)["ran"] == []


def test_a_deleted_output_rebuilds_its_step_not_fails_the_consumer(folder: Path) -> None:
    (published_target(folder, "make") / "model.npz").unlink()
    result = _build(folder, "consume.scale=2")  # the consumer runs and needs the file
    assert _ran(result) == {"make": "target damaged", "consume": "new config"}
    assert result["failed"] == []


def test_tampering_that_keeps_size_and_mtime_is_caught_before_a_consumer_reads_it(folder: Path) -> None:
    _flip_first_byte(published_target(folder, "make") / "model.npz", keep_mtime=True)
    assert _build(folder)["ran"] == []  # the no-op path only stats: same size, mtime and inode look intact
    result = _build(folder, "consume.scale=2")  # a step that runs reads it: its hash is checked
    assert _ran(result) == {"make": "target damaged", "consume": "new config"}


def test_a_truncated_manifest_is_reported_by_audit_and_rebuilt(folder: Path) -> None:
    target = published_target(folder, "make")
    manifest = target / MANIFEST
    manifest.write_text(manifest.read_text()[:40])
    audit = nemoflow("audit", str(target / "model.npz"), cwd=folder)
    assert audit.returncode != 0
    assert "manifest unreadable" in audit.stdout, audit.stdout + audit.stderr
    assert "Traceback" not in audit.stderr
    by_key = nemoflow("audit", target.name, "--json", cwd=folder)
    assert "manifest unreadable" in by_key.stdout and "Traceback" not in by_key.stderr
    assert _dry_run_why(folder)["make"][0].startswith("manifest unreadable")
    assert _ran(_build(folder)) == {"make": "target damaged"}
    assert json.loads((published_target(folder, "make") / MANIFEST).read_text())["step"] == "make"


# ---- Store.check, directly ---------------------------------------------------------------------


def _published(tmp_path: Path) -> Store:
    store = Store(tmp_path)
    workspace = store.new_workspace("train", KEY)
    (workspace / "model.bin").write_text("weights")
    store.publish(workspace, step="train", key=KEY, record={"run_id": "r1"})
    return store


def test_publish_records_a_stat_signature_and_check_passes(tmp_path: Path) -> None:
    store = _published(tmp_path)
    manifest = store.read_manifest("train", KEY)
    st = (store.target_dir("train", KEY) / "model.bin").stat()
    assert manifest["stats"] == {"model.bin": [st.st_size, st.st_mtime_ns, st.st_ino]}
    assert manifest["files"][0].keys() == {"path", "sha256", "size"}  # the content alone: equal across stores
    assert store.check("train", KEY) is INTACT
    assert not store.check("train", "c" * 64).exists


def test_a_touched_but_unchanged_output_stays_intact(tmp_path: Path) -> None:
    store = _published(tmp_path)
    os.utime(store.target_dir("train", KEY) / "model.bin", ns=(1, 1))
    assert store.check("train", KEY).complete


def test_check_names_what_is_wrong(tmp_path: Path) -> None:
    store = _published(tmp_path)
    folder = store.target_dir("train", KEY)
    (folder / "model.bin").write_text("weightz")
    assert store.check("train", KEY).damage == "output changed on disk: model.bin"
    (folder / "model.bin").unlink()
    assert store.check("train", KEY).damage == "output gone: model.bin"
    (folder / MANIFEST).write_text('{"files": [')
    assert store.check("train", KEY).damage.startswith("manifest unreadable")
    with pytest.raises(ManifestUnreadable, match="is unreadable"):
        store.read_manifest("train", KEY)
    kept = store.set_aside_damaged("train", KEY)
    assert kept is not None and kept.parent == tmp_path / ".corrupt" / "train" and (kept / MANIFEST).exists()
    assert not store.check("train", KEY).exists
    assert store.set_aside_damaged("train", KEY) is None  # another build moved it first


def test_a_manifest_larger_than_one_read_comes_back_whole(tmp_path: Path) -> None:
    store = Store(tmp_path)
    workspace = store.new_workspace("train", KEY)
    (workspace / "model.bin").write_text("weights")
    big = "x" * (3 * 65536 + 7)
    store.publish(workspace, step="train", key=KEY, record={"config": big})
    assert store.read_manifest("train", KEY)["config"] == big
    assert store.check("train", KEY).complete
