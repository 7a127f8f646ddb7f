"""luigi, wrapped once: the task adapter, handing steps out (local scheduler or luigid), and luigid itself.

Lives here: tasks.py (``StepTask``), handout.py (local chunks, or luigid with executor-specific workers),
luigid.py (``nemoflow scheduler``). The only homes of ``import luigi``.
Imports ``pipeline``, ``record``, ``store``, ``errors``; never ``engine``: the build hands its way of
running a step in through the ``BuildContext`` (``run_step`` / ``wait_detached``), so a luigi task runs a
step without knowing how.
"""
