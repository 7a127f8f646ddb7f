"""The options of an entrypoint's command line: flags, reserved override words, help rows."""

from __future__ import annotations

# Imports inside functions keep the script CLI's parsing free of pydantic until a value is converted.
import dataclasses
from collections.abc import Sequence
from typing import Any

from nemoflow.cli.tokens import FactoryCall, Override
from nemoflow.errors import UserError, did_you_mean

EXPORTS = {"yaml": "--to-yaml", "toml": "--to-toml", "json": "--to-json"}


@dataclasses.dataclass
class Options:
    """What the command line asks for besides the overrides."""

    tokens: list[str] = dataclasses.field(default_factory=list)
    yes: bool = False
    dryrun: bool = False
    help: bool = False
    debug: bool = False
    direct: bool = False
    tail_logs: bool = False
    factory: str | None = None
    executor: str = "local"
    executor_fields: dict[str, Any] = dataclasses.field(default_factory=dict)
    plugins: list[Any] = dataclasses.field(default_factory=list)
    store: str | None = None
    name: str | None = None
    exports: list[tuple[str, str]] = dataclasses.field(default_factory=list)


_FLAGS = {
    "--yes": "yes",
    "-y": "yes",
    "--dryrun": "dryrun",
    "--dry-run": "dryrun",
    "--help": "help",
    "-h": "help",
    "--debug": "debug",
    "--direct": "direct",
    "--tail-logs": "tail_logs",
}
_VALUED = {"--factory": "factory", "-f": "factory", "--executor": "executor", "--store": "store", "--name": "name"}
OPTION_HELP = [
    ("-y, --yes", "run without asking for confirmation"),
    ("--dryrun", "print the resolved config and the plan; run nothing, write nothing"),
    ("--to-yaml F, --to-toml F, --to-json F", "write the config to F; run nothing"),
    ("-f, --factory NAME", "start from a registered factory of this function (NAME or NAME(arg=...))"),
    ("--executor NAME", "where the step runs (default: local); executor.FIELD=VALUE sets its fields"),
    ("--direct", "run inside this process instead of a subprocess"),
    ("--tail-logs", "stream the step's output while it runs"),
    ("--store DIR", "the target store (default: $NEMOFLOW_STORE, else ./targets)"),
    ("--name NAME", "the experiment and step name (default: the function's)"),
    ("--debug", "show tracebacks"),
    ("-h, --help", "show this help"),
]
OVERRIDE_HELP = (
    "name=value  a.b=value  x+=1 x-=1 x*=2 x/=2  x=None  xs=[1,2]  model=factory  model=factory(k=v)  "
    "model=pkg.mod.fn  @config.yaml  *.seed=1  executor=local  executor.FIELD=v  run.KEY=v  plugins=pkg.mod.Plugin"
)


def parse_argv(argv: Sequence[str]) -> Options:
    """Split the command line into options and override tokens.

    Raises:
        UserError: an unknown option (with the closest ones) or an option without its value.
    """
    opts = Options()
    args = list(argv)
    valued = {**_VALUED, **{flag: fmt for fmt, flag in EXPORTS.items()}}
    while args:
        arg = args.pop(0)
        if not arg.startswith("-") or arg == "-":
            opts.tokens.append(arg)
            continue
        flag, eq, value = arg.partition("=")
        if flag in _FLAGS and not eq:
            setattr(opts, _FLAGS[flag], True)
        elif flag in valued:
            if not eq:
                if not args:
                    raise UserError(f"{flag} needs a value")
                value = args.pop(0)
            if flag in EXPORTS.values():
                opts.exports.append((valued[flag], value))
            else:
                setattr(opts, valued[flag], value)
        else:
            raise UserError(f"unknown option {flag!r}", hint=did_you_mean(flag, [*_FLAGS, *valued]) or "see --help")
    return opts


def apply_reserved(opts: Options, override: Override) -> None:
    """``executor=NAME``, ``executor.FIELD=V``, ``run.OPTION=V``, ``plugins=pkg.mod.Plugin(...)``."""
    word, rest, value = override.path[0], override.path[1:], override.value
    if override.op != "=" or len(rest) > 1 or (word == "plugins" and rest) or (word == "run" and not rest):
        raise UserError(
            "expected executor=NAME, executor.FIELD=VALUE, run.OPTION=VALUE or plugins=...", where=override.token
        )
    if word == "executor" and not rest:
        call = value if isinstance(value, FactoryCall) else FactoryCall(str(value))
        opts.executor = call.name
        opts.executor_fields.update(call.kwargs)
    elif word == "executor":
        opts.executor_fields[rest[0]] = value
    elif word == "run":
        _set_run_option(opts, rest[0], value, override.token)
    else:
        opts.plugins.extend(_plugins(value, override.token))


_RUN_OPTIONS = {"name": str, "store": str, "direct": bool, "yes": bool, "dryrun": bool, "tail_logs": bool}


def _set_run_option(opts: Options, option: str, value: Any, token: str) -> None:
    kind = _RUN_OPTIONS.get(option)
    if kind is None:
        raise UserError(f"unknown run option {option!r}", where=token, hint=did_you_mean(option, _RUN_OPTIONS))
    if not isinstance(value, kind):
        raise UserError(f"run.{option} takes a {kind.__name__}, got {value!r}", where=token)
    setattr(opts, option, value)


def _plugins(value: Any, token: str) -> list[Any]:
    from nemoflow.configs.serialize import import_object

    calls = [FactoryCall(v) if isinstance(v, str) else v for v in (value if isinstance(value, list) else [value])]
    plugins = []
    for call in calls:
        if not isinstance(call, FactoryCall):
            raise UserError(f"expected a plugin's import path, got {call!r}", where=token)
        target = import_object(call.name)
        plugin = target(*call.args, **call.kwargs) if isinstance(target, type) else target
        if not callable(getattr(plugin, "setup", None)):
            raise UserError(f"{call.name} is not a plugin (it has no setup(task, executor))", where=token)
        plugins.append(plugin)
    return plugins


def parameter_rows(cfg: Any, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted name, type, default or value) of every parameter of a config tree, nested ones under their parent."""
    from nemoflow.configs.core import Buildable
    from nemoflow.configs.validation import type_name

    rows = []
    for param in cfg.__signature__.params.values():
        dotted = f"{prefix}.{param.name}" if prefix else param.name
        value = cfg.__arguments__.get(param.name, param.default)
        if isinstance(value, Buildable):
            rows.append(
                (dotted, type_name(param.annotation), f"{type(value).__name__}[{value.__signature__.target_name}]")
            )
            rows.extend(parameter_rows(value, dotted))
        else:
            unset = param.required and param.name not in cfg.__arguments__
            rows.append((dotted, type_name(param.annotation), "required" if unset else repr(value)))
    return rows


def unset_defaults(cfg: Any) -> list[tuple[str, str]]:
    """(dotted name, default) of the parameters left at their defaults (the config shows only set ones)."""
    from nemoflow.configs.core import Buildable
    from nemoflow.configs.treeops import walk

    found = []
    for path, node in walk(cfg):
        if isinstance(node, Buildable):
            for param in node.__signature__.params.values():
                if param.name not in node.__arguments__ and not param.required:
                    found.append((f"{path}.{param.name}" if path else param.name, repr(param.default)))
    return found
