"""A generated user project for the key tests: a pipeline file, its own package of helpers, a script.

Every place a researcher edits is a *slot* with a default text; :func:`write_project` renders the
files from a dict of slots, so a test (or hypothesis) mutates one slot and knows what changed.
Files are replaced with a rename (a new inode), as editors do, and no bytecode is written, so an
edit within one clock tick is always seen by Python's import system.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

STEPS = ("prepare", "train", "evaluate", "report", "lookup")

SLOTS: dict[str, str] = {
    "scale": "3",  # pipeline.SCALE, read by train
    "topk": "5",  # pipeline.TOPK, a default value of evaluate
    "opts": '{"eps": 0.001}',  # pipeline.OPTS, a dict constant read by train
    "double": "x * 2",  # pipeline._double, called by evaluate
    "train_doc": "Fit the model.",  # a docstring only
    "train_comment": "# the update",  # a comment only
    "unrelated": "return 1",  # pipeline.unrelated: no step reaches it
    "lr": "0.1",  # a config value of train
    "forward": "sum(rows) * lr",  # mylib/model.py:forward
    "inner": "value + 1",  # mylib/model.py:_inner, called by forward
    "factor": "2",  # mylib/model.py FACTOR, read by forward
    "model_unrelated": "return 0",  # mylib/model.py:unused
    "load": "list(range(n))",  # mylib/data.py:load, used by prepare (through `from mylib import data`)
    "score": "model['w'] + k",  # mylib/metrics.py:score, used by evaluate as mylib.metrics.score
    "trace": "fn(*args, **kwargs)",  # mylib/deco.py: the wrapper of the decorator on train
    "base_act": "x",  # mylib/nets.py:Base.act, base class of the config target Net
    "net_width": "2",  # a nested config value of train
    "scaler_body": "v * k",  # mylib/nets.py:make_scaler's closure, module-level scaler used by train
    "scaler_k": "2",  # the closure's value
    "fmt": "f'{value:.2f}'",  # mylib/fmt.py:fmt, imported by the report script
    "script_doc": "Write the report.",  # the script's docstring only
    "vocab": "a b c",  # vocab.txt, declared by lookup with extra_files=
    "lookup_version": "1",  # lookup's version=
    "lookup_table": "{'a': 1}",  # mylib/tables.py TABLE: reached only through getattr by string
}

# Which steps each slot's edit must rebuild (the step itself and everything downstream of it).
AFFECTS: dict[str, set[str]] = {
    "scale": {"train", "evaluate"},
    "topk": {"evaluate"},
    "opts": {"train", "evaluate"},
    "double": {"evaluate"},
    "train_doc": set(),
    "train_comment": set(),
    "unrelated": set(),
    "lr": {"train", "evaluate"},
    "forward": {"train", "evaluate"},
    "inner": {"train", "evaluate"},
    "factor": {"train", "evaluate"},
    "model_unrelated": set(),
    "load": {"prepare", "train", "evaluate", "report"},
    "score": {"evaluate"},
    "trace": {"train", "evaluate"},
    "base_act": {"train", "evaluate"},
    "net_width": {"train", "evaluate"},
    "scaler_body": {"train", "evaluate"},
    "scaler_k": {"train", "evaluate"},
    "fmt": {"report"},
    "script_doc": set(),
    "vocab": {"lookup"},
    "lookup_version": {"lookup"},
    "lookup_table": {"lookup"},
}

# A second value for each slot (the mutation the matrix makes).
EDITS: dict[str, str] = {
    "scale": "4",
    "topk": "6",
    "opts": '{"eps": 0.01}',
    "double": "x * 3",
    "train_doc": "Fit the model, carefully.",
    "train_comment": "# the gradient step",
    "unrelated": "return 2",
    "lr": "0.4",
    "forward": "sum(rows) * lr * 2",
    "inner": "value + 2",
    "factor": "3",
    "model_unrelated": "return 9",
    "load": "list(range(n + 1))",
    "score": "model['w'] * k",
    "trace": "fn(*args, **kwargs) or {}",
    "base_act": "x + 0",
    "net_width": "3",
    "scaler_body": "v * k + 0",
    "scaler_k": "5",
    "fmt": "f'{value:.3f}'",
    "script_doc": "Write the final report.",
    "vocab": "a b c d",
    "lookup_version": "2",
    "lookup_table": "{'a': 2}",
}


def _files(s: dict[str, str]) -> dict[str, str]:
    return {
        "pipeline.py": f'''
            """The pipeline file of the generated project."""

            from __future__ import annotations

            import importlib

            import nemoflow
            import mylib.metrics
            from mylib import data
            from mylib.deco import traced
            from mylib.model import forward
            from mylib.nets import Net, scaler

            SCALE = {s["scale"]}
            TOPK = {s["topk"]}
            OPTS = {s["opts"]}


            def _double(x):
                return {s["double"]}


            def unrelated():
                {s["unrelated"]}


            def prepare(n: int = 4) -> dict:
                return {{"rows": data.load(n)}}


            @traced
            def train(rows: dict, net: Net, lr: float = {s["lr"]}) -> dict:
                """{s["train_doc"]}"""
                {s["train_comment"]}
                w = forward(rows["rows"], lr) * SCALE + OPTS["eps"]
                return {{"w": scaler(net.act(w))}}


            def evaluate(model: dict, k: int = TOPK) -> dict:
                return {{"score": _double(mylib.metrics.score(model, k))}}


            @nemoflow.depends_on(files=["vocab.txt"])
            def lookup(word: str) -> int:
                tables = importlib.import_module("mylib.tables")
                words = open("vocab.txt").read().split()
                return getattr(tables, "TABLE").get(word, 0) + len(words)


            def pipeline() -> nemoflow.Experiment:
                exp = nemoflow.Experiment("keys")
                prepared = exp.add(nemoflow.Partial(prepare, n=4), name="prepare")
                net = nemoflow.Config(Net, width={s["net_width"]})
                trained = exp.add(nemoflow.Partial(train, rows=prepared.result, net=net, lr={s["lr"]}), name="train")
                exp.add(nemoflow.Partial(evaluate, model=trained.result), name="evaluate")
                exp.add(
                    nemoflow.Script(path="report.py", args=["4"], entrypoint="python"),
                    name="report",
                    dependencies=[prepared],
                )
                exp.add(
                    nemoflow.Partial(lookup, word="a"),
                    name="lookup",
                    extra_code=[importlib.import_module("mylib.tables")],
                    version="{s["lookup_version"]}",
                )
                return exp
        ''',
        "report.py": f'''
            """{s["script_doc"]}"""

            import sys

            from mylib.fmt import fmt

            print(fmt(float(sys.argv[-1])))
        ''',
        "mylib/__init__.py": '"""The project\'s own package."""\n',
        "mylib/model.py": f"""
            FACTOR = {s["factor"]}


            def _inner(value):
                return {s["inner"]}


            def forward(rows, lr):
                # a comment that never counts
                return _inner({s["forward"]}) * FACTOR


            def unused():
                {s["model_unrelated"]}
        """,
        "mylib/data.py": f"""
            def load(n):
                return {s["load"]}
        """,
        "mylib/metrics.py": f"""
            def score(model, k):
                return {s["score"]}
        """,
        "mylib/deco.py": f"""
            import functools


            def traced(fn):
                @functools.wraps(fn)
                def wrapper(*args, **kwargs):
                    return {s["trace"]}

                return wrapper
        """,
        "mylib/nets.py": f"""
            from dataclasses import dataclass


            class Base:
                def act(self, x):
                    return {s["base_act"]}


            @dataclass
            class Net(Base):
                width: int = 1


            def make_scaler(k):
                def scale(v):
                    return {s["scaler_body"]}

                return scale


            scaler = make_scaler({s["scaler_k"]})
        """,
        "mylib/fmt.py": f"""
            def fmt(value):
                return {s["fmt"]}
        """,
        "mylib/tables.py": f"""
            TABLE = {s["lookup_table"]}
        """,
        "vocab.txt": s["vocab"] + "\n",
    }


def write_project(root: Path, slots: dict[str, str]) -> list[str]:
    """Write the project's files under ``root``; returns the files whose text changed."""
    changed = []
    for rel, text in _files(slots).items():
        path = root / rel
        text = textwrap.dedent(text).lstrip("\n")
        if path.exists() and path.read_text() == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)  # a new inode, as an editor's save
        changed.append(rel)
    return changed


def forget_modules() -> None:
    """Drop the project's modules from this process, so the next load imports the files as they are now."""
    for name in [n for n in sys.modules if n in ("pipeline", "mylib") or n.startswith("mylib.")]:
        del sys.modules[name]
