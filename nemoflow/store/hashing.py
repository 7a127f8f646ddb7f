"""Hashes of text and of files, and the stat-keyed cache that spares re-reading unchanged files."""

from __future__ import annotations

import hashlib
import os
from typing import Any


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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
