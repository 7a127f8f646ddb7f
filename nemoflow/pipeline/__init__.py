"""From a pipeline file to a plan: experiments, keys, code fingerprints, and why each step runs.

Lives here: experiment.py (``Experiment``, ``StepHandle``, ``Plugin``), loading.py (a pipeline file by
path), keys.py (the step key recipe), fingerprint.py (the code parts a step reaches), why.py (what
changed since a step's last target), plan.py (keys, order, reasons; no luigi), dag.py (drawing it).
Imports ``configs``, ``store``, ``errors``. Documented exceptions going up, inside functions only: NeMo
Run's ``exp.run()`` / ``from_id`` / ``status`` / ... call into ``runs``.
"""
