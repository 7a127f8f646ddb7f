"""The step key recipe: the content address of a step (its parts come from plan.py and fingerprint.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nemoflow.configs.serialize import canonical_json
from nemoflow.store.hashing import sha256_text

KEY_VERSION = 2  # bump when the key recipe changes, so old targets are not mistaken for new
# 2: the code part is the hash of every code part a step reaches (nemoflow.pipeline.fingerprint), not one source


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
