"""Tests for nemoflow.store.hashing: step keys, file hashes and their cache."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from nemoflow.configs.core import Config
from nemoflow.configs.serialize import dumps, loads, to_data
from nemoflow.pipeline.keys import step_key
from nemoflow.store import hashing
from nemoflow.store.hashing import FileHashCache, file_sha256

from targets_for_tests import Model, Trainer

TESTS = pathlib.Path(__file__).resolve().parent.parent

BASE: dict[str, Any] = {
    "name": "train",
    "kind": "targets_for_tests:Trainer",
    "config": {"_target_": "targets_for_tests:Trainer", "lr": 0.1},
    "code": "c0de",
    "upstream": {"prepare": "a" * 64, "tokenize": "b" * 64},
    "files": {"inputs/x.csv": "f" * 64},
    "salt": "",
}


# ---- step keys -----------------------------------------------------------------------------


def test_step_key_is_a_sha256_and_stable_for_equal_inputs() -> None:
    key = step_key(**BASE)
    assert len(key) == 64
    assert int(key, 16) >= 0
    assert step_key(**json.loads(json.dumps(BASE))) == key


def test_step_key_does_not_depend_on_mapping_order() -> None:
    reordered = {**BASE, "upstream": dict(reversed(list(BASE["upstream"].items())))}
    reordered["config"] = {"lr": 0.1, "_target_": "targets_for_tests:Trainer"}
    assert step_key(**reordered) == step_key(**BASE)


@pytest.mark.parametrize(
    "change",
    [
        {"name": "train-2"},
        {"kind": "targets_for_tests:Model"},
        {"config": {"_target_": "targets_for_tests:Trainer", "lr": 0.2}},
        {"code": "c0de2"},
        {"upstream": {"prepare": "c" * 64, "tokenize": "b" * 64}},
        {"upstream": {"prepare": "a" * 64}},
        {"files": {"inputs/x.csv": "e" * 64}},
        {"files": {"inputs/y.csv": "f" * 64}},
        {"salt": "v2"},
    ],
)
def test_step_key_changes_with_every_component(change: dict[str, Any]) -> None:
    assert step_key(**{**BASE, **change}) != step_key(**BASE)


def test_step_key_has_a_fixed_recipe() -> None:
    # Keys must match across machines and versions; change this value only with KEY_VERSION.
    assert step_key(**BASE) == "e079a7a950bc84bb99797c76f09a07e58f57d7f75578d98e1d397939b80496d1"


def test_a_config_read_back_from_yaml_gets_the_same_key() -> None:
    cfg = Config(Trainer, model=Config(Model, hidden_size=8), lr=0.1)
    back = loads(dumps(cfg, "yaml"), "yaml")
    assert step_key(**{**BASE, "config": to_data(back)}) == step_key(**{**BASE, "config": to_data(cfg)})


def test_keys_are_identical_across_processes() -> None:
    program = textwrap.dedent(
        """
        from nemoflow.configs.core import Config
        from nemoflow.pipeline.keys import step_key
        from nemoflow.configs.serialize import to_data
        from targets_for_tests import anything
        cfg = Config(anything, tags={"cat", "dog", "bird", "fish"}, table={"b": 1, "a": 2}, ids={3: "x", 1: "y"})
        print(step_key(name="s", kind="k", config=to_data(cfg), code="", upstream={}, files={}))
        """
    )
    keys = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(TESTS)}
        proc = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, check=True)
        keys.add(proc.stdout.strip())
    assert len(keys) == 1


# ---- files ---------------------------------------------------------------------------------


def test_file_sha256_hashes_the_content(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"\x00abc" * 100_000)
    assert file_sha256(path) == hashlib.sha256(b"\x00abc" * 100_000).hexdigest()


@pytest.fixture
def data_file(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "data.csv"
    path.write_text("a,b\n1,2\n")
    return path


def test_cache_hashes_a_new_file_and_records_it(data_file: pathlib.Path) -> None:
    cache = FileHashCache()
    assert cache.sha256(str(data_file)) == file_sha256(data_file)
    assert cache.changed
    assert str(data_file) in cache.entries


def test_cache_does_not_reread_an_unchanged_file(data_file: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = FileHashCache()
    digest = first.sha256(str(data_file))
    stored = json.loads(json.dumps(first.entries))  # as the store persists it

    def no_reading(path: Any) -> str:
        raise AssertionError(f"{path} was read again")

    monkeypatch.setattr(hashing, "file_sha256", no_reading)
    again = FileHashCache(stored)
    assert again.sha256(str(data_file)) == digest
    assert not again.changed


def test_cache_rehashes_when_the_content_changes(data_file: pathlib.Path) -> None:
    cache = FileHashCache()
    before = cache.sha256(str(data_file))
    data_file.write_text("a,b\n1,2\n3,4\n")
    cache.changed = False
    after = cache.sha256(str(data_file))
    assert after != before
    assert after == file_sha256(data_file)
    assert cache.changed


def test_cache_rehashes_a_same_size_edit_with_a_new_mtime(data_file: pathlib.Path) -> None:
    cache = FileHashCache()
    before = cache.sha256(str(data_file))
    mtime = data_file.stat().st_mtime_ns
    data_file.write_text("a,b\n1,9\n")  # same size
    os.utime(data_file, ns=(mtime + 1_000_000_000, mtime + 1_000_000_000))
    assert cache.sha256(str(data_file)) != before


def test_cache_rehashes_an_edit_whose_mtime_was_put_back(data_file: pathlib.Path) -> None:
    old = file_sha256(data_file)
    st = data_file.stat()
    # An entry recorded before the edit: same size, mtime and inode as now, only the ctime is older.
    data_file.write_text("a,b\n1,9\n")
    os.utime(data_file, ns=(st.st_atime_ns, st.st_mtime_ns))
    now = data_file.stat()
    assert (now.st_size, now.st_mtime_ns, now.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    cache = FileHashCache({str(data_file): [st.st_size, st.st_mtime_ns, st.st_ino, now.st_ctime_ns - 1, old]})
    assert cache.sha256(str(data_file)) == file_sha256(data_file) != old


def test_cache_raises_for_a_missing_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError):
        FileHashCache().sha256(str(tmp_path / "nope.csv"))


