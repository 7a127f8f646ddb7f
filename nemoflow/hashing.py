"""Pure hashing: step keys and file contents (code fingerprints are in nemoflow.fingerprint)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

from nemoflow.serialize import canonical_json

KEY_VERSION = 2  # bump when the key recipe changes, so old targets are not mistaken for new
# 2: the code part is the hash of every code part a step reaches (nemoflow.fingerprint), not one source


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def step_key(
    *,
    name: str,
    kind: str,
    config: Any,
    code: str,
    upstream: Mapping[str, str],
    files: Mapping[str, str],
    salt: str = "",
) -> str:
    """The content address of a step.

    The step's name is part of the key: it is part of the target's path anyway, and it keeps
    two steps with the same config distinct in one DAG.

    Args:
        name: the step's name.
        kind: the target's import path, or ``script:<content hash>``.
        config: the step's canonical config data (``serialize.to_data``).
        code: the code fingerprint (``""`` when fingerprints are off).
        upstream: step name -> key of every step it depends on.
        files: input path as written -> sha256 of its content.
        salt: a user-chosen version string.
    """
    record = {
        "v": KEY_VERSION,
        "name": name,
        "kind": kind,
        "config": config,
        "code": code,
        "upstream": dict(upstream),
        "files": dict(files),
        "salt": salt,
    }
    return sha256_text(canonical_json(record))


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's content, read in chunks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class FileHashCache:
    """Remembers file hashes by (path, size, mtime_ns, inode, ctime_ns), so unchanged files are not re-read.

    The cache is a plain dict the store persists; a changed stat signature means a re-hash,
    so content, not mtime, still decides the key. The ctime catches an edit whose mtime
    was put back (``touch -r``, ``cp -p``): nothing but the kernel can set it.
    """

    def __init__(self, entries: dict[str, list[Any]] | None = None) -> None:
        self.entries = entries if entries is not None else {}
        self.changed = False

    def sha256(self, path: str) -> str:
        st = os.stat(path)
        signature = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
        known = self.entries.get(path)
        if known is not None and known[:-1] == signature:
            return str(known[-1])
        digest = file_sha256(path)
        self.entries[path] = [*signature, digest]
        self.changed = True
        return digest
