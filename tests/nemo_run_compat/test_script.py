"""NeMo Run's ``run.Script`` through ``import nemoflow as run`` (NeMo Run's test/test_config.py TestScript)."""

from __future__ import annotations

from pathlib import Path

import pytest

import nemoflow as run
from nemoflow.configs.serialize import canonical_json, from_data, to_data


def test_script_initialization() -> None:
    script = run.Script(path="test_path")
    assert script.path == "test_path"
    assert script.args == []
    assert script.env == {}
    assert script.entrypoint == "bash"
    assert script.m is False


def test_script_post_init_assertion() -> None:
    with pytest.raises(AssertionError):
        run.Script()
    with pytest.raises(AssertionError):
        run.Script("test.py", entrypoint="")
    with pytest.raises(AssertionError, match="python"):
        run.Script("pkg.mod", m=True)


@pytest.mark.parametrize(
    ("inline", "name"),
    [
        ("echo hello world", "echo_hello"),
        ('echo "hi world!"', "echo_hi_w"),
        ("this is a very long inline script that should be truncated", "this_is_a_"),
    ],
)
def test_get_name_from_inline(inline: str, name: str) -> None:
    assert run.Script(inline=inline).get_name() == name


@pytest.mark.parametrize(
    ("path", "name"),
    [("/path/to/my/script.py", "script.py"), ("/path/to/my/script.sh", "script.sh"), ("/path/to/my/script", "script")],
)
def test_get_name_from_path(path: str, name: str) -> None:
    assert run.Script(path=path).get_name() == name


def test_to_command_with_inline() -> None:
    script = run.Script(inline="echo 'test'")
    assert script.to_command() == ["-c", "\"echo 'test'\""]
    assert script.to_command(with_entrypoint=True) == ["bash", "-c", "\"echo 'test'\""]


def test_to_command_with_path_args_and_module() -> None:
    assert run.Script(path="test.py").to_command() == ["test.py"]
    assert run.Script(path="test.py", args=["--arg1", "value1"]).to_command() == ["test.py", "--arg1", "value1"]
    assert run.Script(path="test.py", m=True, entrypoint="python").to_command() == ["-m", "test.py"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"with_entrypoint": True, "entrypoint": "bash"}, ["bash", "test.py"]),
        ({"with_entrypoint": True, "entrypoint": "python3", "m": True}, ["python3", "-m", "test.py"]),
        (
            {"with_entrypoint": True, "entrypoint": "python3", "m": True, "args": ["--arg1", "value1"]},
            ["python3", "-m", "test.py", "--arg1", "value1"],
        ),
        ({"with_entrypoint": False}, ["test.py"]),
    ],
)
def test_to_command_with_entrypoint(args: dict, expected: list[str]) -> None:
    with_entrypoint = args.pop("with_entrypoint")
    assert run.Script(path="test.py", **args).to_command(with_entrypoint=with_entrypoint) == expected


def test_to_command_without_an_entrypoint_is_a_value_error() -> None:
    script = run.Script(path="test.py")
    script.entrypoint = ""
    with pytest.raises(ValueError):
        script.to_command(with_entrypoint=True)


def test_a_module_script_runs_with_dash_m() -> None:
    assert run.Script("pkg.train", m=True, entrypoint="python", args=["--n", 2]).command() == [
        "python",
        "-m",
        "pkg.train",
        "--n",
        2,
    ]


def test_the_data_form_of_a_plain_script_is_unchanged_and_m_round_trips() -> None:
    plain = run.Script("run.sh", args=["--n", 3], env={"SEED": "1"})
    assert canonical_json(to_data(plain)) == (
        '{"_script_":{"args":["--n",3],"entrypoint":"bash","env":{"SEED":"1"},"inline":null,"path":"run.sh"}}'
    )
    module = run.Script("pkg.train", m=True, entrypoint="python")
    assert to_data(module)["_script_"]["m"] is True
    assert from_data(to_data(module)) == module


def _key(tmp_path: Path, script: run.Script) -> str:
    exp = run.Experiment("scripts")
    exp.add(script, name="s")
    return run.make_plan(exp, run.Store(tmp_path / "store"), workdir=tmp_path).steps["s"].key


@pytest.mark.parametrize("empty", [None, ""])
def test_a_script_key_sees_its_file_s_content_when_inline_is_empty(tmp_path: Path, empty: str | None) -> None:
    (tmp_path / "run.sh").write_text("echo 1\n")
    first = _key(tmp_path, run.Script(path="run.sh", inline=empty))
    (tmp_path / "run.sh").write_text("echo 2\n")
    assert _key(tmp_path, run.Script(path="run.sh", inline=empty)) != first


def test_an_inline_script_key_sees_its_text(tmp_path: Path) -> None:
    assert _key(tmp_path, run.Script(inline="echo 1")) != _key(tmp_path, run.Script(inline="echo 2"))
