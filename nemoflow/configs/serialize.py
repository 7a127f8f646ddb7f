"""Configs to plain data and back: canonical JSON (for keys), YAML, TOML, JSON, Python source.

The data form names targets by import path (``module:qualname``), Hydra style::

    {"_target_": "quickstart:train", "_partial_": true, "lr": 0.1,
     "data": {"_output_": "prepare", "path": "data.npz"}}

Keys hash that form. Config files are written with the dotted names NeMo Run and Hydra write
(``_target_: quickstart.train``); both spellings are read.
"""

from __future__ import annotations

# dill, yaml, tomli-w and tomllib are imported only when that format is written or read.
import base64
import enum
import json
import math
import os
import pathlib
import sys
from collections.abc import Mapping
from typing import Any

from nemoflow.configs.core import Buildable, Partial
from nemoflow.configs.decode import PARTIAL, SCALARS, TAGS, TARGET, from_data, import_object, is_named_callable
from nemoflow.configs.refs import File, StepLike, StepOutput, StepResult
from nemoflow.configs.script import Script
from nemoflow.errors import ConfigError, ConfigValueError, UserError

__all__ = [
    "FORMATS",
    "PARTIAL",
    "TARGET",
    "canonical_json",
    "dotted",
    "dumps",
    "from_data",
    "import_object",
    "import_path",
    "load",
    "loads",
    "python_source",
    "save",
    "to_data",
]


def import_path(obj: Any) -> str:
    """``module:qualname`` of a function, class or enum, refusing what cannot be imported back."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module or not qualname or "<locals>" in qualname or "<lambda>" in qualname:
        raise ConfigError(
            f"{obj!r} cannot be named by import path",
            hint="define it at module level of a module or pipeline file",
        )
    if module == "__main__":
        module = _main_module_name()
    return f"{module}:{qualname}"


def _main_module_name() -> str:
    """The name a script run as ``python file.py`` is imported by in a step's own process: its file's stem.

    Its functions live in ``__main__`` here; a subprocess imports the file as a module of that name (its
    ``if __name__ == "__main__":`` block does not run there), and ``nemoflow build file.py`` names it the same,
    so both give the same keys. Without a file (a REPL, a notebook) ``__main__`` stays, for in-process steps.
    """
    main = sys.modules.get("__main__")
    file = getattr(main, "__file__", None)
    if not file or not str(file).endswith(".py"):
        return "__main__"
    stem = pathlib.Path(file).stem
    sys.modules.setdefault(stem, main)  # type: ignore[arg-type]  # importable here under that name too
    return stem


def to_data(value: Any) -> Any:
    """A config tree as JSON-compatible data (see the module docstring)."""
    if isinstance(value, enum.Enum):  # before scalars: a str or int enum is one too
        return {"_enum_": import_path(type(value)), "value": to_data(value.value)}
    if isinstance(value, SCALARS):
        return value if type(value) in SCALARS else _plain(value)
    if isinstance(value, Buildable):
        data: dict[str, Any] = {TARGET: import_path(value.__fn_or_cls__)}
        if isinstance(value, Partial):
            data[PARTIAL] = True
        for name in sorted(value.__arguments__):
            data[name] = to_data(value.__arguments__[name])
        return data
    if isinstance(value, Script):
        fields = [f for f in Script._FIELDS if f != "m" or value.m]  # m only when set: older Scripts keep their keys
        return {"_script_": {f: to_data(getattr(value, f)) for f in fields}}
    if isinstance(value, File):
        return {"_file_": value.path}
    if isinstance(value, StepOutput):
        return {"_output_": value.step.name, "path": value.path}
    if isinstance(value, StepResult):
        return {"_result_": value.step.name}
    if isinstance(value, list):
        return [to_data(v) for v in value]
    if isinstance(value, tuple):
        return {"_tuple_": [to_data(v) for v in value]}
    if isinstance(value, (set, frozenset)):  # sorted: a set's own order changes with the hash seed
        tag = "_set_" if isinstance(value, set) else "_frozenset_"
        return {tag: sorted((to_data(v) for v in value), key=canonical_json)}
    if isinstance(value, pathlib.PurePath):
        return {"_path_": value.as_posix()}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and not value.keys() & _TAGS:
            return {k: to_data(value[k]) for k in sorted(value)}
        items = [[to_data(k), to_data(v)] for k, v in value.items()]
        return {"_items_": sorted(items, key=lambda item: canonical_json(item[0]))}  # equal dicts, one form
    if is_named_callable(value):
        try:
            return {"_import_": import_path(value)}
        except ConfigError:
            pass
    import dill

    return {"_dill_": base64.b64encode(dill.dumps(value, recurse=True)).decode("ascii")}


def _plain(value: str | int | float) -> str | int | float:
    """A subclass of str, int or float (``numpy.float64``) as the plain value, which YAML and TOML can write."""
    for base in (str, int, float):
        if isinstance(value, base):
            return base(value)
    return value


_TAGS = frozenset({TARGET, PARTIAL, "_none_", "_float_", *TAGS})  # a user dict with one is written as _items_


def canonical_json(data: Any) -> str:
    """The one JSON text of ``data`` that keys hash: sorted keys, no spaces, stable floats."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_refuse)


def _refuse(value: Any) -> Any:
    raise TypeError(f"not canonical data: {value!r}")


# ---- files --------------------------------------------------------------------------------

FORMATS = ("yaml", "toml", "json", "py")


def dumps(value: Any, fmt: str) -> str:
    """A config as YAML, TOML, JSON or Python source text; targets named ``module.qualname``.

    Raises:
        ConfigValueError: an unknown format (a ``ValueError``, as in NeMo Run).
    """
    data = dotted(to_data(value))
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=True) + "\n"
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    if fmt == "toml":
        import tomli_w

        return tomli_w.dumps(_toml_safe(data))
    if fmt == "py":
        return python_source(value)
    raise ConfigValueError(f"unknown config format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")


_NAMED_BY_PATH = (TARGET, "_import_", "_enum_")


def dotted(data: Any) -> Any:
    """``to_data``'s form with its import paths written as NeMo Run and Hydra do: ``module.Outer.Inner``
    for ``module:Outer.Inner``."""
    if isinstance(data, list):
        return [dotted(v) for v in data]
    if not isinstance(data, dict):
        return data
    out = {k: dotted(v) for k, v in data.items()}
    for tag in _NAMED_BY_PATH:
        if isinstance(out.get(tag), str):
            out[tag] = out[tag].replace(":", ".", 1)
    return out


def loads(text: str, fmt: str, *, steps: Mapping[str, StepLike] | None = None) -> Any:
    """The config tree in ``text`` (YAML, TOML or JSON): loaded safely, nothing evaluated, pickles refused.

    Raises:
        ConfigError: see :func:`from_data` (called with ``trusted=False``).
    """
    if fmt == "json":
        data = json.loads(text)
    elif fmt == "yaml":
        import yaml

        data = yaml.safe_load(text)
    elif fmt == "toml":
        import tomllib

        data = _from_toml(tomllib.loads(text))
    else:
        raise ConfigValueError(f"cannot load configs from {fmt!r} text", hint="use yaml, toml or json")
    return from_data(data, steps=steps)


def save(value: Any, path: str | os.PathLike[str]) -> None:
    """Write a config to a file; the format comes from the suffix."""
    target = pathlib.Path(path)
    target.write_text(dumps(value, _format_of(target)))


def load(path: str | os.PathLike[str], *, steps: Mapping[str, StepLike] | None = None) -> Any:
    """Read a config file written by :func:`save`.

    YAML, TOML and JSON files are data: see :func:`loads`. A ``.py`` file is a program, run to get its
    ``config``: load only one you would run.

    Raises:
        UserError: the file is missing or does not parse; a ``ConfigError`` names the file and the config path.
    """
    source = pathlib.Path(path)
    fmt = _format_of(source)
    if not source.is_file():
        raise UserError(f"config file {str(source)!r} does not exist")
    if fmt == "py":
        return _load_python(source)
    try:
        return loads(source.read_text(), fmt, steps=steps)
    except ConfigError as exc:
        where = f"{source}: {exc.path}" if exc.path else str(source)
        raise ConfigError(exc.message, path=where, hint=exc.hint) from None
    except ValueError as exc:  # JSON/TOML syntax errors carry line numbers in their text
        raise UserError(f"cannot parse: {exc}", where=str(source)) from None
    except RecursionError:
        raise UserError("cannot read: the data is nested too deeply", where=str(source)) from None
    except Exception as exc:  # yaml.YAMLError
        if type(exc).__module__.startswith("yaml"):
            raise UserError(f"cannot parse: {exc}", where=str(source)) from None
        raise


def _format_of(path: pathlib.Path) -> str:
    fmt = {".yml": "yaml", ".yaml": "yaml", ".toml": "toml", ".json": "json", ".py": "py"}.get(path.suffix)
    if fmt is None:
        raise ConfigValueError(f"cannot tell the format of {str(path)!r}", hint="use .yaml, .toml, .json or .py")
    return fmt


def _toml_safe(data: Any) -> Any:
    """TOML has no null and no NaN spelling we can rely on: tag them."""
    if data is None:
        return {"_none_": True}
    if isinstance(data, float) and not math.isfinite(data):
        return {"_float_": repr(data)}
    if isinstance(data, list):
        return [_toml_safe(v) for v in data]
    if isinstance(data, dict):
        return {k: _toml_safe(v) for k, v in data.items()}
    return data


def _from_toml(data: Any) -> Any:
    if isinstance(data, dict):
        if data.keys() == {"_none_"}:
            return None
        if data.keys() == {"_float_"} and isinstance(data["_float_"], str):
            return float(data["_float_"])  # a ValueError, when it is no number, names the file
        return {k: _from_toml(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_from_toml(v) for v in data]
    return data


def python_source(value: Any) -> str:
    """Python source that rebuilds ``value`` (as ``config = ...``)."""
    imports: set[str] = set()
    body = _py(value, imports, 0)
    lines = ["import nemoflow", *sorted(imports), "", f"config = {body}", ""]
    return "\n".join(lines)


def _py(value: Any, imports: set[str], depth: int) -> str:
    pad = "    " * (depth + 1)
    if isinstance(value, Buildable):
        qualname = _py_import(value.__fn_or_cls__, imports)
        kind = "Partial" if isinstance(value, Partial) else "Config"
        args = [f"{pad}{k}={_py(v, imports, depth + 1)}," for k, v in value.__arguments__.items()]
        inner = "\n".join(args)
        return (
            f"nemoflow.{kind}(\n{pad}{qualname},\n{inner}\n{'    ' * depth})"
            if args
            else f"nemoflow.{kind}({qualname})"
        )
    if isinstance(value, File):
        return f"nemoflow.File({value.path!r})"
    if isinstance(value, Script):
        fields = [
            f"{f}={_py(getattr(value, f), imports, depth)}" for f in Script._FIELDS if getattr(value, f) is not None
        ]
        return f"nemoflow.Script({', '.join(fields)})"
    if isinstance(value, enum.Enum):
        return f"{_py_import(type(value), imports)}[{value.name!r}]"
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({repr(value)!r})"
    if isinstance(value, SCALARS):
        return repr(to_data(value))
    if isinstance(value, pathlib.PurePath):
        imports.add("import pathlib")
        return f"pathlib.Path({value.as_posix()!r})"
    if isinstance(value, list):
        return "[" + ", ".join(_py(v, imports, depth) for v in value) + "]"
    if isinstance(value, tuple):
        return "(" + "".join(_py(v, imports, depth) + ", " for v in value) + ")"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_py(k, imports, depth)}: {_py(v, imports, depth)}" for k, v in value.items()) + "}"
    data = to_data(value)
    if isinstance(data, dict) and "_import_" in data:
        return _py_import(value, imports)
    imports.add("from nemoflow.configs.serialize import from_data")  # dill-only values and step references
    if _holds_pickle(data):  # a Python config file is a program: its pickles are as trusted as its code
        return f"from_data({data!r}, trusted=True)"
    return f"from_data({data!r})"


def _holds_pickle(data: Any) -> bool:
    if isinstance(data, dict):
        return "_dill_" in data or any(_holds_pickle(v) for v in data.values())
    return isinstance(data, list) and any(_holds_pickle(v) for v in data)


def _py_import(obj: Any, imports: set[str]) -> str:
    """The name ``obj`` has in the generated source, its import added to ``imports``."""
    module, _, qualname = import_path(obj).partition(":")
    imports.add(f"from {module} import {qualname.split('.')[0]}")
    return qualname


def _load_python(source: pathlib.Path) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_nemoflow_config_{source.stem}", source)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(source.parent))
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise UserError(f"syntax error: {exc.msg}", where=f"{source}:{exc.lineno}") from None
    finally:
        sys.path.remove(str(source.parent))
    if not hasattr(module, "config"):
        raise UserError("a Python config file must define `config`", where=str(source))
    return module.config
