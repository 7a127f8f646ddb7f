"""NeMo Run's experiment-run surface: ``exp.run``, ``nemoflow.run``, and recorded runs reloaded from the ledger.

Lives here: launch.py (``run_experiment``, ``nemoflow.run``, functions bound to an executor),
catalog.py (``from_id``, ``status``, ``logs``, ``cancel``, ``reset``).
Imports everything above it; only ``cli`` imports it (and the documented lazy calls from ``configs`` and
``pipeline``).
"""
