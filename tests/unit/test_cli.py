"""The command line parsed once, in-process: every usage error, values as typed, nothing run on a mistake.

``cli.main([...])`` with capsys, no subprocess: a usage error is decided before any command runs,
so these tests need neither MLflow nor a store.
"""
from __future__ import annotations

import pytest

from mlflow_sweep import api, cli, commandline, control, helptext
from mlflow_sweep.errors import SweepError, UsageError


@pytest.fixture()
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """What the commands were called with: the API functions they would run are recorded instead."""
    seen: list[tuple] = []
    monkeypatch.setattr(api, "run_trials", lambda sweep_id, **kw: seen.append(("run", sweep_id, kw)))
    monkeypatch.setattr(api, "create_sweep", lambda path, **kw: seen.append(("init", path, kw)))
    monkeypatch.setattr(api, "status", lambda sweep_id: seen.append(("status", sweep_id)) or "")
    monkeypatch.setattr(control, "update", lambda sweep_id, run_cap, config=None: seen.append(
        ("update", sweep_id, run_cap, config)) or "")
    monkeypatch.setattr(control, "enqueue", lambda sweep_id, points: seen.append(("enqueue", sweep_id, points)) or "")
    return seen


def usage_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one line a usage error prints; it must exit 2 with nothing on stdout."""
    code = cli.main(args)
    out, err = capsys.readouterr()
    assert (code, out, err.count("\n")) == (2, "", 1), (code, out, err)
    return err.rstrip("\n")


@pytest.mark.parametrize(("args", "message"), [
    (["bogus"], "unknown command 'bogus'; see 'mlflow sweep --help'"),
    (["stauts"], "unknown command 'stauts' (did you mean 'status'?); see 'mlflow sweep --help'"),
    (["--version"], "unknown command '--version'; see 'mlflow sweep --help'"),
    (["_help"], "unknown command '_help'; see 'mlflow sweep --help'"),
    (["finalise", "--help"], "unknown command 'finalise' (did you mean 'finalize'?); see 'mlflow sweep --help'"),
    (["help", "stauts"], "unknown command 'stauts' (did you mean 'status'?); see 'mlflow sweep --help'"),
    (["run", "--cuont", "3"], "unknown option --cuont for run (did you mean --count?); see 'mlflow sweep run --help'"),
    (["run", "--max_failure=2"],
     "unknown option --max_failure for run (did you mean --max-failures?); see 'mlflow sweep run --help'"),
    (["init", "sweep.yaml", "--bogus", "1"], "unknown option --bogus for init; see 'mlflow sweep init --help'"),
    (["status", "-x", "a"], "unknown option -x for status; see 'mlflow sweep status --help'"),
    (["status", "-inf"], "unknown option -inf for status; see 'mlflow sweep status --help'"),
    (["run", "--sweep-id"], "--sweep-id needs a value"),
    (["run", "--sweep-id", "--count", "3"], "--sweep-id needs a value"),
    (["run", "--sweep-id", "-c", "3"], "--sweep-id needs a value"),
    (["run", "--sweep-id="], "--sweep-id needs a value"),
    (["status", "--sweep_id", "a", "--sweep-id", "b"], "--sweep-id is given more than once"),
    (["run", "-s", "a", "--sweep-id=b"], "--sweep-id is given more than once"),
    (["run", "--count", "2", "-c", "3"], "-c is given more than once"),
    (["run", "a", "3", "4", "5"], "too many arguments for run; see 'mlflow sweep run --help'"),
    (["status", "a", "--sweep-id", "b"], "too many arguments for status; see 'mlflow sweep status --help'"),
    (["list", "x"], "too many arguments for list; see 'mlflow sweep list --help'"),
    (["init"], "missing argument; usage: mlflow sweep init FILE [--prior-run RUN_ID ...] [--prior-experiment NAME] "
               "[--prior-filter FILTER]"),
    (["init", "f.yaml", "--prior-experiment", "a", "--prior-experiment", "b"],
     "--prior-experiment is given more than once"),
    (["validate", "--"], "missing argument; usage: mlflow sweep validate FILE [--sweep-id ID]"),
    (["enqueue"], "missing argument; usage: mlflow sweep enqueue POINTS [--sweep-id ID]"),
    (["run", "--count", "0"], "--count must be a whole number of at least 1, but got 0"),
    (["run", "--count", "-5"], "--count must be a whole number of at least 1, but got -5"),
    (["run", "--count=2.5"], "--count must be a whole number of at least 1, but got 2.5"),
    (["run", "--max-failures", "many"], "--max-failures must be a whole number of at least 1, but got 'many'"),
    (["update", "--run-cap", "0"], "--run-cap must be a whole number of at least 1, but got 0"),
    (["update"], "update needs --run-cap N or --config FILE, e.g. 'mlflow sweep update --run-cap 50'"),
], ids=lambda x: " ".join(x) if isinstance(x, list) else "")
def test_each_usage_error_is_one_line_exit_2_and_nothing_runs(args: list[str], message: str, calls: list,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert (usage_error(args, capsys), calls) == (message, [])


@pytest.mark.parametrize("typed", ["00123", "1e5", "0x1F", "True", "None", "[1, 2]", "-abc", "a=b", "3f2a9c"])
def test_a_sweep_id_reaches_the_command_as_typed(typed: str, calls: list) -> None:
    assert cli.main(["status", f"--sweep-id={typed}"]) == 0
    assert calls == [("status", typed)]


@pytest.mark.parametrize("args", [
    ["run", "--sweep-id", "00123", "--count", "2"], ["run", "--sweep_id=00123", "-c", "2"],
    ["run", "-s", "00123", "--count=2"], ["run", "00123", "2"], ["run", "--count", "2", "00123"],
    ["run", "--count", "2", "--", "00123"],
], ids=" ".join)
def test_options_shortcuts_and_positionals_fill_the_same_parameters(args: list[str], calls: list) -> None:
    assert cli.main(args) == 0
    assert calls == [("run", "00123", {"count": 2, "max_failures": 5, "stream": calls[0][2]["stream"]})]


def test_after_a_double_dash_a_value_may_start_with_a_dash(calls: list) -> None:
    assert cli.main(["status", "--", "-3f2a"]) == 0 and calls == [("status", "-3f2a")]


def test_a_count_is_an_int_and_an_omitted_option_keeps_its_default(calls: list) -> None:
    assert cli.main(["update", "--run-cap", "50"]) == 0 and cli.main(["run"]) == 0
    assert (calls[0], calls[1][1:2], calls[1][2]["count"], calls[1][2]["max_failures"]) == (
        ("update", None, 50, None), (None,), None, 5)


def test_a_repeatable_option_gathers_every_value_given_and_comma_lists(monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    seen = []

    def create_sweep(path, **kw):
        seen.append((path, kw))
        raise SweepError("recorded")

    monkeypatch.setattr(api, "create_sweep", create_sweep)
    assert cli.main(["init", "f.yaml", "--prior-run", "a", "--prior-run=b,c", "--prior-experiment", "e",
                     "--prior-filter", "metrics.loss < 1"]) == 1
    assert seen == [("f.yaml", {"prior_runs": ["a", "b", "c"], "prior_experiment": "e",
                                "prior_filter": "metrics.loss < 1"})]


def test_enqueue_takes_its_points_as_typed_and_update_a_config_file(calls: list) -> None:
    point = '{"lr": 0.01, "opt": "adam"}'
    assert cli.main(["enqueue", "--sweep-id", "00123", point]) == 0
    assert cli.main(["update", "--config", "v2.yaml", "--run-cap", "7"]) == 0
    assert calls == [("enqueue", "00123", point), ("update", None, 7, "v2.yaml")]


def test_a_new_command_needs_only_its_signature_and_docstring(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Options to come (``--gpus``, ``--gpus-per-trial``, ``enqueue POINT``) parse by their annotations alone."""
    got: list[dict] = []

    class Later:
        def enqueue(self, point: str, sweep_id: str | None = None, gpus: str | None = None,
                    gpus_per_trial: int | None = None, now: bool = False) -> None:
            """Queue a point.

            Args:
                point (JSON): the point.
                sweep_id (ID): the sweep.
                gpus (LIST): devices.
                gpus_per_trial (N): devices per trial.
                now (flag): at once.
            """
            got.append(dict(point=point, sweep_id=sweep_id, gpus=gpus, gpus_per_trial=gpus_per_trial, now=now))

    monkeypatch.setattr(cli, "SweepCLI", Later)
    assert cli.main(["enqueue", '{"lr": 0.01}', "--gpus", "0,1", "--gpus-per-trial", "2", "--now", "-s", "007"]) == 0
    assert got == [{"point": '{"lr": 0.01}', "sweep_id": "007", "gpus": "0,1", "gpus_per_trial": 2, "now": True}]
    assert usage_error(["enqueue", "{}", "-g", "1"], capsys) == \
        "option -g for enqueue could be --gpus or --gpus-per-trial; see 'mlflow sweep enqueue --help'"
    assert usage_error(["enqueue", "{}", "--gpus-per-trial", "0"], capsys) == \
        "--gpus-per-trial must be a whole number of at least 1, but got 0"
    assert got == [got[0]]


def test_the_parse_leaves_fire_nothing_to_guess() -> None:
    call = commandline.parse(cli.SweepCLI, ["run", "-s", "x", "--count", "3"])
    assert (call.command, dict(call.texts), call.fire_argv()) == (
        "run", {"sweep_id": "x", "count": "3"}, ["run", "--sweep_id=x", "--count=3"])
    with pytest.raises(UsageError, match="needs a value"):
        commandline.parse(cli.SweepCLI, ["run", "-s"])


@pytest.mark.parametrize("command", list(helptext.commands(cli.SweepCLI)))
def test_every_option_of_every_command_has_its_parse_function(command: str) -> None:
    """A sweep ID is never a number, a count never a text: each option is parsed by its annotation."""
    import inspect

    method = getattr(cli.SweepCLI, command)
    names = list(inspect.signature(method).parameters)[1:]
    fns = commandline.parse_fns(method)
    assert sorted(fns) == sorted(names)
    assert all(fns[n] is str for n in names if n in ("sweep_id", "config_file"))
    assert all(fns[n]("7") == 7 for n in names if n in ("count", "max_failures", "run_cap"))


def test_gpus_reach_run_as_typed_and_are_never_filled_from_positional_arguments(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``--gpus 0,1`` stays the text 0,1 (Fire alone would make it a tuple), ``--gpus 2`` the device 2."""
    seen: list[tuple] = []

    class Ran:
        exit_code = 0

    monkeypatch.setattr(api, "run_on_devices", lambda sweep_id, gpus, **kw: seen.append((sweep_id, gpus, kw)) or Ran())
    assert cli.main(["run", "007", "--gpus", "0,1", "--gpus-per-trial=2"]) == 0
    assert cli.main(["run", "--gpus", "2"]) == 0
    assert [(s, g, kw["gpus_per_trial"]) for s, g, kw in seen] == [("007", "0,1", 2), (None, "2", 1)]
    assert usage_error(["run", "a", "3", "4", "5"], capsys) == "too many arguments for run; see 'mlflow sweep run --help'"
