"""Step functions for the experiment-lifecycle tests, importable by name from step subprocesses."""

from __future__ import annotations

import os
import time
from pathlib import Path

import nemoflow


def nap(i: int, seconds: float = 1.0) -> int:
    time.sleep(seconds)
    return i


def scaled(scale: float = 1.0) -> dict[str, object]:
    return {"scale": scale, "env": os.environ.get("NF_PLUGIN_VAR")}


def add(a: int, b: int = 0) -> int:
    return a + b


def fail_when(flag: str) -> str:
    print("checking", flag)
    nemoflow.log_metrics(step=0, loss=2.0)
    if Path(flag).exists():
        raise RuntimeError(f"flag {flag} is set")
    return "fine"


def talk(lines: int, pause: float) -> int:
    for i in range(lines):
        print(f"line {i}")  # no flush: the step's output is unbuffered
        time.sleep(pause)
    return lines


def sleep_forever(marker: str) -> None:
    Path(marker).write_text(str(os.getpid()))
    time.sleep(120)


@nemoflow.partial
def bare(a: int, b: int = 1) -> int:
    return a * b


@nemoflow.partial(executor=nemoflow.LocalExecutor(env_vars={"NF_DECORATED": "yes"}))
def decorated(x: int) -> dict[str, object]:
    return {"x": x, "env": os.environ.get("NF_DECORATED"), "pid": os.getpid()}
