"""Function agents on their own sweeps against a real MLflow store: config errors, MLflow's fluent API
inside a trial, early termination through should_stop(), the heartbeat beside a busy function, a
command agent from Python, and stores switched in one process. In this test process, except where a
real signal or a second agent process is the point (test_function_agent_processes.py). The agent's
decisions for function trials (KeyboardInterrupt, failures, cancel) are tested without MLflow in
tests/unit/test_agent_loop.py."""
from __future__ import annotations

import io
import json
import sys
import time
import warnings
from pathlib import Path

import pytest

import mlflow_sweep
from mlflow_sweep.errors import ConfigError, UsageError
from tests.conftest import make_store
from tests.e2e.agents import child_runs, ledger_events

pytestmark = [pytest.mark.e2e]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)


def _all_runs(store) -> list:
    client = store.client()
    return client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)


BAD = {
    "method": "bayse",
    "command": "train ${batchsize}",
    "run_cpa": 3,
    "parameters": {"learning_rate": {"min": "abc", "max": 0.1}, "batch_size": {"values": [16, 32]}},
}
BAD_LINES = [
    "method: 'bayse' is not one of grid, random, bayes, tpe, gp, cmaes, nsga2, custom (did you mean 'bayes'?)",
    "parameters.learning_rate.min: 'abc' is not a number",
    "run_cpa: unknown key (did you mean 'run_cap'?)",
    "command: ${batchsize} is not a parameter (known: batch_size, learning_rate)",
]


def test_an_invalid_dict_raises_config_error_with_every_problem_and_creates_nothing(tmp_path, monkeypatch):
    db = tmp_path / "never.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    with pytest.raises(ConfigError) as caught:
        mlflow_sweep.sweep(BAD)
    lines = str(caught.value).splitlines()
    assert lines[0] == "sweep config: invalid sweep configuration (4 problems)"
    assert [line.strip() for line in lines[1:]] == BAD_LINES
    assert [p.path for p in caught.value.problems] == ["method", "parameters.learning_rate.min", "run_cpa", "command"]
    assert isinstance(caught.value, mlflow_sweep.ConfigError) and not db.exists()  # not even a store


def test_an_invalid_file_names_itself_and_creates_nothing(store):
    path = store.root / "bad.yaml"
    path.write_text("method: grid\ncommand: echo ${x}\nparameters:\n  x: {min: 0.0, max: 1.0}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: invalid sweep configuration \(1 problem\)\n"
                                          r"  parameters.x: uniform\(min=0.0, max=1.0\) is not finite"):
        mlflow_sweep.sweep(str(path))
    assert _all_runs(store) == []


def test_a_dict_config_is_logged_and_experiment_name_overrides_it(store):
    config = {"project": "from-config", "parameters": {"x": {"values": [1, 2]}}}
    sweep_id = mlflow_sweep.sweep(config, experiment_name="from-argument")
    client = store.client()
    parent = client.get_run(sweep_id)
    logged = client.download_artifacts(sweep_id, "sweep_config.json", str(store.root))
    assert client.get_experiment(parent.info.experiment_id).name == "from-argument"
    assert parent.data.tags["sweep"] == "True"
    assert json.loads(Path(logged).read_text()) == config
    assert client.get_experiment_by_name("from-config") is None
    with pytest.raises(UsageError, match="experiment_name must be a non-empty string"):
        mlflow_sweep.sweep(config, experiment_name="")


def test_a_sweep_for_the_function_agent_warns_of_nothing_and_others_warn_as_init_does(store):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mlflow_sweep.sweep({"method": "grid", "parameters": {"x": {"values": [1]}}})  # no program, no command
        mlflow_sweep.sweep({"entity": "team", "parameters": {"x": {"values": [1]}}})
    ours = [str(w.message) for w in caught if w.filename == __file__]  # pointing at the caller's line
    assert ours == ["entity is ignored (W&B only)"]


def test_wandb_keyword_arguments_work_as_written_for_wandb(store):
    # the calls of W&B notebooks: wandb.sweep(sweep=config, project=..., entity=...), wandb.agent(id, train, ...)
    config = {"method": "grid", "parameters": {"x": {"values": [1, 2]}}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sweep_id = mlflow_sweep.sweep(sweep=config, project="wandb-project", entity="team")
    assert [str(w.message) for w in caught if w.filename == __file__] == ["entity is ignored (W&B only)"]
    client = store.client()
    assert client.get_experiment(client.get_run(sweep_id).info.experiment_id).name == "wandb-project"
    seen = []
    result = mlflow_sweep.agent(sweep_id, lambda: seen.append(mlflow_sweep.params()["x"]), count=2,
                                project="wandb-project", entity="team")
    assert (result.ran, seen) == (2, [1, 2])
    with pytest.raises(UsageError, match=r"give config or sweep \(W&B's name for it\), not both"):
        mlflow_sweep.sweep(config, sweep={"parameters": {"y": {"value": 1}}})
    with pytest.raises(UsageError, match=r"give experiment_name or project \(W&B's name for it\), not both"):
        mlflow_sweep.sweep(config, experiment_name="a", project="b")
    with pytest.raises(UsageError, match="sweep\\(\\) needs a config"):
        mlflow_sweep.sweep(project="wandb-project")
    assert len(_all_runs(store)) == 3  # the parent and its two trials: the mistakes created nothing


def test_sweeps_in_two_stores_from_one_process_land_in_their_own(store, tmp_path_factory, template_store, monkeypatch):
    # the tracking client was cached for the first store a process used (bug found writing the API)
    config = {"parameters": {"x": {"values": [1]}}}
    first = mlflow_sweep.sweep(config)
    other = make_store(tmp_path_factory.mktemp("other"), template_store)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", other.uri)
    second = mlflow_sweep.sweep(config)
    assert {r.info.run_id for r in _all_runs(store)} == {first}
    assert {r.info.run_id for r in _all_runs(other)} == {second}
    assert mlflow_sweep.status().sweep_id == second


def test_count_limits_the_trials_of_one_agent(store):
    sweep_id = mlflow_sweep.sweep({"method": "random", "run_cap": 6, "parameters": {"x": {"values": [1]}}})
    assert mlflow_sweep.agent(sweep_id, function=lambda: None, count=2).ran == 2
    assert mlflow_sweep.agent(function=lambda: None).ran == 4  # the latest sweep: the rest of run_cap
    assert (mlflow_sweep.status().state, mlflow_sweep.status().finished) == ("done", 6)


def test_without_a_function_the_agent_runs_the_command(store, monkeypatch):
    sweep_id = mlflow_sweep.sweep({"method": "grid", "command": "echo hello ${x}",
                                   "parameters": {"x": {"values": [1, 2]}}})
    shown = io.StringIO()
    monkeypatch.setattr(sys, "stdout", shown)  # a notebook's stdout: text, no .buffer
    result = mlflow_sweep.agent(sweep_id)
    assert (result.ran, shown.getvalue()) == (2, "hello 1\nhello 2\n")
    assert sorted(r.info.status for r in child_runs(store, sweep_id)) == ["FINISHED", "FINISHED"]


def test_a_sweep_without_command_needs_a_function_and_claims_nothing_without_one(store):
    from mlflow_sweep.runners import NoCommand

    sweep_id = mlflow_sweep.sweep({"method": "grid", "parameters": {"x": {"values": [1]}}})
    with pytest.raises(NoCommand, match=r"mlflow_sweep.agent\(sweep_id, function=train\)") as caught:
        mlflow_sweep.agent(sweep_id)
    assert caught.value.exit_code == 2
    assert [e for e in ledger_events(store, sweep_id) if e.get("event") == "claim"] == []
    assert mlflow_sweep.agent(sweep_id, function=lambda: None).ran == 1


def test_a_nested_run_the_trial_leaves_open_is_ended_under_the_trial_run(store):
    import mlflow

    sweep_id = mlflow_sweep.sweep({"method": "grid", "parameters": {"x": {"values": [1]}}})

    def train():
        mlflow.log_metric("outer", 1.0)
        mlflow.start_run(nested=True)  # never ended by the function
        mlflow.log_metric("inner", 2.0)

    mlflow_sweep.agent(sweep_id, function=train)
    (trial,) = child_runs(store, sweep_id)
    (nested,) = [r for r in _all_runs(store) if r.data.tags.get("mlflow.parentRunId") == trial.info.run_id]
    assert (trial.info.status, trial.data.metrics) == ("FINISHED", {"outer": 1.0})
    assert (nested.info.status, nested.data.metrics) == ("FINISHED", {"inner": 2.0})
    assert mlflow.active_run() is None


def test_sklearn_autologging_and_later_fluent_calls_share_the_trial_run(store):
    # autologging opens and ends a run around fit(); the metric logged after it must not start a new run
    import mlflow
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    sweep_id = mlflow_sweep.sweep({"method": "grid", "parameters": {"C": {"values": [0.5]}}})

    def train(params):
        X, y = load_iris(return_X_y=True)
        LogisticRegression(C=params["C"], max_iter=300).fit(X, y)
        mlflow.log_metric("after_fit", 1.0)

    mlflow.sklearn.autolog(log_models=False, log_datasets=False, silent=True)
    try:
        mlflow_sweep.agent(sweep_id, function=train)
    finally:
        mlflow.sklearn.autolog(disable=True)
    (trial,) = child_runs(store, sweep_id)
    assert len(_all_runs(store)) == 2  # the parent and the trial
    assert {"after_fit", "training_score"} <= set(trial.data.metrics)


def test_the_heartbeat_keeps_beating_beside_a_busy_function_trial(store, monkeypatch):
    """Pure-Python work in the agent's own thread does not starve the heartbeat thread: the function
    runs until it has seen four beats of the agent (the first two come as it starts; an event, with a long
    bound)."""
    from mlflow_sweep import lifecycle

    monkeypatch.setenv("MLFLOW_SWEEP_HEARTBEAT_TIMEOUT", "2")  # a beat every 0.5 s
    sweep_id = mlflow_sweep.sweep({"method": "grid", "parameters": {"x": {"values": [1]}}})
    ledger = lifecycle.open_sweep(sweep_id).ledger
    seen: set[float] = set()

    def train():
        deadline = time.monotonic() + 60
        while len(seen) < 4 and time.monotonic() < deadline:
            sum(range(10_000))  # busy, holding the GIL between switches
            seen.update(a["beat"] for a in ledger.agents())

    mlflow_sweep.agent(sweep_id, function=train)
    assert (len(seen) >= 4, [r.info.status for r in child_runs(store, sweep_id)]) == (True, ["FINISHED"])


@pytest.mark.timeout(120)
def test_should_stop_ends_a_function_trial_that_hyperband_cuts(store, monkeypatch):
    """The diverging trial logs three values through MLflow, then asks should_stop() until it is told
    to stop: it can only be cut at band 3, whenever the check comes."""
    import mlflow

    monkeypatch.setenv("MLFLOW_SWEEP_EARLY_TERMINATE_INTERVAL", "0.1")
    sweep_id = mlflow_sweep.sweep({
        "method": "grid", "metric": {"name": "loss", "goal": "minimize"},
        "early_terminate": {"type": "hyperband", "min_iter": 3, "eta": 3},
        "parameters": {"lr": {"values": [0.01, 8.0]}},
    })

    def train(params):
        for step in range(3 if params["lr"] > 1 else 30):
            mlflow.log_metric("loss", 2.0 + params["lr"] * step if params["lr"] > 1 else 1.0 / (step + 1), step=step)
        deadline = time.monotonic() + 60
        while params["lr"] > 1 and time.monotonic() < deadline:
            if mlflow_sweep.should_stop():
                mlflow.set_tag("saw_should_stop", "yes")
                return
            time.sleep(0.02)

    mlflow_sweep.agent(sweep_id, function=train)
    runs = {float(r.data.params["lr"]): r for r in child_runs(store, sweep_id)}
    good, cut = runs[0.01], runs[8.0]
    ends = {e["trial"]: e for e in ledger_events(store, sweep_id) if e.get("event") == "end"}
    assert (good.info.status, cut.info.status, cut.data.tags.get("sweep.stopped_early")) == ("FINISHED", "KILLED", "3")
    assert cut.data.tags["saw_should_stop"] == "yes"
    assert (ends[1]["state"], ends[1]["stopped_at"], ends[1]["metric"], ends[1]["history"]) == \
        ("KILLED", 3, 2.0, [2.0, 10.0, 18.0])
