"""Bad-input fuzz over the override grammar applied to a real pipeline (pipelines/quickstart.py).

In process: hypothesis builds tokens from the grammar's parts (step names, keys, operators,
values of every shape: broken literals, quotes, calls, code payloads, ``@file``, unicode, very
long text). Each either applies or raises a ``UserError``, never another exception, and no
payload's code runs (the marker file it would create never appears).
Through the real CLI: a few bad overrides exit 2 with an ``error:`` message and no traceback,
and leave the store and its ledger as they were.
"""

from __future__ import annotations

import copy
import string
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nemoflow
from nemoflow.cli.overrides import apply_to_experiment
from nemoflow.errors import UserError

from helpers import built_quickstart, copy_pipeline, snapshot
from helpers import nemoflow as run_nemoflow

STEPS = [
    "prepare",
    "train-small",
    "train-medium",
    "train-large",
    "evaluate-small",
    "evaluate-medium",
    "evaluate-large",
    "report",
]
KEYS = [
    "lr",
    "epochs",
    "seed",
    "model",
    "model.hidden_size",
    "model.activation",
    "model.nope",
    "n_samples",
    "noise",
    "test_fraction",
    "names",
    "metrics",
    "data",
    "train.lr",
    "hidden_size",
    "nope",
    "lr.x",
    "__class__",
    "__init__.__globals__",
    "",
]
OPERATORS = ["=", "+=", "-=", "*=", "/=", "==", "=+", ":=", "**=", "", " = "]


def _payloads(marker: Path) -> list[str]:
    """Values that would create ``marker`` if any part of them were run as code."""
    m = repr(str(marker))
    touch = f"__import__('pathlib').Path({m}).touch()"
    return [
        touch,
        f"({touch})",
        f"[{touch}]",
        f"{{'a': {touch}}}",
        f"exec({touch!r})",
        f"eval({touch!r})",
        f"compile({touch!r}, 'x', 'exec')",
        f"open({m}, 'w')",
        f'f"{{{touch}}}"',
        f"(lambda: {touch})()",
        f"[x for x in [{touch}]]",
        f"small_model(hidden_size={touch})",
        f"ModelConfig(hidden_size={touch})",
        f"int({touch})",
        f"__builtins__.exec({touch!r})",
        f"{touch}.real",
        f"1 if {touch} else 2",
        f"'a' + {touch}",
        f"@{marker}",
        f"!{touch}",
        f"$(touch {marker})",
        f"`touch {marker}`",
    ]


_SMALL_NUMBERS = st.one_of(st.integers(-1000, 1000), st.floats(-1e3, 1e3, allow_nan=False)).map(repr)
_BROKEN = st.sampled_from(
    ["[", "]", "[1,", "{", "{'a':", "(", "(1,", "'", '"', "'''", "\\", "[1, 2", "{1: [}", "((((", "None(", "1e", "0x"]
)
_ODD_TEXT = st.text(
    alphabet=st.sampled_from(string.ascii_letters + string.digits + string.punctuation + " \t\n\x00é中🙂\u200b\ud7ff"),
    max_size=40,
)
_LONG = st.sampled_from(
    ["9" * 5000, "'" + "a" * 100_000 + "'", "[" * 2000, "[" * 200 + "]" * 200, "1" + "+1" * 5000, "é" * 20_000]
)


def _values(marker: Path) -> st.SearchStrategy[str]:
    literals = st.sampled_from(["None", "True", "[1, 2]", "{'a': 1}", "(3, 3)", "'text'", "relu", "tanh", "/d"])
    parts = st.one_of(st.sampled_from(_payloads(marker)), _SMALL_NUMBERS, _BROKEN, _ODD_TEXT, literals)
    return st.one_of(parts, st.lists(parts, min_size=2, max_size=4).map("".join), _LONG)


def _tokens(marker: Path) -> st.SearchStrategy[str]:
    step = st.one_of(st.sampled_from([*STEPS, "*", "nosuch", "train", "", "train-small.model"]), _ODD_TEXT)
    key = st.one_of(st.sampled_from(KEYS), _ODD_TEXT)
    op = st.sampled_from(OPERATORS)
    grammar = st.builds(lambda s, k, o, v: f"{s}.{k}{o}{v}", step, key, op, _values(marker))
    return st.one_of(grammar, grammar, grammar, _values(marker), st.builds(lambda v: "@" + v, _ODD_TEXT))


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("fuzz")
    copy_pipeline("quickstart.py", folder)
    return nemoflow.load_pipeline(folder / "quickstart.py")


MARKER = Path(tempfile.mkdtemp(prefix="override-fuzz-")) / "MARKER"  # a payload that ran would create it


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tokens=st.lists(_tokens(MARKER), min_size=1, max_size=3))
def test_bad_overrides_apply_or_raise_a_user_error_and_never_run_code(quickstart: Any, tokens: list[str]) -> None:
    exp = copy.deepcopy(quickstart)
    try:
        apply_to_experiment(exp, tokens)
    except UserError:
        pass
    except BaseException as exc:  # anything else escapes to the user as a traceback
        raise AssertionError(f"{tokens!r} raised {type(exc).__name__}: {exc}"[:2000]) from exc
    assert not MARKER.exists(), f"{tokens!r} ran code (the marker exists)"


@pytest.mark.parametrize(
    ("template", "words"),
    [("*.seed=os.system('touch {marker}')", "does not make configs"), ("train-small.seed=os.getpid", "expected int")],
)
def test_a_value_naming_an_importable_function_runs_no_code(
    quickstart: Any, tmp_path: Path, template: str, words: str
) -> None:
    """Only factories (registered, or annotated to return a config) and classes may be named by import path."""
    marker = tmp_path / "ran"
    with pytest.raises(UserError, match=words):
        apply_to_experiment(copy.deepcopy(quickstart), [template.format(marker=marker)])
    assert not marker.exists(), "the override ran a shell command"


# ---- through the real CLI -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_quickstart(tmp_path_factory, "fuzz-cli")


@pytest.mark.parametrize(
    "override",
    [
        "train-small.lr=[1",
        "train-small.nope=1",
        "train-small.lr=__import__('pathlib').Path('MARKER').touch()",
        "train-small.lr=(lambda: 1)()",
        'train-small.lr=exec(\'open("MARKER", "w")\')',
        "*.seed=",
        "train-small.lr/=0",
        "@MARKER.yaml",
        "*.nothing=1",
        "train-small.seed=" + "9" * 5000,
    ],
    ids=lambda override: override[:40],
)
def test_a_bad_override_on_the_command_line_exits_2_and_changes_nothing(built: Path, override: str) -> None:
    before = snapshot(built / "targets")
    proc = run_nemoflow("build", "quickstart.py", override, "--dry-run", cwd=built)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error"), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (built / "MARKER").exists()
    assert snapshot(built / "targets") == before
