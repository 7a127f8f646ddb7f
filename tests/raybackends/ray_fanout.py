"""A test pipeline: a local prepare step, a fan-out of N steps on a Ray cluster, and a local reduce step.

Environment: NF_RAY_ADDRESS (the dashboard), NF_FANOUT (N, default 20), NF_OFFSET_3 (changes step square-3's
config), NF_FAIL (the name of a step that exits with code 3), NF_SLEEP (seconds each Ray step sleeps).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import nemoflow


def prepare(n: int) -> None:
    (nemoflow.output_dir() / "numbers.json").write_text(json.dumps(list(range(n))))


def square(numbers: str, index: int, offset: int = 0, fail: bool = False, sleep: float = 0.0) -> None:
    print(f"square {index} on pid {os.getpid()}", flush=True)
    time.sleep(sleep)
    if fail:
        print("this step was told to fail", flush=True)
        sys.exit(3)
    value = json.loads(Path(numbers).read_text())[index] ** 2 + offset
    (nemoflow.output_dir() / "value.json").write_text(
        json.dumps({"value": value, "ray_address": os.environ.get("RAY_ADDRESS")})
    )


def reduce(values: list[str]) -> None:
    total = sum(json.loads(Path(v).read_text())["value"] for v in values)
    (nemoflow.output_dir() / "total.json").write_text(json.dumps({"total": total}))


def pipeline() -> nemoflow.Experiment:
    ray = nemoflow.RayExecutor(address=os.environ.get("NF_RAY_ADDRESS", "http://127.0.0.1:8265"), num_cpus=0.1)
    n = int(os.environ.get("NF_FANOUT", "20"))
    exp = nemoflow.Experiment("ray-fanout")
    numbers = exp.add(nemoflow.Partial(prepare, n=n), name="prepare")
    values = []
    for i in range(n):
        name = f"square-{i}"
        task = nemoflow.Partial(
            square,
            numbers=numbers.output("numbers.json"),
            index=i,
            offset=int(os.environ.get("NF_OFFSET_3", "0")) if i == 3 else 0,
            fail=os.environ.get("NF_FAIL") == name,
            sleep=float(os.environ.get("NF_SLEEP", "0")),
        )
        values.append(exp.add(task, name=name, executor=ray).output("value.json"))
    exp.add(nemoflow.Partial(reduce, values=values), name="reduce")
    return exp
