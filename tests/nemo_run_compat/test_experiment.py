"""NeMo Run's Experiment surface through ``import nemoflow as run`` (nemo_run/run/experiment.py, test/test_experiment.py)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

import nemoflow as run
from nemoflow.errors import UserError

import steps_for_tests as steps


@pytest.fixture(autouse=True)
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """NeMo Run keeps runs under one home; here, one store per test ($NEMOFLOW_STORE)."""
    monkeypatch.setenv("NEMOFLOW_STORE", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "store"


def test_the_id_is_given_at_construction_as_title_and_time_ns_and_the_first_run_is_recorded_under_it() -> None:
    before = time.time_ns()
    exp = run.Experiment("my_exp", executor=run.LocalExecutor(), log_level="WARN")
    title, _, stamp = exp.id.rpartition("_")
    assert title == "my_exp" and before <= int(stamp) <= time.time_ns()
    assert run.Experiment("given", id="given_1").id == "given_1"
    with exp:
        exp.add(run.Partial(steps.add, a=1, b=2), name="one")
        result = exp.run()
    assert result.experiment_id == exp.id
    assert run.Experiment.catalog("my_exp") == [exp.id]
    assert run.Experiment.from_id(exp.id).id == exp.id
    assert run.Experiment.from_title("my_exp").id == exp.id


def test_catalog_lists_ids_oldest_first_as_nemo_run_does() -> None:
    ids = []
    for b in (1, 2, 3):
        exp = run.Experiment("cat")
        exp.add(run.Partial(steps.add, a=1, b=b), name="one")
        exp.run()
        ids.append(exp.id)
    assert run.Experiment.catalog("cat") == ids
    assert run.Experiment.catalog("cat")[-2] == ids[1]
    assert run.Experiment.catalog("nothing") == []
    other = run.Experiment("another")
    other.add(run.Partial(steps.add, a=1), name="one")
    other.run()
    assert run.Experiment.catalog() == ["cat", "another"], "no title: the experiments' names, as NeMo Run's folders"
    assert [row["id"] for row in run.Experiment.runs("cat")] == ids[::-1], "the metadata rows, newest first"


def test_an_unknown_id_or_title_is_an_assertion_error_as_in_nemo_run() -> None:
    exp = run.Experiment("known")
    exp.add(run.Partial(steps.add, a=1), name="one")
    exp.run()
    with pytest.raises(AssertionError, match="no experiment 'known_1'"):
        run.Experiment.from_id("known_1")
    with pytest.raises(AssertionError, match="did you mean 'known'"):
        run.Experiment.from_title("knwon")


def test_a_bad_log_level_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="log_level"):
        run.Experiment("x", log_level="LOUD")


def test_the_experiment_executor_is_the_default_of_its_steps() -> None:
    executor = run.LocalExecutor(env_vars={"NF_PLUGIN_VAR": "from-exp"})
    with run.Experiment("defaults", executor=executor) as exp:
        exp.add(run.Partial(steps.scaled, scale=2.0), name="uses_default")
        exp.add(run.Partial(steps.scaled, scale=3.0), executor=run.LocalExecutor(), name="own")
        exp.run()
    assert exp.results() == {
        "uses_default": {"scale": 2.0, "env": "from-exp"},
        "own": {"scale": 3.0, "env": None},
    }


def test_add_returns_the_job_id_and_dependencies_take_it_or_the_name() -> None:
    with run.Experiment("deps") as exp:
        first = exp.add(run.Partial(steps.add, a=1), name="first")
        assert first == "first" and isinstance(first, str), "NeMo Run's add returns the job id"
        exp.add(run.Partial(steps.add, a=2), name="second", dependencies=[first])
        exp.add(run.Partial(steps.add, a=3), name="third", dependencies=["second"])
        with pytest.raises(AssertionError, match="Dependency nope not found"):
            exp.add(run.Partial(steps.add, a=4), name="fourth", dependencies=["nope"])
    assert exp.steps["third"].dependencies == ["second"]
    assert [(job.id, job.dependencies) for job in exp.jobs] == [
        ("first", []),
        ("second", ["first"]),
        ("third", ["second"]),
    ]
    exp.jobs[0].dependencies.append("third")  # NeMo Run's jobs are the experiment's own
    with pytest.raises(UserError, match="cycle"):
        exp.run()


def test_a_plain_function_and_its_arguments_become_a_partial() -> None:
    with run.Experiment("brief") as exp:
        base = exp.add(steps.add, a=2, b=3, name="base")
        exp.add(steps.add, a=base.result, b=10, name="more", dependencies=[base])
        exp.run()
    assert isinstance(exp.tasks[0], run.Partial) and exp.tasks[0].a == 2 and exp.tasks[0].b == 3
    assert exp.results() == {"base": 5, "more": 15}
    with pytest.raises(TypeError, match="unexpected keyword"):
        exp.add(run.Partial(steps.add, a=1), b=2, name="both")
    with pytest.raises(TypeError, match=r"must be a nemoflow\.Partial"):
        exp.add(42, name="number")


def test_tasks_are_the_added_configs_in_order_and_changing_one_changes_its_step() -> None:
    with run.Experiment("tasks") as exp:
        exp.add(run.Partial(steps.add, a=1, b=1), name="x")
        exp.add(run.Partial(steps.add, a=2, b=2), name="y")
        assert [task.a for task in exp.tasks] == [1, 2]
        exp.tasks[0].a = 100
        exp.run()
    assert exp.results() == {"x": 101, "y": 4}


def test_two_steps_of_one_name_are_an_error_unless_renaming_is_asked_for() -> None:
    exp = run.Experiment("dups")
    exp.add(run.Partial(steps.add, a=1), name="train")
    with pytest.raises(UserError, match=r"two steps are named 'train'.*rename_duplicates"):
        exp.add(run.Partial(steps.add, a=2), name="train")
    ported = run.Experiment("dups", rename_duplicates=True)
    names = [str(ported.add(run.Partial(steps.add, a=i), name="train")) for i in range(3)]
    assert names == ["train", "train_1", "train_2"], "NeMo Run's <name>_<number of jobs>"


def test_default_names_stay_unique_and_nemo_run_ids_find_the_steps() -> None:
    with run.Experiment("named") as exp:
        exp.add(run.Partial(steps.talk, lines=1, pause=0), tail_logs=True)
        exp.add(run.Partial(steps.talk, lines=2, pause=0))
        exp.run()
    assert list(exp.steps) == ["talk", "talk-2"]
    # NeMo Run's ids of these jobs: steps_for_tests.talk and steps_for_tests.talk_1
    assert exp.step_names("steps_for_tests.talk") == ["talk"]
    assert exp.step_names("steps_for_tests.talk_1") == ["talk-2"]
    assert exp.logs("talk-2") == "line 0\nline 1\n"


def test_job_group_runs_its_tasks_on_one_executor_under_one_job_id(capfd: pytest.CaptureFixture[str]) -> None:
    executor = run.LocalExecutor(env_vars={"NF_PLUGIN_VAR": "group"})
    with run.Experiment("groups") as exp:
        group = exp.add(
            [run.Partial(steps.scaled, scale=1.0), run.Script(inline="echo from-the-script")],
            executor=executor,
            name="pair",
        )
        exp.add(run.Partial(steps.add, a=1), name="after", dependencies=[group])
        with pytest.raises(AssertionError, match="name is required for task group"):
            exp.add([run.Partial(steps.add, a=1), run.Partial(steps.add, a=2)])
        exp.run()
    assert group == "pair"
    assert exp.steps["after"].dependencies == ["pair-0", "pair-1"]
    assert [(job.id, job.dependencies) for job in exp.jobs] == [("pair", []), ("after", ["pair"])]
    assert len(exp.jobs[0].tasks) == 2 and exp.jobs[0].executor is executor
    assert exp.steps["pair-0"].executor is exp.steps["pair-1"].executor is executor
    assert len(exp.tasks) == 2 and len(exp.tasks[0]) == 2, "a group is one entry of exp.tasks: its tasks"
    assert exp.results()["pair-0"] == {"scale": 1.0, "env": "group"}
    status = exp.status(return_dict=True)
    assert list(status) == ["pair", "after"]
    assert status["pair"]["status"] == "SUCCEEDED" and status["pair"]["steps"] == ["pair-0", "pair-1"]
    capfd.readouterr()
    assert exp.logs(job_id="pair") is None
    assert "from-the-script" in capfd.readouterr().out


class Tag(run.Plugin):
    """Sets an argument and an environment variable, and remembers what it saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, float]] = []

    def setup(self, task: run.Partial, executor: run.LocalExecutor) -> None:
        self.seen.append((self.experiment_id, task.scale))
        task.scale = 10.0
        executor.env_vars["NF_PLUGIN_VAR"] = self.experiment_id


def test_plugins_are_assigned_the_experiment_id_and_set_up_at_add_on_copies() -> None:
    plugin = Tag()
    original = run.Partial(steps.scaled, scale=1.0)
    executor = run.LocalExecutor()
    with run.Experiment("plugged") as exp:
        exp.add(original, executor=executor, name="tagged", plugins=[plugin])
        assert plugin.experiment_id == exp.id and plugin.seen == [(exp.id, 1.0)], "set up at add, not at run"
        assert exp.tasks[0].scale == 10.0
        assert original.scale == 1.0 and "NF_PLUGIN_VAR" not in executor.env_vars, "the user's objects are copied"
        exp.run()
    assert plugin.seen == [(exp.id, 1.0)], "not set up again when the run is planned"
    assert exp.results() == {"tagged": {"scale": 10.0, "env": exp.id}}


def test_status_prints_nemo_run_s_block_and_return_dict_gives_the_values(capfd: pytest.CaptureFixture[str]) -> None:
    with run.Experiment("stat") as exp:
        exp.add(run.Partial(steps.add, a=1), name="ok")
        exp.run()
    capfd.readouterr()
    rows = exp.status()
    printed = capfd.readouterr().err
    assert f"Experiment Status for {exp.id}" in printed and "Task 0: ok" in printed and "- Status: SUCCEEDED" in printed
    assert [row.state for row in rows] == ["done"]
    values = exp.status(return_dict=True)["ok"]
    assert (values["name"], values["status"], values["executor"]) == ("ok", "SUCCEEDED", "LocalExecutor")
    assert Path(values["local_dir"]).is_dir()


def test_logs_by_job_id_print_the_lines_matching_regex(capfd: pytest.CaptureFixture[str]) -> None:
    with run.Experiment("logged") as exp:
        exp.add(run.Partial(steps.talk, lines=3, pause=0), name="talker")
        exp.run()
    capfd.readouterr()
    assert exp.logs(job_id="talker", regex=r"line [02]") is None
    assert capfd.readouterr().out == "line 0\nline 2\n"
    assert exp.logs("talker", regex="1$") == "line 1\n"
    with pytest.raises(UserError, match=r"no step 'talkr'.*did you mean 'talker'"):
        exp.logs(job_id="talkr")


def test_dryrun_prints_each_task_and_runs_and_records_nothing(store: Path, capfd: pytest.CaptureFixture[str]) -> None:
    with run.Experiment("dry") as exp:
        exp.add(run.Partial(steps.add, a=1), name="one")
        exp.add(run.Script(inline="echo hi"), name="two")
        plan = exp.dryrun()
    printed = capfd.readouterr().out
    assert f"Experiment {exp.id} dryrun..." in printed
    assert re.search(r"Task one \(runs: new step; key [0-9a-f]{12}\)", printed) and "Task two" in printed
    assert [step.name for step in plan] == ["one", "two"]
    assert run.Experiment.catalog("dry") == [] and not (store / "one").exists()


def test_metadata_before_and_after_a_run(tmp_path: Path) -> None:
    exp = run.Experiment("meta", description="a study", tags=["a", "b"])
    exp.add(run.Partial(steps.add, a=1), name="one")
    before = exp.metadata()
    assert {k: before[k] for k in ("name", "id", "description", "tags")} == {
        "name": "meta",
        "id": exp.id,
        "description": "a study",
        "tags": ["a", "b"],
    }
    assert before["created"] <= time.time() and "git_commit" in before and "pipeline_file" in before
    exp.run()
    after = exp.metadata()
    assert (after["id"], after["status"], after["description"]) == (exp.id, "succeeded", "a study")


def test_reset_of_an_experiment_that_has_not_run_says_so_and_returns_it(capfd: pytest.CaptureFixture[str]) -> None:
    exp = run.Experiment("fresh")
    exp.add(run.Partial(steps.add, a=1), name="one")
    first = exp.id
    assert exp.reset() is exp and exp.id == first
    assert f"Experiment {first} has not run yet, skipping reset..." in capfd.readouterr().out


def test_reset_gives_a_new_id_and_runs_only_on_run(capfd: pytest.CaptureFixture[str]) -> None:
    with run.Experiment("again") as exp:
        exp.add(run.Partial(steps.add, a=1, b=1), name="x", tail_logs=True)
        exp.add(run.Partial(steps.add, a=2, b=2), name="y")
        exp.run()
    first = exp.id
    reloaded = run.Experiment.from_title("again")
    with reloaded.reset() as same:
        assert same is reloaded and reloaded.id != first
        assert run.Experiment.catalog("again") == [first], "reset runs nothing"
        reloaded.tasks[0].a = 10
        result = reloaded.run(sequential=True)
    assert result.experiment_id == reloaded.id and run.Experiment.catalog("again") == [first, reloaded.id]
    assert [o.name for o in result.ran] == ["x"] and [o.name for o in result.skipped] == ["y"]
    assert reloaded.results() == {"x": 11, "y": 4}


def test_the_executor_as_second_positional_argument_and_old_style_ids_stay_readable() -> None:
    executor = run.LocalExecutor(env_vars={"NF_PLUGIN_VAR": "positional"})
    with run.Experiment("old", executor, id="old_20260101-120000_abc123") as exp:  # NeMo Run's order; an old id
        exp.add(run.Partial(steps.scaled), name="one")
        exp.run()
    assert exp.executor is executor and exp.description == ""
    reloaded = run.Experiment.from_id("old_20260101-120000_abc123")
    assert reloaded.results() == {"one": {"scale": 1.0, "env": "positional"}}
    again = run.Experiment("old")
    again.add(run.Partial(steps.scaled), name="one", executor=executor)
    again.run()
    assert run.Experiment.catalog("old") == ["old_20260101-120000_abc123", again.id]


def test_title_keyword_and_a_local_executor_by_default() -> None:
    exp = run.Experiment(title="titled")
    assert exp.title == exp.name == "titled" and exp.id.startswith("titled_")
    assert isinstance(exp.executor, run.LocalExecutor), "NeMo Run's default executor"
    exp.executor.env_vars["NF_PLUGIN_VAR"] = "changed"
    with exp:
        exp.add(run.Partial(steps.scaled), name="one")
        exp.run()
    assert exp.results() == {"one": {"scale": 1.0, "env": "changed"}}
    with pytest.raises(TypeError, match="needs a name"):
        run.Experiment()
