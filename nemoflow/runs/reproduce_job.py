"""``python -m nemoflow.runs.reproduce_job SPEC.json``: the rebuild of nemoflow reproduce, in a process of its own.

Its import path starts with the recorded code (laid out by the parent), so every user module,
and each step's own process (which inherits this import path), runs the code of the recorded run.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any


def rebuild(spec: dict[str, Any]) -> dict[str, Any]:
    """Reload the recorded run, plan it into the scratch store, build it; step -> key, and what failed."""
    sys.path.insert(0, spec["code_root"])
    from nemoflow.engine.build import run_plan
    from nemoflow.executors import make_executor
    from nemoflow.pipeline.loading import import_pipeline_module
    from nemoflow.pipeline.plan import make_plan
    from nemoflow.runs.catalog import reload
    from nemoflow.store.targets import Store

    pipeline = Path(spec["code_root"]) / spec["pipeline"] if spec.get("pipeline") else None
    if pipeline is not None:
        import_pipeline_module(pipeline)  # the recorded file, not the working tree's
    exp = reload(spec["experiment_id"], Store(spec["store"]))
    exp.pipeline_file = pipeline
    if spec.get("executor"):
        for step in exp.steps.values():
            step.executor = make_executor(spec["executor"])
    plan = make_plan(exp, Store(spec["scratch_store"]), until=spec["until"])
    result = run_plan(plan, jobs=1)
    return {
        "keys": {o.name: o.key for o in [*result.ran, *result.failed]},
        "failed": {o.name: o.error or f"exit code {o.exit_code}" for o in result.failed},
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text())
    try:
        result = rebuild(spec)
    except BaseException as exc:  # the parent reports it as the rebuild's failure
        traceback.print_exc()
        result = {"problem": f"the rebuild failed: {type(exc).__name__}: {exc}", "keys": {}}
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
