"""Pure hashing: step keys, file contents, code fingerprints."""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import os
import textwrap
from collections.abc import Mapping
from typing import Any

from nemoflow.serialize import canonical_json

KEY_VERSION = 1  # bump when the key recipe changes, so old targets are not mistaken for new


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


@functools.cache
def code_fingerprint(obj: Any) -> str:
    """Hash of a function's or class's own source, formatting and comments ignored.

    Objects without retrievable source (builtins, C extensions) fall back to their import
    path and their package's version, when one is known.
    """
    target = inspect.unwrap(obj) if callable(obj) else obj
    try:
        source = textwrap.dedent(inspect.getsource(target))
    except (OSError, TypeError):
        module = getattr(target, "__module__", "") or ""
        return sha256_text(f"nosource:{module}:{getattr(target, '__qualname__', repr(target))}:{_version(module)}")
    try:
        normal = ast.dump(ast.parse(source))
    except SyntaxError:
        normal = source
    return sha256_text(normal)


def _version(module: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(module.split(".")[0])
    except metadata.PackageNotFoundError:
        return ""
