"""The content-addressed store on disk: ``targets/<step>/<key>/``, manifests, atomic publish, file hashes.

Lives here: targets.py (``Store``: workspaces, publish, verify, caches), hashing.py (sha256 of text and
files, the stat-keyed file hash cache).
Imports only ``configs`` and ``errors``. It knows nothing of plans, ledgers or luigi; ``pipeline`` and
everything below read and write through it.
"""
