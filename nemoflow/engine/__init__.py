"""Running a plan: one step's run, the step-side runtime, detached jobs, recovery, and the build driver.

Lives here: results.py (``BuildResult``), step.py (one step: workspace, executor, publish, ledger),
step_runtime.py (what ``python -m nemoflow.run_step JOB`` runs), detach.py (``--detach``), recovery.py
(mending runs a killed build left), build.py (the driver: record, hand out through ``luigi``, collect).
Imports every folder above it (``executors`` and ``luigi`` included); only ``runs`` and ``cli`` import it.
Folder name: ``nemoflow.build`` is the public ``build(config)`` function, so the package is ``engine``.
"""
