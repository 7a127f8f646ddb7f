"""The store: a target exists only once published with its manifest, by one rename."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from nemoflow.store.targets import MANIFEST, Store

KEY = "a" * 64


def _workspace(store: Store, text: str = "weights") -> Path:
    workspace = store.new_workspace("train", KEY)
    (workspace / "model.bin").write_text(text)
    (workspace / "sub").mkdir()
    (workspace / "sub" / "notes.txt").write_text("n")
    return workspace


def test_an_unpublished_workspace_is_not_a_target(tmp_path: Path) -> None:
    store = Store(tmp_path)
    _workspace(store)
    assert not store.is_complete("train", KEY)
    assert store.latest_manifest("train") is None


def test_publish_moves_the_folder_into_place_with_a_manifest(tmp_path: Path) -> None:
    store = Store(tmp_path)
    workspace = _workspace(store)
    manifest = store.publish(workspace, step="train", key=KEY, record={"run_id": "r1"})
    assert not workspace.exists()
    assert store.is_complete("train", KEY)
    assert {f["path"] for f in manifest["files"]} == {"model.bin", "sub/notes.txt"}
    assert store.read_manifest("train", KEY) == manifest
    assert store.verify("train", KEY) == []


def test_a_second_publisher_of_the_same_key_keeps_the_first(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.publish(_workspace(store, "first"), step="train", key=KEY, record={"run_id": "r1"})
    late = _workspace(store, "second")
    manifest = store.publish(late, step="train", key=KEY, record={"run_id": "r2"})
    assert manifest["run_id"] == "r1"
    assert (store.target_dir("train", KEY) / "model.bin").read_text() == "first"
    assert not late.exists()


def test_forced_publish_replaces_the_target(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.publish(_workspace(store, "first"), step="train", key=KEY, record={"run_id": "r1"})
    store.publish(_workspace(store, "second"), step="train", key=KEY, record={"run_id": "r2"}, replace=True)
    assert (store.target_dir("train", KEY) / "model.bin").read_text() == "second"
    assert store.read_manifest("train", KEY)["run_id"] == "r2"


def test_verify_reports_changed_and_missing_files(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.publish(_workspace(store), step="train", key=KEY, record={})
    folder = store.target_dir("train", KEY)
    (folder / "model.bin").write_text("tampered")
    (folder / "sub" / "notes.txt").unlink()
    found = {m.path: m.actual for m in store.verify("train", KEY)}
    assert set(found) == {"model.bin", "sub/notes.txt"}
    assert found["sub/notes.txt"] is None


def test_locate_finds_the_target_of_a_nested_file(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.publish(_workspace(store), step="train", key=KEY, record={})
    folder, manifest = store.locate(store.target_dir("train", KEY) / "sub" / "notes.txt")
    assert folder == store.target_dir("train", KEY) and manifest["key"] == KEY
    with pytest.raises(FileNotFoundError):
        store.locate(tmp_path)


def test_failed_attempts_are_kept_aside_with_their_log(tmp_path: Path) -> None:
    store = Store(tmp_path)
    workspace = _workspace(store)
    (workspace / "nemoflow.log").write_text("Traceback ...")
    kept = store.keep_failed(workspace, step="train", key=KEY, run_id="r9")
    assert (kept / "nemoflow.log").read_text() == "Traceback ..."
    assert not (kept / MANIFEST).exists()
    assert not store.is_complete("train", KEY)


def test_the_manifest_records_each_output_with_its_hash_and_size(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    workspace = _workspace(store, text="twelve bytes")
    (workspace / "sub" / "deeper").mkdir()
    (workspace / "sub" / "deeper" / "empty.txt").write_text("")
    manifest = store.publish(workspace, step="train", key=KEY, record={})
    files = {f["path"]: (f["sha256"], f["size"]) for f in manifest["files"]}
    assert files == {
        "model.bin": (hashlib.sha256(b"twelve bytes").hexdigest(), 12),
        "sub/notes.txt": (hashlib.sha256(b"n").hexdigest(), 1),
        "sub/deeper/empty.txt": (hashlib.sha256(b"").hexdigest(), 0),
    }
    assert [f["path"] for f in manifest["files"]] == sorted(files)


def test_a_linked_folder_is_not_followed_and_a_linked_file_is_hashed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big.bin").write_text("not an output")
    store = Store(tmp_path / "store")
    workspace = _workspace(store)
    (workspace / "data").symlink_to(outside, target_is_directory=True)
    (workspace / "alias.bin").symlink_to(outside / "big.bin")
    manifest = store.publish(workspace, step="train", key=KEY, record={})
    assert {f["path"] for f in manifest["files"]} == {"model.bin", "sub/notes.txt", "alias.bin"}


def test_publish_remakes_a_step_folder_removed_during_the_build(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    store.publish(_workspace(store), step="train", key=KEY, record={})
    shutil.rmtree(tmp_path / "store" / "train")  # say, by `nemoflow gc` in another shell
    shutil.rmtree(tmp_path / "store" / ".tmp")
    store.publish(_workspace(store), step="train", key=KEY, record={})
    assert store.is_complete("train", KEY)
