"""``nemoflow.cli.RunContext``: what an experiment entrypoint gets as ``ctx`` (NeMo Run's RunContext).

@run.cli.entrypoint(type="experiment")
def sweep(ctx: run.cli.RunContext, lr: float = 0.1):
    with run.Experiment("sweep") as exp:
        exp.add(run.Partial(train, lr=lr), executor=ctx.executor)
        ctx.launch(exp)
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from nemoflow.errors import UserError


@dataclasses.dataclass(kw_only=True)
class RunContext:
    """The command line's run options: how to launch, where (``executor``), with which ``plugins``."""

    name: str
    direct: bool = False
    dryrun: bool = False
    factory: Any = None
    load: str | None = None
    repl: bool = False
    detach: bool = False
    skip_confirmation: bool = False
    tail_logs: bool = False
    yaml: str | None = None
    to_yaml: str | None = None
    to_toml: str | None = None
    to_json: str | None = None
    executor: Any = None
    plugins: list[Any] = dataclasses.field(default_factory=list)
    store: str | None = None
    script: Path | None = dataclasses.field(default=None, repr=False)

    def launch(self, experiment: Any, sequential: bool = False) -> Any:
        """Run ``experiment`` as the command line asked: plan only with ``--dryrun``, else build it.

        Steps without an executor of their own run on ``ctx.executor``'s default (a local
        subprocess); ``direct`` runs them in this process.

        Returns:
            The BuildResult, or the Plan with ``--dryrun``.
        """
        from nemoflow.cli import render
        from nemoflow.engine.build import default_store
        from nemoflow.pipeline.plan import make_plan
        from nemoflow.store.targets import Store

        if self.script is not None and getattr(experiment, "pipeline_file", None) is None:
            experiment.pipeline_file = self.script  # step subprocesses import the script by its file name
            experiment.module_name = self.script.stem
        store = Store(self.store) if self.store else default_store()
        if self.dryrun:
            plan = make_plan(experiment, store, sequential=sequential)
            render.plan(plan, as_json=False)
            return plan
        options: dict[str, Any] = {"sequential": sequential, "direct": self.direct, "tail_logs": True}
        if self.detach:
            options["detach"] = True
        started = time.perf_counter()
        result = experiment.run(store=store, raise_on_failure=False, **options)
        render.build_result(result, as_json=False, seconds=time.perf_counter() - started)
        if not result.ok:
            from nemoflow.errors import BuildFailed

            raise BuildFailed(result)
        return result

    def parse_fn(self, fn: Any, args: list[str], **defaults: Any) -> Any:
        """``fn``'s Partial with the override tokens ``args`` applied (``defaults`` set first)."""
        from nemoflow.cli.parse_api import parse_cli_args
        from nemoflow.configs.core import Partial

        return parse_cli_args(Partial(fn, **defaults), args)

    def parse_executor(self, name: str, *args: str) -> Any:
        """The Config made by the executor factory ``name``, with ``FIELD=VALUE`` ``args`` applied.

        Raises:
            NotFound: (also a ValueError) no executor factory has that name.
        """
        from nemoflow.executors import Executor

        return _from_factory(name, Executor, args, "Executor")

    def parse_plugin(self, name: str, *args: str) -> Any:
        """The Config (or list of them) made by the plugin factory ``name``, with ``args`` applied.

        Raises:
            NotFound: (also a ValueError) no plugin factory has that name.
        """
        from nemoflow.pipeline.experiment import Plugin

        return _from_factory(name, Plugin, args, "Plugin")

    def parse_args(self, args: list[str]) -> list[str]:
        """Set ``executor`` and ``plugins`` from ``executor=NAME executor.F=V plugins=NAME plugins[0].F=V``
        tokens (built), and this context's own fields from ``FIELD=V``; returns the other tokens.

        Raises:
            NotFound: (also a ValueError) an unknown executor or plugin factory.
        """
        from nemoflow.configs.core import build

        executor, executor_args, rest = _prefixed(args, "executor")
        plugins, plugin_args, rest = _prefixed(rest, "plugins")
        if executor:
            self.executor = build(self.parse_executor(executor, *executor_args))
        if plugins:
            from nemoflow.cli.parse_api import parse_cli_args

            made = self.parse_plugin(plugins, *[a for a in plugin_args if not a.startswith("[")])
            made = made if isinstance(made, list) else [made]
            for token in (a for a in plugin_args if a.startswith("[")):  # [0].some_arg=50
                index, _, assignment = token[1:].partition("].")
                parse_cli_args(made[int(index)], [assignment])
            self.plugins = [build(p) for p in made]
        own = {f.name for f in dataclasses.fields(self)}
        others = []
        for token in rest:
            field, eq, value = token.partition("=")
            if eq and field in own:
                from nemoflow.cli.tokens import parse_value

                setattr(self, field, parse_value(value)[0])
            else:
                others.append(token)
        return others

    def to_config(self) -> Any:
        """This context as a ``Config`` of RunContext."""
        from nemoflow.configs.core import Config

        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        return Config(type(self), **{k: v for k, v in fields.items() if v != _default(type(self), k)})

    @classmethod
    def get_help(cls) -> str:
        """The help text of this class (its docstring)."""
        return cls.__doc__ or "No help available."


class NotFound(UserError, ValueError):
    """``executor=NAME`` or ``plugins=NAME`` names no registered factory."""


def _from_factory(name: str, kind: Any, args: tuple[str, ...], what: str) -> Any:
    from nemoflow.cli import factories
    from nemoflow.cli.parse_api import parse_cli_args

    found = factories.find(name, kind)
    if found is None:
        raise NotFound(f"{what} {name} not found", hint="register a factory for it with @run.cli.factory")
    made = factories.call(found.fn, (), {}, name=name, where=f"{what.lower()}={name}")
    if args and not isinstance(made, list):
        parse_cli_args(made, list(args))
    return made


def _prefixed(args: list[str], prefix: str) -> tuple[str | None, list[str], list[str]]:
    """NeMo Run's split: ``prefix=NAME`` -> NAME, ``prefix.F=V`` / ``prefix[0].F=V`` -> their rest, and the others."""
    name, own, others = None, [], []
    for arg in args:
        if arg.startswith(f"{prefix}="):
            name = arg.split("=", 1)[1]
        elif arg.startswith(f"{prefix}."):
            own.append(arg[len(prefix) + 1 :])
        elif arg.startswith(f"{prefix}["):
            own.append(arg[len(prefix) :])
        else:
            others.append(arg)
    return name, own, others


def _default(cls: type, name: str) -> Any:
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else object()
