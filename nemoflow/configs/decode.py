"""Config data back to configs (``from_data``), and what a config file may make happen.

Nothing in the data is called: a target named by import path (``_target_``, ``_import_``, ``_enum_``) is
imported and must be a class or function (an ``Enum`` class for ``_enum_``), and a pickled value
(``_dill_``) is unpickled only from nemoflow's own records, ``from_data(..., trusted=True)``.
"""

from __future__ import annotations

# dill is imported only for a trusted pickled value.
import base64
import dataclasses
import enum
import importlib
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

from nemoflow.configs.core import Buildable, Config, Partial
from nemoflow.configs.refs import File, StepLike, StepOutput, StepResult
from nemoflow.configs.script import Script
from nemoflow.errors import ConfigError, describe_value

TARGET, PARTIAL = "_target_", "_partial_"
SCALARS = (str, int, float, bool, type(None))


def import_object(path: str) -> Any:
    """The object named by ``module:qualname`` or, as NeMo Run and Hydra write it, ``module.qualname``: its
    module is imported, nothing called. A dotted path is split at its longest importable module, so
    ``pkg.mod.Outer.Inner`` finds class ``Outer.Inner`` in ``pkg.mod``.

    Raises:
        ConfigError: the module does not import (its error is in the message) or has no such name.
    """
    module_name, sep, qualname = path.partition(":")
    try:
        if sep:
            obj: Any = importlib.import_module(module_name)
        else:
            obj, qualname = _longest_module(path)
        for part in qualname.split(".") if qualname else ():
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError, TypeError) as exc:  # TypeError: a relative name (".x")
        raise ConfigError(f"cannot import {path!r}: {exc}") from None
    except Exception as exc:  # the module's own code failed while it was imported
        raise ConfigError(f"cannot import {path!r}: importing it raised {type(exc).__name__}: {exc}") from exc
    return obj


def _longest_module(path: str) -> tuple[Any, str]:
    """The module named by the longest importable prefix of dotted ``path``, and the rest of the path.

    Only a module that does not exist moves the split left; one that exists but fails to import raises.
    """
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        name = ".".join(parts[:i])
        try:
            return importlib.import_module(name), ".".join(parts[i:])
        except ModuleNotFoundError as exc:
            if exc.name is None or not (name == exc.name or name.startswith(exc.name + ".")):
                raise  # a module it imports is missing: the module itself exists
    raise ModuleNotFoundError(f"No module named {parts[0]!r}", name=parts[0])


def from_data(data: Any, *, steps: Mapping[str, StepLike] | None = None, path: str = "", trusted: bool = False) -> Any:
    """Rebuild a config tree from ``serialize.to_data``'s form; nothing in ``data`` is called.

    A target named by import path (``_target_``, ``_import_``, ``_enum_``) is imported, and must be a
    class or function (an ``Enum`` class for ``_enum_``); it is called only when the config is built.

    Args:
        data: the data form (JSON-like: dicts, lists, scalars).
        steps: the experiment's steps by name, for step references (``_output_``, ``_result_``).
        path: the config path of ``data``, which error messages start from.
        trusted: True only for nemoflow's own records (the store's manifests, the ledger, the job file a
            build writes): only then are ``_dill_`` (pickled) values unpickled. Leave it False for
            anything a user hands in, such as a config file.

    Raises:
        ConfigError: malformed data, a target that does not import or is not a class or function, or a
            pickled value in untrusted data; the error names the config path.
    """
    return _Reader(steps, trusted).value(data, path)


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def is_named_callable(obj: Any) -> bool:
    """A class, or a function-like object that has a name (what ``_import_`` and ``_target_`` may name)."""
    return isinstance(obj, type) or (callable(obj) and hasattr(obj, "__qualname__"))


@dataclasses.dataclass(frozen=True)
class _Reader:
    """One :func:`from_data` call: its step references and whether its data may hold pickles."""

    steps: Mapping[str, StepLike] | None
    trusted: bool

    def value(self, data: Any, path: str) -> Any:
        if isinstance(data, SCALARS):
            return data
        if isinstance(data, list):
            return [self.value(v, f"{path}[{i}]") for i, v in enumerate(data)]
        if not isinstance(data, dict):
            raise ConfigError(f"unexpected value {describe_value(data)} in config data", path=path)
        if TARGET in data:
            return self.buildable(data, path)
        tags = sorted(k for k in data if isinstance(k, str) and k in _SPECIAL)
        if not tags:
            return {k: self.value(v, _join(path, k)) for k, v in data.items()}
        if len(tags) > 1:
            raise ConfigError(f"a mapping with {' and '.join(map(repr, tags))} is ambiguous", path=path)
        tag = tags[0]
        kind, others, read = _SPECIAL[tag]
        if not isinstance(data[tag], kind) or set(data) != {tag, *others}:
            spelled = ", ".join(f"{k!r}" for k in others)
            raise ConfigError(
                f"a {tag!r} mapping takes a {kind.__name__}" + (f" and {spelled}" if others else "") + " only",
                path=path,
                hint=f"got keys {sorted(map(str, data))}, its value a {type(data[tag]).__name__}",
            )
        return read(self, data, path)

    def buildable(self, data: dict[Any, Any], path: str) -> Buildable[Any]:
        partial = data.get(PARTIAL, False)
        if not isinstance(partial, bool):
            raise ConfigError(f"{PARTIAL} must be true or false, got a {type(partial).__name__}", path=path)
        target = _import_target(data[TARGET], TARGET, path)
        try:
            cfg = (Partial if partial else Config)(target)
        except ConfigError as exc:
            raise (exc.at(path) if path else exc) from None
        if path:  # placed before its arguments are set, so their errors name the whole path
            object.__setattr__(cfg, "__nf_path__", path)
        root = path or cfg.__signature__.target_name
        for k, v in data.items():
            if k in (TARGET, PARTIAL):
                continue
            if not isinstance(k, str) or (k.startswith("__") and k.endswith("__")):
                raise ConfigError(f"{k!r} cannot be a parameter name", path=root)
            setattr(cfg, k, self.value(v, f"{root}.{k}"))
        return cfg

    def step(self, name: str, path: str) -> StepLike:
        if self.steps is None or name not in self.steps:
            from nemoflow.errors import did_you_mean

            raise ConfigError(
                f"refers to step {name!r}, which is not in this experiment",
                path=path,
                hint=did_you_mean(name, self.steps or {}),
            )
        return self.steps[name]

    def output(self, data: dict[str, Any], path: str) -> StepOutput:
        if not isinstance(data["path"], str):
            raise ConfigError(
                f"the path of a step output must be a string, got a {type(data['path']).__name__}", path=path
            )
        return StepOutput(self.step(data["_output_"], path), data["path"])

    def collection(self, data: dict[str, Any], path: str) -> Any:
        (tag,) = data
        values = [self.value(v, f"{path}[{i}]") for i, v in enumerate(data[tag])]
        if tag == "_tuple_":
            return tuple(values)
        try:
            return set(values) if tag == "_set_" else frozenset(values)
        except TypeError:
            raise ConfigError(f"a {tag!r} holds a value that cannot be in a set", path=path) from None

    def items(self, data: dict[str, Any], path: str) -> dict[Any, Any]:
        result = {}
        for i, item in enumerate(data["_items_"]):
            if not (isinstance(item, list) and len(item) == 2):
                raise ConfigError("each of '_items_' must be a [key, value] pair", path=f"{path}[{i}]")
            key, value = self.value(item[0], f"{path}[{i}][0]"), self.value(item[1], f"{path}[{i}][1]")
            try:
                result[key] = value
            except TypeError:
                raise ConfigError("a key of '_items_' cannot be a mapping key", path=f"{path}[{i}][0]") from None
        return result

    def member(self, data: dict[str, Any], path: str) -> enum.Enum:
        cls = _import_target(data["_enum_"], "_enum_", path)
        if not (isinstance(cls, type) and issubclass(cls, enum.Enum)):
            raise ConfigError(f"'_enum_' names {data['_enum_']!r}, which is not an Enum class", path=path)
        value = self.value(data["value"], path)
        try:
            return cls(value)
        except (ValueError, TypeError):
            raise ConfigError(f"{data['_enum_']} has no member of value {value!r}", path=path) from None

    def script(self, data: dict[str, Any], path: str) -> Script:
        fields = data["_script_"]
        unknown = sorted(str(k) for k in fields if k not in Script._FIELDS)
        if unknown:
            raise ConfigError(
                f"Script has no field {unknown[0]!r}", path=path, hint=f"fields: {', '.join(Script._FIELDS)}"
            )
        values = {k: self.value(v, _join(path, k)) for k, v in fields.items()}
        try:
            return Script(**values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"not a Script: {exc}", path=path) from None
        except ConfigError as exc:
            raise (exc.at(path) if path else exc) from None

    def pickled(self, data: dict[str, Any], path: str) -> Any:
        if not self.trusted:
            raise ConfigError(
                "a '_dill_' (pickled) value is refused in a config file: unpickling it could run any code",
                path=path,
                hint="write the value as plain data, or name a module-level class or function with "
                "'_target_' or '_import_'; pickles are read only from nemoflow's own store and ledger",
            )
        import dill

        return dill.loads(base64.b64decode(data["_dill_"]))


def _import_target(name: Any, tag: str, path: str) -> Any:
    """The class or function ``name`` names; its module is imported, nothing is called."""
    if not isinstance(name, str):
        raise ConfigError(f"{tag} must be an import path (module:name), got a {type(name).__name__}", path=path)
    try:
        obj = import_object(name)
    except ConfigError as exc:
        raise ConfigError(exc.message, path=path, hint=exc.hint) from None
    if not is_named_callable(obj):
        raise ConfigError(
            f"{tag} {name!r} is an object of type {type(obj).__name__}, not a class or function",
            path=path,
            hint="a config may name classes and functions only",
        )
    return obj


# tag: (the type of its value, the other keys of its mapping, how to read it)
_SPECIAL: dict[str, tuple[type, tuple[str, ...], Callable[[_Reader, dict[str, Any], str], Any]]] = {
    "_file_": (str, (), lambda r, d, p: File(d["_file_"])),
    "_output_": (str, ("path",), _Reader.output),
    "_result_": (str, (), lambda r, d, p: StepResult(r.step(d["_result_"], p))),
    "_tuple_": (list, (), _Reader.collection),
    "_set_": (list, (), _Reader.collection),
    "_frozenset_": (list, (), _Reader.collection),
    "_items_": (list, (), _Reader.items),
    "_import_": (str, (), lambda r, d, p: _import_target(d["_import_"], "_import_", p)),
    "_enum_": (str, ("value",), _Reader.member),
    "_path_": (str, (), lambda r, d, p: pathlib.Path(d["_path_"])),
    "_dill_": (str, (), _Reader.pickled),
    "_script_": (dict, (), _Reader.script),
}
TAGS = frozenset(_SPECIAL)  # the mappings from_data reads as something else than a dict
