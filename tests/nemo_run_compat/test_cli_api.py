"""NeMo Run's ``run.cli`` API in process, as its users write it (``import nemoflow as run``): decorators, factory
registration and lookup, RunContext, ``parse_cli_args`` and the override grammar (NeMo Run's test/cli/*)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

import nemoflow as run


@dataclass
class Model:
    hidden: int = 100
    activation: str = "relu"


@dataclass
class Optimizer:
    lr: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])


@run.cli.factory
def small_model(hidden: int = 10) -> run.Config[Model]:
    return run.Config(Model, hidden=hidden)


def train(model: Model, optimizer: Optimizer | None = None, epochs: int = 1, tags: dict[str, int] | None = None):
    return model, optimizer, epochs


def sweep(models: list[Model], epochs: int = 1):
    return models


def test_run_cli_is_there_after_a_plain_import() -> None:
    for name in ("entrypoint", "factory", "main", "RunContext", "resolve_factory", "list_entrypoints"):
        assert hasattr(run.cli, name), name
    for name in ("list_factories", "create_cli", "parse_cli_args", "parse_partial", "parse_config"):
        assert hasattr(run.cli, name), name


def test_entrypoint_keeps_the_function_callable_and_records_it() -> None:
    @run.cli.entrypoint(namespace="compat_api", help="does x", skip_confirmation=True)
    def job(a: int = 1) -> int:
        return a * 2

    assert job(a=4) == 8
    assert job.cli_entrypoint.name == "job" and job.cli_entrypoint.skip_confirmation
    assert run.cli.list_entrypoints()["compat_api"]["job"].fn is job
    assert "job" in run.cli.list_entrypoints(namespace="compat_api")["compat_api"]


def test_a_task_entrypoint_may_not_take_executor_and_types_are_checked() -> None:
    with pytest.raises(ValueError, match="reserved"):

        @run.cli.entrypoint
        def job(executor: str) -> None: ...

    with pytest.raises(ValueError, match="entrypoint type"):
        run.cli.entrypoint(type="pipeline")(lambda: None)


def test_factory_target_and_default_and_namespace() -> None:
    @run.cli.factory(target=train)
    def recipe() -> run.Partial[train]:
        return run.Partial(train, model=run.Config(Model, hidden=7), epochs=3)

    assert run.cli.resolve_factory(train, "recipe")().epochs == 3

    def defaults() -> run.Partial[train]:
        return run.Partial(train, model=small_model(), epochs=40)

    @run.cli.entrypoint(default_factory=defaults, namespace="compat_api")
    def trainer(model: Model, epochs: int = 1):
        return model

    made = run.cli.resolve_factory(trainer, "default")()
    assert made.epochs == 40 and made.model.hidden == 10

    @dataclass
    class Custom:
        value: str

    @run.cli.factory(target=Custom, namespace="custom_namespace")
    def custom_factory() -> run.Config[Custom]:
        return run.Config(Custom, value="custom")

    assert run.cli.resolve_factory("custom_namespace", "custom_factory")().value == "custom"
    assert custom_factory in run.cli.list_factories("custom_namespace")
    assert small_model in run.cli.list_factories(Model)


def test_a_factory_says_it_returns_a_config() -> None:
    with pytest.raises(TypeError, match="Missing return type annotation"):

        @run.cli.factory
        def bare():
            return run.Config(Model)

    with pytest.raises(ValueError, match="not a subclass of Config or Partial"):

        @run.cli.factory
        def plain() -> Model:
            return Model()

    @run.cli.factory
    @run.autoconvert
    def converted(hidden: int = 3) -> Model:
        return Model(hidden=hidden)

    assert run.cli.parse_cli_args(train, ["model=converted(hidden=4)"]).model == run.Config(Model, hidden=4)


def test_factory_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="target_arg"):
        run.cli.factory(target_arg="model")
    with pytest.raises(ValueError, match="No factory found"):
        run.cli.resolve_factory(Model, "no_such_factory")


def test_factory_for_one_argument_of_a_target() -> None:
    @run.cli.factory(target=train, target_arg="optimizer")
    def fast() -> run.Config[Optimizer]:
        return run.Config(Optimizer, lr=5.0)

    assert run.cli.parse_cli_args(train, ["optimizer=fast"]).optimizer.lr == 5.0
    with pytest.raises(run.UserError, match="no factory named 'fast'"):
        run.cli.parse_cli_args(sweep, ["models=[fast()]"])


def test_main_checks_default_plugins_like_nemo_run() -> None:
    with pytest.raises(ValueError, match="must be a Config"):
        run.cli.main(train, default_plugins=run.Plugin(), argv=[])
    with pytest.raises(ValueError, match="list of Config"):
        run.cli.main(train, default_plugins=[run.Plugin()], argv=[])


def test_run_context_fields_and_help() -> None:
    ctx = run.cli.RunContext(name="exp")
    assert (ctx.name, ctx.direct, ctx.dryrun, ctx.detach, ctx.skip_confirmation, ctx.tail_logs) == (
        "exp",
        False,
        False,
        False,
        False,
        False,
    )
    assert ctx.executor is None and ctx.plugins == [] and ctx.factory is None and ctx.yaml is None
    assert "run options" in run.cli.RunContext.get_help()
    with pytest.raises(TypeError):
        run.cli.RunContext("positional")  # keyword-only, as NeMo Run's dataclass(kw_only=True)


# ---- the grammar (NeMo Run's test_cli_parser.py TestOperations and the list) -------------------------


def test_operations_like_nemo_run() -> None:
    def func(a: int, b: list[int], c: dict[str, int]):
        pass

    result = run.cli.parse_cli_args(func, ["a=5", "a+=3", "b=[1, 2]", "b+=[3, 4]", "c={'x': 1}", "c|={'y': 2}"])
    assert (result.a, result.b, result.c) == (8, [1, 2, 3, 4], {"x": 1, "y": 2})
    assert isinstance(result, run.Partial)
    assert isinstance(run.cli.parse_cli_args(func, ["a=1"], output_type=run.Config), run.Config)
    assert run.cli.parse_partial(func, "a=10", "a-=4").a == 6


def test_null_is_none_where_none_is_allowed() -> None:
    cfg = run.cli.parse_cli_args(train, ["optimizer=null", "tags=None", "model.activation=null"])
    assert cfg.optimizer is None and cfg.tags is None
    assert cfg.model.activation == "null"  # a str parameter keeps the word


def test_indexed_paths_and_lists_of_factory_calls() -> None:
    cfg = run.cli.parse_cli_args(sweep, ["models=[small_model(1000), small_model(2000)]", "models[0].hidden=5000"])
    assert [m.hidden for m in cfg.models] == [5000, 2000]
    assert all(isinstance(m, run.Config) for m in cfg.models)
    cfg = run.cli.parse_cli_args(cfg, ["models+=[small_model(hidden=7)]", "models[-1].activation=tanh"])
    assert [(m.hidden, m.activation) for m in cfg.models] == [(5000, "relu"), (2000, "relu"), (7, "tanh")]
    built = run.build(cfg)()
    assert built == [Model(5000), Model(2000), Model(7, "tanh")]
    with pytest.raises(IndexError):
        run.cli.parse_cli_args(sweep, ["models=[small_model(1)]", "models[3].hidden=1"])
    with pytest.raises(run.UserError, match="not a list"):
        run.cli.parse_cli_args(train, ["epochs[0]=1"])


def test_a_list_default_is_copied_before_an_index_changes_it() -> None:
    default = [run.Config(Model, hidden=1)]

    def fn(models: list[Model] = default):  # a list default, as NeMo Run's examples write
        return models

    cfg = run.cli.parse_cli_args(fn, ["models[0].hidden=9"])
    assert cfg.models[0].hidden == 9 and default[0].hidden == 1


def test_a_value_from_a_yaml_file(tmp_path: Path) -> None:
    (tmp_path / "model.yaml").write_text("_factory_: small_model\nhidden: 33\n")
    (tmp_path / "opt.yaml").write_text("_target_: test_cli_api.Optimizer\nlr: 0.5\n")
    (tmp_path / "evil.yaml").write_text("!!python/object/apply:os.system ['echo hacked']\n")
    cfg = run.cli.parse_cli_args(
        train, [f"model=@{tmp_path / 'model.yaml'}", f"optimizer=@{tmp_path / 'opt.yaml'}", "epochs=2"]
    )
    assert (cfg.model.hidden, cfg.optimizer.lr, cfg.epochs) == (33, 0.5, 2)
    with pytest.raises(run.UserError):
        run.cli.parse_cli_args(train, [f"model=@{tmp_path / 'evil.yaml'}"])  # safe YAML: never runs a tag


def job(a: int = 1) -> None:
    print(f"job ran with a={a}")


def test_main_makes_a_plain_function_an_entrypoint_with_its_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NEMOFLOW_STORE", str(tmp_path / "targets"))
    with pytest.raises(SystemExit) as done:
        run.cli.main(job, argv=["a=3", "--direct"], namespace="compat_main", skip_confirmation=True)
    assert done.value.code == 0
    assert "job ran with a=3" in capfd.readouterr().out  # the task's own print, on the terminal
    assert run.cli.list_entrypoints()["compat_main"]["job"].skip_confirmation


class SomePlugin(run.Plugin):
    def __init__(self, some_arg: int = 10):
        self.some_arg = some_arg

    def setup(self, task, executor):
        pass


@run.cli.factory
@run.autoconvert
def compat_local_executor() -> run.LocalExecutor:
    return run.LocalExecutor()


@run.cli.factory
def dummy_plugin() -> run.Config[SomePlugin]:
    return run.Config(SomePlugin, some_arg=20)


@run.cli.factory(target=SomePlugin, name="plugin_list")
def plugin_list() -> list[run.Config[SomePlugin]]:
    return [run.Config(SomePlugin, some_arg=1), run.Config(SomePlugin, some_arg=2)]


def test_run_context_parses_executors_and_plugins_like_nemo_run() -> None:
    ctx = run.cli.RunContext(name="test_run")
    rest = ctx.parse_args(["executor=compat_local_executor", "executor.env_vars={'A': '1'}", "plugins=dummy_plugin"])
    assert rest == []
    assert isinstance(ctx.executor, run.LocalExecutor) and ctx.executor.env_vars == {"A": "1"}
    assert ctx.plugins[0].some_arg == 20
    ctx.parse_args(["plugins=plugin_list", "plugins[0].some_arg=50"])
    assert [p.some_arg for p in ctx.plugins] == [50, 2]
    executor = ctx.parse_executor("compat_local_executor", "env_vars={'B': '2'}")
    assert isinstance(executor, run.Config) and executor.__fn_or_cls__ is run.LocalExecutor
    assert ctx.parse_plugin("dummy_plugin", "some_arg=30").some_arg == 30
    with pytest.raises(ValueError, match="Executor invalid_executor not found"):
        ctx.parse_args(["executor=invalid_executor"])
    with pytest.raises(ValueError, match="Plugin invalid_plugin not found"):
        ctx.parse_args(["plugins=invalid_plugin"])
    partial = ctx.parse_fn(job, ["a=10"])
    assert isinstance(partial, run.Partial) and partial.a == 10
    assert ctx.to_config().name == "test_run"
