"""The ledger and what reads it: provenance, progress of a build, audits, status, garbage collection.

Lives here: ledger.py (SQLite through sqlite-utils; the only home of ``sqlite_utils``), ledger_writer.py
(group commit), provenance.py (environment, git state), progress.py, audit.py, status.py, gc.py.
Imports ``pipeline``, ``store``, ``configs``, ``errors``. A recorder never calls back up into a build.
"""
