"""The options of an entrypoint's command line: flags, reserved override words, help rows."""

from __future__ import annotations

# Imports inside functions keep the script CLI's parsing free of pydantic until a value is converted.
import dataclasses
from collections.abc import Mapping, Sequence
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
    tail_logs: bool = True  # a script entrypoint shows its step's output (--no-tail-logs: only in the log)
    factory: Any = None
    executor: str = "local"
    executor_fields: dict[str, Any] = dataclasses.field(default_factory=dict)
    plugins: list[Any] = dataclasses.field(default_factory=list)
    store: str | None = None
    name: str | None = None
    exports: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    yaml: str | None = None
    detach: bool = False
    repl: bool = False
    load: str | None = None
    executor_named: bool = False  # executor=NAME or --executor was given (else the default executor)
    default_executor: Any = None
    plugins_named: bool = False  # plugins=... was given (else the default plugins)


_FLAGS = {
    "--yes": "yes",
    "-y": "yes",
    "--no-confirm": "yes",
    "--detach": "detach",
    "--repl": "repl",
    "-r": "repl",
    "--dryrun": "dryrun",
    "--dry-run": "dryrun",
    "--help": "help",
    "-h": "help",
    "--debug": "debug",
    "--direct": "direct",
    "--tail-logs": "tail_logs",
}
_VALUED = {
    "--factory": "factory",
    "-f": "factory",
    "--executor": "executor",
    "--store": "store",
    "--name": "name",
    "-n": "name",
    "--yaml": "yaml",
    "--load": "load",
    "-l": "load",
}
# NeMo Run's switches that change nothing here (its rich tracebacks and logging); accepted so its command lines work.
_IGNORED = {
    "--verbose",
    "-v",
    "--no-direct",
    "--rich-exceptions",
    "--no-rich-exceptions",
    "--rich-traceback-short",
    "--rich-traceback-full",
    "--rich-show-locals",
    "--rich-hide-locals",
}
# cmd_defaults keys of NeMo Run's main(), as Options fields
_CMD_DEFAULTS = {"skip_confirmation": "yes", **{k: k for k in ("direct", "dryrun", "load", "yaml", "repl", "detach")}}
_CMD_DEFAULTS["tail_logs"] = "tail_logs"
_CMD_IGNORED = {"rich_exceptions", "rich_traceback", "rich_locals", "rich_theme", "verbose"}

OPTION_HELP = [
    ("-y, --yes", "run without asking for confirmation"),
    ("--dryrun", "print the resolved config and the plan; run nothing, write nothing"),
    ("--to-yaml F, --to-toml F, --to-json F", "write the config to F (F:SECTION: one section of it); run nothing"),
    ("--yaml F", "start from the config (or the values) in YAML file F"),
    ("-f, --factory NAME", "start from a registered factory of this function (NAME or NAME(arg=...))"),
    ("--executor NAME", "where the step runs (default: local); executor.FIELD=VALUE sets its fields"),
    ("--direct", "run inside this process instead of a subprocess"),
    ("--no-tail-logs", "keep the step's output in its log only (default: shown while it runs)"),
    ("--store DIR", "the target store (default: $NEMOFLOW_STORE, else targets/ in the project root)"),
    ("-n, --name NAME", "the experiment and step name (default: the function's)"),
    ("--detach", "submit and return without waiting (executors that can)"),
    ("--debug", "show tracebacks"),
    ("-h, --help", "show this help"),
]
OVERRIDE_HELP = (
    "name=value  a.b=value  xs[0].a=v  x+=1 x-=1 x*=2 x/=2  d|={'k':1}  x=None  xs=[1,2]  model=factory  "
    "model=factory(k=v)  models=[f(1),f(2)]  model=pkg.mod.fn  model=@model.yaml  @config.yaml  *.seed=1  "
    "executor=local  executor.FIELD=v  run.KEY=v  plugins=pkg.mod.Plugin  plugins[0].FIELD=v"
)


def parse_argv(argv: Sequence[str], defaults: Mapping[str, Any] | None = None) -> Options:
    """Split the command line into options and override tokens.

    ``defaults`` are NeMo Run's ``cmd_defaults`` (``{"skip_confirmation": True}``...): option
    values the command line may still turn on.

    Raises:
        UserError: an unknown option (with the closest ones), an option without its value, or
            an unknown ``cmd_defaults`` key.
    """
    opts = Options()
    for key, value in (defaults or {}).items():
        field = _CMD_DEFAULTS.get(key)
        if field is None and key not in _CMD_IGNORED:
            raise UserError(f"unknown cmd_defaults key {key!r}", hint=did_you_mean(key, _CMD_DEFAULTS))
        if field is not None:
            setattr(opts, field, value)
    args = list(argv)
    valued = {**_VALUED, **{flag: fmt for fmt, flag in EXPORTS.items()}}
    while args:
        arg = args.pop(0)
        if not arg.startswith("-") or arg == "-":
            opts.tokens.append(arg)
            continue
        flag, eq, value = arg.partition("=")
        if flag in _IGNORED or (flag == "--rich-theme" and eq):
            continue
        if flag == "--no-tail-logs" and not eq:
            opts.tail_logs = False
        elif flag in _FLAGS and not eq:
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
                opts.executor_named = opts.executor_named or flag == "--executor"
        else:
            raise UserError(f"unknown option {flag!r}", hint=did_you_mean(flag, [*_FLAGS, *valued]) or "see --help")
    return opts


def apply_reserved(opts: Options, override: Override) -> None:
    """``executor=NAME``, ``executor.FIELD=V``, ``run.OPTION=V``, ``plugins=pkg.mod.Plugin(...)``,
    ``plugins[0].FIELD=V`` (``plugins.FIELD=V`` for the one plugin), and an experiment's
    ``ctx.executor=NAME`` / ``ctx.OPTION=V``."""
    word, rest, value = override.path[0], override.path[1:], override.value
    if word == "ctx" and rest:
        word, rest = ("executor", rest[1:]) if rest[0] == "executor" else ("run", rest)
    if override.op != "=" or (word == "run" and len(rest) != 1) or (word == "executor" and len(rest) > 1):
        raise UserError(
            "expected executor=NAME, executor.FIELD=VALUE, run.OPTION=VALUE, plugins=... or plugins[0].FIELD=VALUE",
            where=override.token,
        )
    if word == "executor" and not rest:
        call = value if isinstance(value, FactoryCall) else FactoryCall(str(value))
        opts.executor, opts.executor_named = call.name, True
        opts.executor_fields.update(call.kwargs)
    elif word == "executor":
        opts.executor_fields[str(rest[0])] = value
    elif word == "run":
        _set_run_option(opts, str(rest[0]), value, override.token)
    elif not rest:
        if not opts.plugins_named:  # the command line's plugins replace the default ones
            opts.plugins, opts.plugins_named = [], True
        opts.plugins.extend(_plugins(value, override.token))
    else:
        _set_plugin_field(opts, rest, value, override.token)


def _set_plugin_field(opts: Options, rest: tuple[Any, ...], value: Any, token: str) -> None:
    index, fields = (rest[0], rest[1:]) if isinstance(rest[0], int) else (None, rest)
    if index is None and len(opts.plugins) != 1:
        raise UserError(f"{len(opts.plugins)} plugins: say which, plugins[0].FIELD=VALUE", where=token)
    if index is not None and not -len(opts.plugins) <= index < len(opts.plugins):
        raise UserError(f"there are {len(opts.plugins)} plugin(s): no plugins[{index}]", where=token)
    if len(fields) != 1 or not isinstance(fields[0], str):
        raise UserError("expected plugins[N].FIELD=VALUE", where=token)
    plugin = opts.plugins[index or 0]
    if not hasattr(plugin, "__arguments__") and not hasattr(plugin, fields[0]):
        raise UserError(f"plugin {type(plugin).__name__} has no field {fields[0]!r}", where=token)
    setattr(plugin, fields[0], value)


_RUN_OPTIONS = {
    "name": str,
    "store": str,
    "direct": bool,
    "yes": bool,
    "skip_confirmation": bool,
    "dryrun": bool,
    "tail_logs": bool,
    "detach": bool,
}


def _set_run_option(opts: Options, option: str, value: Any, token: str) -> None:
    kind = _RUN_OPTIONS.get(option)
    if kind is None:
        raise UserError(f"unknown run option {option!r}", where=token, hint=did_you_mean(option, _RUN_OPTIONS))
    if not isinstance(value, kind):
        raise UserError(f"run.{option} takes a {kind.__name__}, got {value!r}", where=token)
    setattr(opts, "yes" if option == "skip_confirmation" else option, value)


def _plugins(value: Any, token: str) -> list[Any]:
    from nemoflow.cli import factories
    from nemoflow.configs.serialize import import_object
    from nemoflow.pipeline.experiment import Plugin

    calls = [FactoryCall(v) if isinstance(v, str) else v for v in (value if isinstance(value, list) else [value])]
    plugins = []
    for call in calls:
        if not isinstance(call, FactoryCall):
            raise UserError(f"expected a plugin's import path, got {call!r}", where=token)
        registered = factories.find(call.name, Plugin)
        if registered is not None:  # plugins=wandb_logger: a factory registered for plugins
            made = factories.call(registered.fn, call.args, call.kwargs, name=call.name, where=token)
            plugins.extend(made if isinstance(made, list) else [made])
            continue
        if "." not in call.name:
            raise UserError(f"no plugin factory named {call.name!r}", where=token, hint="name a plugin by import path")
        target = import_object(call.name)
        plugin = target(*call.args, **call.kwargs) if isinstance(target, type) else target
        if not callable(getattr(plugin, "setup", None)) and not hasattr(plugin, "__arguments__"):
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
