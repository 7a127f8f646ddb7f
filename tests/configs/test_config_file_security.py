"""Config files are data: reading one never unpickles or calls anything (issue 13, "Config files execute code").

Each attack is provoked for real: a pickle whose unpickling would create a marker file, an ``_enum_`` that
names ``os.system``, a ``_target_`` of ``os.system``; the files go through ``nemoflow diff`` and a
script's ``@file`` as a user would pass them, and the marker must never appear.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from pathlib import Path
from typing import Any

import dill
import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import nemoflow
from nemoflow.configs.core import Config, Partial
from nemoflow.configs.serialize import dumps, from_data, load, loads, to_data
from nemoflow.errors import ConfigError, UserError

from helpers import nemoflow as run_nemoflow
from script_helpers import copy_script, run_script
from targets_for_tests import Color, anything, apply

TESTS = Path(__file__).resolve().parent.parent
REFUSED = "a '_dill_' (pickled) value is refused in a config file"


class _Touch:
    """Unpickled, it runs ``touch MARKER``: what an attacker's ``_dill_`` value would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def pickle_touching(marker: Path) -> str:
    return base64.b64encode(dill.dumps(_Touch(marker))).decode("ascii")


def write(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data) if path.suffix == ".yaml" else json.dumps(data))
    return path


def test_the_payload_is_live_when_trusted(tmp_path: Path) -> None:
    """The pickle the other tests use does run code when unpickled: only the refusal keeps it out."""
    marker = tmp_path / "MARKER"
    from_data({"_dill_": pickle_touching(marker)}, trusted=True)
    assert marker.exists()


# ---- the command line -------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_nemoflow_diff_refuses_a_pickle_and_runs_nothing(tmp_path: Path, suffix: str) -> None:
    marker = tmp_path / "MARKER"
    write(tmp_path / "a.yaml", {"_target_": "targets_for_tests:Model", "hidden_size": 8})
    evil = write(
        tmp_path / f"evil{suffix}",
        {"_target_": "targets_for_tests:Model", "hidden_size": {"_dill_": pickle_touching(marker)}},
    )
    proc = run_nemoflow("diff", "a.yaml", evil.name, cwd=tmp_path, env={"PYTHONPATH": str(TESTS)})
    assert proc.returncode == 2, proc.stderr
    assert f"{evil.name}: Model.hidden_size: {REFUSED}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists()


@pytest.mark.parametrize(
    "evil",
    [
        {"_target_": "train:train", "_partial_": True, "model": {"_dill_": "PAYLOAD"}},
        {"model": {"_dill_": "PAYLOAD"}},  # a mapping of values
    ],
    ids=["whole config", "mapping of values"],
)
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_script_refuses_a_pickle_in_an_at_file(tmp_path: Path, suffix: str, evil: dict[str, Any]) -> None:
    copy_script(tmp_path)
    marker = tmp_path / "MARKER"
    text = json.dumps(evil).replace("PAYLOAD", pickle_touching(marker))
    path = write(tmp_path / f"evil{suffix}", json.loads(text))
    proc = run_script(f"@{path.name}", "--dryrun", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert path.name in proc.stderr and "model" in proc.stderr and REFUSED in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists()


def test_an_enum_naming_os_system_is_refused_everywhere(tmp_path: Path) -> None:
    copy_script(tmp_path)
    marker = tmp_path / "MARKER"
    write(tmp_path / "a.yaml", {"_target_": "targets_for_tests:Model", "hidden_size": 8})
    write(tmp_path / "evil.json", {"_enum_": "os:system", "value": f"touch {marker}"})
    write(tmp_path / "values.json", {"data_path": {"_enum_": "os:system", "value": f"touch {marker}"}})
    diff = run_nemoflow("diff", "a.yaml", "evil.json", cwd=tmp_path, env={"PYTHONPATH": str(TESTS)})
    script = run_script("@values.json", "--dryrun", cwd=tmp_path)
    for proc, where in ((diff, "evil.json: "), (script, "values.json: data_path: ")):
        assert proc.returncode == 2, proc.stderr
        assert f"{where}'_enum_' names 'os:system', which is not an Enum class" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not marker.exists()


def test_a_target_of_os_system_is_imported_but_never_called(tmp_path: Path) -> None:
    copy_script(tmp_path)
    marker = tmp_path / "MARKER"
    write(tmp_path / "a.yaml", {"_target_": "targets_for_tests:Model", "hidden_size": 8})
    evil = write(tmp_path / "evil.yaml", {"_target_": "os:system", "command": f"touch {marker}"})
    diff = run_nemoflow("diff", "a.yaml", "evil.yaml", cwd=tmp_path, env={"PYTHONPATH": str(TESTS)})
    assert diff.returncode == 0, diff.stderr  # a config of a function is data: diff shows it
    assert "touch" in diff.stdout
    script = run_script("@evil.yaml", "--dryrun", cwd=tmp_path)
    assert script.returncode == 2 and "evil.yaml holds a config of system, not of train" in script.stderr
    loaded = load(evil)
    assert loaded.__fn_or_cls__ is os.system and loaded.command == f"touch {marker}"
    assert not marker.exists()


# ---- the loaders ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["yaml", "toml", "json"])
def test_every_text_format_refuses_a_pickle(tmp_path: Path, fmt: str) -> None:
    marker = tmp_path / "MARKER"
    cfg = Config(anything, fn=lambda x: x)  # written with a _dill_ value, as nemoflow writes its own records
    text = dumps(cfg, fmt).replace(to_data(cfg)["fn"]["_dill_"], pickle_touching(marker))
    path = tmp_path / f"config.{fmt}"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}: anything.fn: {REFUSED}")
    assert "pickles are read only from nemoflow's own store and ledger" in str(info.value)
    with pytest.raises(ConfigError, match="pickled"):
        loads(text, fmt)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"_import_": "os:environ"}, "'os:environ' is an object of type _Environ, not a class or function"),
        ({"_import_": "os:sep"}, "'os:sep' is an object of type str, not a class or function"),
        ({"_target_": "os:environ"}, "'os:environ' is an object of type _Environ, not a class or function"),
        ({"_target_": 3}, "_target_ must be an import path (module:name), got a int"),
        ({"_target_": "targets_for_tests:anything", "_partial_": "yes"}, "_partial_ must be true or false"),
        ({"_enum_": "targets_for_tests:Model", "value": 1}, "'targets_for_tests:Model', which is not an Enum class"),
        ({"_enum_": "targets_for_tests:Color", "value": "blue"}, "targets_for_tests:Color has no member of value"),
        ({"_enum_": "targets_for_tests:Color"}, "a '_enum_' mapping takes a str and 'value' only"),
        ({"_import_": "..relative:x"}, "cannot import '..relative:x'"),
        ({"_dill_": "not base64 !"}, REFUSED),
        ({"_dill_": "x", "_enum_": "y"}, "a mapping with '_dill_' and '_enum_' is ambiguous"),
        ({"_output_": "prepare"}, "a '_output_' mapping takes a str and 'path' only"),
        ({"_set_": [[1], [2]]}, "a '_set_' holds a value that cannot be in a set"),
        ({"_items_": [[1, 2, 3]]}, "each of '_items_' must be a [key, value] pair"),
        ({"_script_": {"inline": "echo", "shell": "sh"}}, "Script has no field 'shell'"),
        ({"_script_": {"path": 3}}, "not a Script"),
        ({"_path_": 3}, "a '_path_' mapping takes a str only"),
        ({"_target_": "targets_for_tests:anything", "__class__": 1}, "'__class__' cannot be a parameter name"),
    ],
)
def test_malformed_data_is_one_config_error_with_its_path(data: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_data({"outer": [data]})
    assert words in str(info.value)
    assert str(info.value).startswith("outer[0]")


def test_a_module_that_fails_on_import_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "fails_on_import.py").write_text("raise RuntimeError('no import for you')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="importing it raised RuntimeError: no import for you"):
        from_data({"_target_": "fails_on_import:f"})


def test_what_a_config_may_name_still_round_trips() -> None:
    data = to_data(Config(anything, fn=Partial(apply, fn=nemoflow.build), color=Color.RED, ufunc=np.tanh))
    assert data["ufunc"] == {"_import_": "numpy:tanh"}
    back = from_data(json.loads(json.dumps(data)))
    assert back.fn.fn is nemoflow.build and back.color is Color.RED and back.ufunc is np.tanh


def test_python_config_files_keep_their_pickles(tmp_path: Path) -> None:
    """A ``.py`` config file is a program (it is run), so the pickles it holds are as trusted as its code."""
    path = tmp_path / "config.py"
    nemoflow.configs.serialize.save(Config(anything, fn=lambda x: x + 1), path)
    assert "trusted=True" in path.read_text()
    assert load(path).fn(1) == 2


# ---- nemoflow's own records are trusted ------------------------------------------------------


def test_a_pickled_value_round_trips_through_the_job_file_the_store_and_the_ledger(tmp_path: Path) -> None:
    """The job file a build writes (read by the step's process) and the ledger (``from_id``) hold pickles."""
    offset = 5
    exp = nemoflow.Experiment("pickled")
    exp.add(nemoflow.Partial(apply, fn=lambda x: x + offset, x=2), name="apply")  # a closure: dill only
    exp.run(store=tmp_path / "targets", workdir=tmp_path)  # the step runs in a subprocess
    assert exp.results() == {"apply": 7}
    again = nemoflow.Experiment.from_id(exp.id, store=tmp_path / "targets")
    assert again.steps["apply"].task.fn(1) == 6
    assert again.results() == {"apply": 7}


# ---- property: whatever a file holds, reading it is an error or a config, never code --------------

TAGS = ["_dill_", "_enum_", "_import_", "_target_", "_partial_", "value", "_output_", "_set_", "_items_", "_script_"]
NAMES = [
    "os:system",
    "os.system",
    "subprocess:run",
    "builtins:exec",
    "builtins:eval",
    "os:environ",
    "shutil:rmtree",
    "enum:Enum",
    "targets_for_tests:Color",
    "targets_for_tests:Model",
    "targets_for_tests:anything",
    "nemoflow.configs.core:Config",
]


@pytest.fixture(scope="module")
def live_pickle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    marker = tmp_path_factory.mktemp("fuzz") / "MARKER"
    return marker, pickle_touching(marker)


def _trees(payload: str) -> st.SearchStrategy[Any]:
    strings = st.text(max_size=10) | st.sampled_from([*NAMES, payload, "touch MARKER"])
    leaves = strings | st.integers() | st.booleans() | st.none() | st.floats(allow_nan=False)
    keys = st.sampled_from(TAGS) | st.text(max_size=4)
    return st.recursive(
        leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=4), max_leaves=12
    )


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_reading_any_file_gives_a_config_or_a_user_error_and_runs_nothing(
    live_pickle: tuple[Path, str], data: st.DataObject
) -> None:
    marker, payload = live_pickle
    tree = data.draw(_trees(payload))
    for text, fmt in ((json.dumps(tree), "json"), (yaml.safe_dump(tree), "yaml")):
        with contextlib.suppress(UserError):  # anything else fails the test
            loads(text, fmt)
    assert not marker.exists()
