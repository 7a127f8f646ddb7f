"""Tests for nemoflow.pipeline.fingerprint: which parts of the user's code a target reaches, and what changes them."""

from __future__ import annotations

import json
import sys
import textwrap
import types
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from nemoflow.pipeline.code_index import ModuleIndexCache, index_source
from nemoflow.pipeline.fingerprint import Fingerprinter
from nemoflow.pipeline.script_code import script_parts
from nemoflow.pipeline.user_code import is_user_module
from nemoflow.store.hashing import FileHashCache

from helpers import last_json, nemoflow

Load = Callable[..., types.ModuleType]


@pytest.fixture
def load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Load:
    """Write modules under a fresh folder and import one of them, as a new process would."""
    monkeypatch.setattr(sys, "dont_write_bytecode", True)

    def write_and_import(main: str, **others: str) -> types.ModuleType:
        folder = tmp_path / uuid.uuid4().hex
        folder.mkdir()
        for name, source in {"main": main, **others}.items():
            path = folder / (name.replace(".", "/") + ".py")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source))
            for parent in path.relative_to(folder).parents:
                if str(parent) != ".":
                    (folder / parent / "__init__.py").touch()
        for name in [n for n in sys.modules if n == "main" or n.split(".")[0] in {o.split(".")[0] for o in others}]:
            del sys.modules[name]
        monkeypatch.syspath_prepend(str(folder))
        __import__("main")
        return sys.modules["main"]

    return write_and_import


def parts(*targets: object, packages: bool = True, root: Path | None = None) -> dict[str, str]:
    printer = Fingerprinter(root or Path.cwd(), FileHashCache(), ModuleIndexCache(), packages=packages)
    return printer.parts(targets)


STEP = '''
import json

SCALE = 2


def helper(x):
    """Helps."""
    return x + 1


def step(x, scale=SCALE):
    # double it
    return helper(x) * scale


def other():
    return 1
'''


def test_comments_docstrings_formatting_and_unrelated_code_change_nothing(load: Load) -> None:
    before = parts(load(STEP).step)
    after = parts(
        load(
            STEP.replace('"""Helps."""', '"""Helps a lot."""')
            .replace("# double it", "# twice")
            .replace("return helper(x) * scale", "return (helper(x)\n            * scale)  # same")
            .replace("return 1", "return 2")
            + "\n\ndef more():\n    return 3\n"
        ).step
    )
    assert before == after


def test_the_step_its_helper_and_the_constant_it_reads_are_each_a_part(load: Load) -> None:
    found = parts(load(STEP).step)
    assert set(found) == {"code:main.py:step", "code:main.py:helper", "constant:main.SCALE"}
    assert found["constant:main.SCALE"] == "2"
    assert parts(load(STEP.replace("x + 1", "x + 2")).step)["code:main.py:helper"] != found["code:main.py:helper"]
    assert parts(load(STEP.replace("SCALE = 2", "SCALE = 3")).step)["constant:main.SCALE"] == "3"


def test_imported_user_modules_are_followed_by_attribute_and_by_name(load: Load) -> None:
    main = """
        import mylib.model
        from mylib.util import clip

        def step(x):
            return clip(mylib.model.forward(x))
    """
    lib = {
        "mylib.model": "from mylib.util import clip\n\ndef forward(x):\n    return _inner(x)\n\ndef _inner(x):\n    return x\n\ndef unused():\n    return 0\n",
        "mylib.util": "LIMIT = {'hi': 1.5}\n\ndef clip(x):\n    return min(x, LIMIT['hi'])\n",
    }
    found = parts(load(main, **lib).step)
    assert set(found) == {
        "code:main.py:step",
        "code:mylib/model.py:forward",
        "code:mylib/model.py:_inner",
        "code:mylib/util.py:clip",
        "constant:mylib.util.LIMIT",
    }
    assert json.loads(found["constant:mylib.util.LIMIT"]) == {"hi": 1.5}


def test_classes_bring_their_bases_and_methods_and_instances_their_class(load: Load) -> None:
    main = """
        from nets import Net

        MODEL = Net(3)

        def step(x):
            return MODEL(x)
    """
    nets = "class Base:\n    def act(self, x):\n        return x\n\nclass Net(Base):\n    def __init__(self, k):\n        self.k = k\n    def __call__(self, x):\n        return self.act(x) * self.k\n"
    found = parts(load(main, nets=nets).step)
    assert {"code:nets.py:Net", "code:nets.py:Base"} <= set(found)
    assert found["constant:main.MODEL"].startswith("source:")  # not plain data: by the line that makes it
    changed = parts(load(main.replace("Net(3)", "Net(4)"), nets=nets).step)
    assert changed["constant:main.MODEL"] != found["constant:main.MODEL"]
    edited_base = parts(load(main, nets=nets.replace("return x\n", "return -x\n", 1)).step)
    assert edited_base["code:nets.py:Base"] != found["code:nets.py:Base"]


def test_decorators_closures_nested_functions_and_defaults(load: Load) -> None:
    main = """
        import functools

        def traced(fn):
            @functools.wraps(fn)
            def wrapper(*a):
                return fn(*a)
            return wrapper

        def make(k):
            def inner(x):
                return x * k
            return inner

        TIMES = make(3)
        OFFSET = 1

        @traced
        def step(x, offset=OFFSET):
            def local(y):
                return y - 1
            return local(TIMES(x)) + offset
    """
    found = parts(load(main).step)
    assert {"code:main.py:step", "code:main.py:traced", "code:main.py:make.<locals>.inner"} <= set(found)
    assert found["constant:main.make.<locals>.inner.k"] == "3"
    assert found["constant:main.OFFSET"] == "1"
    assert parts(load(main.replace("make(3)", "make(4)")).step)["constant:main.make.<locals>.inner.k"] == "4"
    assert parts(load(main.replace("y - 1", "y - 2")).step)["code:main.py:step"] != found["code:main.py:step"]


def test_installed_packages_count_by_version_and_the_standard_library_not_at_all(load: Load) -> None:
    main = "import json\nimport numpy as np\n\ndef step(x):\n    return np.tanh(json.loads(x))\n"
    import numpy

    found = parts(load(main).step)
    assert found["package:numpy"] == numpy.__version__
    assert not any("json" in p for p in found)
    assert "package:numpy" not in parts(load(main).step, packages=False)


def test_a_function_defined_without_a_file_is_fingerprinted_by_its_code() -> None:
    namespace: dict = {"__name__": "__main__"}
    exec("def step(x):\n    return x + 1\n", namespace)
    other: dict = {"__name__": "__main__"}
    exec("def step(x):\n    return x + 2\n", other)
    assert parts(namespace["step"]) != parts(other["step"])


def test_module_indexes_are_reused_while_the_file_is_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("def f():\n    return 1\n")
    cache = ModuleIndexCache()
    first = cache.index(str(path), "")
    assert cache.changed and first is not None
    again = ModuleIndexCache(json.loads(json.dumps(cache.entries)))
    assert again.index(str(path), "") is not None and not again.changed  # read from the saved cache
    path.write_text("def f():\n    return 2\n")
    assert again.index(str(path), "").units["f"].digest != first.units["f"].digest


def test_index_source_strips_docstrings_but_keeps_code() -> None:
    a = index_source('def f():\n    """doc"""\n    return 1\n')
    b = index_source("def f():\n    return 1\n")
    c = index_source('def f():\n    return "doc"\n')
    assert a.units["f"].digest == b.units["f"].digest != c.units["f"].digest


def test_user_modules_are_those_outside_installed_folders(tmp_path: Path) -> None:
    import numpy

    assert not is_user_module("numpy", numpy.__file__)
    assert not is_user_module("json", None) and not is_user_module("nemoflow.pipeline.plan", None)
    assert is_user_module("mylib.model", str(tmp_path / "mylib" / "model.py"))


def test_a_script_counts_its_source_and_the_user_modules_it_imports(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "__init__.py").write_text("")
    (tmp_path / "lib" / "fmt.py").write_text("def fmt(x):\n    return str(x)\n")
    script = tmp_path / "run.py"
    script.write_text('"""Run."""\nimport numpy\nfrom lib.fmt import fmt\nprint(fmt(1))\n')
    found = script_parts(script, tmp_path, ModuleIndexCache())
    assert set(found) == {"script:run.py", "module:lib/__init__.py", "module:lib/fmt.py", "package:numpy"}
    script.write_text('"""Run it."""\nimport numpy\nfrom lib.fmt import fmt\nprint(fmt(1))\n')
    assert script_parts(script, tmp_path, ModuleIndexCache()) == found  # a docstring only


# ---- packages, seen as a user would --------------------------------------------------------------


def _fake_distribution(site: Path, version: str) -> None:
    for old in site.glob("fakepkg-*.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    (site / "fakepkg").mkdir(parents=True, exist_ok=True)
    (site / "fakepkg" / "__init__.py").write_text("def f(x):\n    return x\n")
    info = site / f"fakepkg-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fakepkg\nVersion: {version}\n")


PIPELINE = """
import fakepkg
import nemoflow


def step(x: int = 1) -> int:
    return fakepkg.f(x)


def pipeline() -> nemoflow.Experiment:
    exp = nemoflow.Experiment("pkgs"{options})
    exp.add(nemoflow.Partial(step, x=1), name="step")
    return exp
"""


@pytest.mark.parametrize("in_key", [True, False])
def test_upgrading_a_package_is_a_change_that_why_names_unless_turned_off(tmp_path: Path, in_key: bool) -> None:
    site = tmp_path / "venv" / "lib" / "site-packages"
    _fake_distribution(site, "1.0")
    (tmp_path / "p.py").write_text(PIPELINE.format(options="" if in_key else ", package_versions=False"))
    env = {"PYTHONPATH": str(site)}
    nemoflow("build", "p.py", cwd=tmp_path, env=env, check=True)
    _fake_distribution(site, "2.0")
    plan = last_json(
        nemoflow("build", "p.py", "--dry-run", "--why", "--json", cwd=tmp_path, env=env, check=True).stdout
    )
    if in_key:
        assert plan["would_run"] == ["step"]
        assert [c["text"] for c in plan["steps"][0]["why"]] == ["package fakepkg 1.0 → 2.0"]
        assert plan["steps"][0]["reason"] == "package changed"
    else:
        assert plan["would_run"] == []


def test_functions_kept_in_a_registry_constant_are_followed(load: Load) -> None:
    main = """
        def adam(lr):
            return lr * 2

        def sgd(lr):
            return lr

        OPTIMIZERS = {"adam": adam, "sgd": sgd}
        OPTIMIZERS["sgd"] = sgd

        def step(name, lr):
            return OPTIMIZERS[name](lr)
    """
    found = parts(load(main).step)
    assert {"code:main.py:adam", "code:main.py:sgd"} <= set(found)
    edited = parts(load(main.replace("lr * 2", "lr * 3")).step)
    assert edited["code:main.py:adam"] != found["code:main.py:adam"]
