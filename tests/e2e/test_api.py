"""The Python API in this test process against a real sqlite store: function trials in-process.

One sweep, run once by a function agent, serves the tests that only inspect it. Its trials
behave by their grid point: log with the fluent API alone, open their own ``mlflow.start_run()``
(twice), raise, exit. The agent runs while the caller has its own active run and another
experiment set, as a notebook might.
"""
from __future__ import annotations

import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import mlflow_sweep
from mlflow_sweep.errors import SweepError, UsageError
from tests.conftest import Store, make_store
from tests.e2e.agents import child_runs, ledger_events

pytestmark = [pytest.mark.e2e]

KINDS = ["fluent", "own_runs", "raises", "exits", "prints"]
SHARED = {
    "method": "grid",
    "metric": {"name": "loss", "goal": "minimize"},
    "parameters": {
        "kind": {"values": KINDS},
        "n": {"value": 3},
        "flag": {"value": True},
        "opt": {"parameters": {"lr": {"value": 0.5}, "name": {"value": "adam"}}},
    },
}
LOSS = {"fluent": 0.3, "own_runs": 0.2, "prints": 0.1}


def _train(params: dict[str, Any]) -> None:
    import mlflow

    seen = mlflow_sweep.params()
    assert seen == params
    kind = params["kind"]
    if kind == "fluent":
        mlflow.log_param("seen", json.dumps(seen, sort_keys=True))  # the types the function saw, as JSON
        mlflow.log_metric("loss", LOSS[kind])
        mlflow.log_metric("loss", 0.9)
    elif kind == "own_runs":
        # (as in any MLflow script, start_run() after a fluent call that started a run would raise)
        with mlflow.start_run():
            mlflow.log_metric("loss", LOSS[kind])
        with mlflow.start_run() as again:  # a second block resumes the same child run
            mlflow.log_metric("second_block", 1.0)
            mlflow.set_tag("second_block_run", again.info.run_id)
        mlflow.log_metric("after_blocks", 1.0)
    elif kind == "raises":
        print("about to fail")
        raise ValueError("boom in the trial")
    elif kind == "exits":
        sys.exit(3)
    else:
        print("to stdout from the trial")
        print("to stderr from the trial", file=sys.stderr)
        mlflow.log_metric("loss", LOSS[kind])


@dataclass
class Shared:
    store: Store
    sweep_id: str
    result: Any
    shown: str
    caller_run_id: str
    caller_active_after: str | None
    caller_experiment_after: str | None
    env_after: dict[str, str | None]
    finalize_printed: str
    report: Any
    state: Any


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, template_store: Path) -> Shared:
    import mlflow
    import mlflow.tracking.fluent as fluent

    store = make_store(tmp_path_factory.mktemp("api"), template_store)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", store.uri)
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        mp.delenv("MLFLOW_RUN_ID", raising=False)
        sweep_id = mlflow_sweep.sweep(SHARED)
        # a notebook's own state: another experiment, an active run of its own
        mlflow.set_experiment("notebook")
        caller = mlflow.start_run()
        shown = io.StringIO()
        mp.setattr(sys, "stdout", shown)
        mp.setattr(sys, "stderr", shown)
        try:
            result = mlflow_sweep.agent(sweep_id, function=_train)
            active = mlflow.active_run()
            experiment = fluent._active_experiment_id
            env = {k: os.environ.get(k) for k in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID")}
        finally:
            mlflow.end_run()
            fluent._active_experiment_id = None
            os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
        printed = io.StringIO()
        mp.setattr(sys, "stdout", printed)
        report = mlflow_sweep.finalize(sweep_id)
        state = mlflow_sweep.status(sweep_id)
        return Shared(store, sweep_id, result, shown.getvalue(), caller.info.run_id,
                      active.info.run_id if active else None, experiment, env, printed.getvalue(), report, state)


def _runs(shared: Shared) -> dict[str, Any]:
    return {r.data.params["kind"]: r for r in child_runs(shared.store, shared.sweep_id)}


def _output(shared: Shared, run: Any) -> str:
    dest = shared.store.root / "downloads" / run.info.run_id
    dest.mkdir(parents=True, exist_ok=True)
    return Path(shared.store.client().download_artifacts(run.info.run_id, "output.log", str(dest))).read_text()


def test_agent_runs_every_trial_and_reports_what_it_did(shared):
    assert (shared.result.ran, shared.result.failed) == (5, 2), shared.shown
    assert shared.result.reason == "every grid point is taken"


def test_each_trial_is_one_child_run_never_a_second_run_nor_the_parent(shared):
    client = shared.store.client()
    every = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=100)
    children = [r for r in every if r.data.tags.get("mlflow.parentRunId") == shared.sweep_id]
    others = {r.info.run_id for r in every} - {r.info.run_id for r in children} - {shared.sweep_id}
    assert sorted(r.data.params["kind"] for r in children) == sorted(KINDS)
    assert others == {shared.caller_run_id}  # only the caller's own run besides the sweep's
    assert set(client.get_run(shared.sweep_id).data.metrics) <= {"best_loss"}
    assert client.get_run(shared.caller_run_id).data.metrics == {}


def test_fluent_logging_goes_to_the_trial_run(shared):
    run = _runs(shared)["fluent"]
    assert (run.info.status, run.data.metrics["loss"]) == ("FINISHED", 0.9)
    assert [m.value for m in shared.store.client().get_metric_history(run.info.run_id, "loss")] == [0.3, 0.9]


def test_the_functions_own_start_run_blocks_resume_the_trial_run(shared):
    run = _runs(shared)["own_runs"]
    assert run.info.status == "FINISHED"
    assert {k: run.data.metrics[k] for k in ("loss", "second_block", "after_blocks")} == \
        {"loss": 0.2, "second_block": 1.0, "after_blocks": 1.0}
    assert run.data.tags["second_block_run"] == run.info.run_id


def test_params_are_nested_with_their_sampled_types(shared):
    seen = json.loads(_runs(shared)["fluent"].data.params["seen"])
    assert seen == {"kind": "fluent", "n": 3, "flag": True, "opt": {"lr": 0.5, "name": "adam"}}
    assert (type(seen["n"]), type(seen["opt"]["lr"])) == (int, float)


def test_an_exception_fails_the_trial_keeps_its_traceback_and_the_agent_goes_on(shared):
    runs = _runs(shared)
    output = _output(shared, runs["raises"])
    assert runs["raises"].info.status == "FAILED"
    assert "about to fail\n" in output
    assert "Traceback (most recent call last):" in output and "ValueError: boom in the trial" in output
    assert "in _train" in output and "runners.py" not in output  # the function's frames, not ours
    assert "ValueError: boom in the trial" in shared.shown  # shown as it happened
    assert runs["prints"].info.status == "FINISHED"  # a later trial ran


def test_sys_exit_is_the_trials_exit_code(shared):
    assert _runs(shared)["exits"].info.status == "FAILED"
    assert "trial 3 FAILED (exit code 3)" in shared.shown


def test_what_the_function_prints_is_shown_and_kept(shared):
    output = _output(shared, _runs(shared)["prints"])
    assert output == "to stdout from the trial\nto stderr from the trial\n"
    assert "to stdout from the trial\nto stderr from the trial\n" in shared.shown


def test_the_callers_own_run_experiment_and_environment_are_restored(shared):
    assert shared.caller_active_after == shared.caller_run_id
    assert shared.caller_experiment_after is not None
    assert shared.store.client().get_experiment(shared.caller_experiment_after).name == "notebook"
    assert shared.env_after["MLFLOW_RUN_ID"] is None
    assert shared.env_after["MLFLOW_EXPERIMENT_ID"] == shared.caller_experiment_after  # set_experiment's


def test_finalize_returns_the_best_trial_and_prints_nothing(shared):
    report = shared.report
    assert shared.finalize_printed == ""
    assert (report.best_run_id, report.best_value) == (_runs(shared)["prints"].info.run_id, 0.1)
    assert report.best_params == {"kind": "prints", "n": 3, "flag": True, "opt": {"lr": 0.5, "name": "adam"}}
    assert report.counts == {"finished": 3, "failed": 2, "killed": 0, "running": 0}
    assert report.importance[0].name == "kind"  # the only parameter that varies
    assert sorted(row.name for row in report.importance) == ["flag", "kind", "n", "opt.lr", "opt.name"]
    assert str(report).startswith("Sweep ") and "Best trial: #4" in str(report)
    parent = shared.store.client().get_run(shared.sweep_id)
    assert parent.data.tags["sweep.best_run_id"] == report.best_run_id


def test_status_returns_the_state_and_trials_by_state(shared):
    state = shared.state
    assert (state.state, state.finished, state.failed, state.killed, state.running, state.trials) == \
        ("done", 3, 2, 0, 0, 5)
    assert (state.best_value, state.live_agents) == (0.1, 0)  # the agent returned: not live any more
    assert "Trials: 3 finished, 2 failed, 0 killed, 0 running" in str(state)


def test_the_ledger_holds_each_grid_point_once(shared):
    claims = [e for e in ledger_events(shared.store, shared.sweep_id) if e.get("event") == "claim"]
    assert sorted(c["params"]["kind"] for c in claims) == sorted(KINDS)


def test_params_outside_a_trial_is_a_clear_error_and_should_stop_is_false(monkeypatch):
    monkeypatch.delenv("MLFLOW_SWEEP_PARAMS_FILE", raising=False)
    with pytest.raises(SweepError, match=r"only available inside a trial"):
        mlflow_sweep.params()
    assert mlflow_sweep.should_stop() is False


def test_params_in_a_command_trial_come_from_its_params_file(tmp_path, monkeypatch):
    path = tmp_path / "params.json"
    path.write_text(json.dumps({"lr": 0.1, "opt": {"n": 2}}))
    monkeypatch.setenv("MLFLOW_SWEEP_PARAMS_FILE", str(path))
    assert mlflow_sweep.params() == {"lr": 0.1, "opt": {"n": 2}}


async def _async_train() -> None:
    pass


@pytest.mark.parametrize("function", [lambda a, b: None, 42, _async_train])
def test_a_function_of_the_wrong_shape_is_refused_before_any_trial(shared, function):
    with pytest.raises(UsageError, match="function must"):
        mlflow_sweep.agent(shared.sweep_id, function=function)


def test_bad_count_and_max_failures_are_usage_errors(shared):
    with pytest.raises(UsageError, match="count must be a whole number of at least 1, but got 0"):
        mlflow_sweep.agent(shared.sweep_id, function=lambda: None, count=0)
    with pytest.raises(UsageError, match="max_failures must be a whole number of at least 1"):
        mlflow_sweep.agent(shared.sweep_id, function=lambda: None, max_failures=True)
