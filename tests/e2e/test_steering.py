"""Warm start and steering against a real sqlite store: real MLflow runs as prior runs, points enqueued
and a config changed on a live sweep, from the CLI (in process) and from Python; one test with three
agent processes, where parallel claims of enqueued points are the point."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import yaml

import mlflow_sweep
from mlflow_sweep.errors import ConfigError, PointError, TrackingError
from tests.e2e.agents import child_runs, forked_agents, ledger_events

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

GRID = {"method": "grid", "metric": {"name": "loss"}, "command": "echo ${lr} ${opt}",
        "parameters": {"lr": {"values": [0.1, 0.01]}, "opt": {"values": ["adam", "sgd", "rmsprop"]}}}


def main(store, *args) -> tuple[int, str, str]:
    """The CLI in this process: its exit code, stdout and stderr."""
    proc = store.main(*(str(a) for a in args))
    return proc.returncode, proc.stdout, proc.stderr


def write(store, name: str, data) -> Path:
    path = store.root / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def init(store, config, *extra: str) -> tuple[str, str]:
    """``mlflow sweep init`` in process; the sweep ID and what it printed."""
    code, out, err = main(store, "init", write(store, "sweep.yaml", config), *extra)
    assert code == 0, err
    return out.strip().splitlines()[-1].rsplit(" ", 1)[1], out


def prior_runs(store, rows, experiment: str = "Default") -> list[str]:
    """Finished MLflow runs made the way a training script makes them: text params, a metric history, a tag, an artifact."""
    client = store.client()
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(
        experiment, artifact_location=(store.root / experiment).as_uri())
    ids = []
    for params, losses in rows:
        run = client.create_run(experiment_id, tags={"team": "vision"})
        for name, value in params.items():
            client.log_param(run.info.run_id, name, value)
        for step, value in enumerate(losses):
            client.log_metric(run.info.run_id, "loss", value, step=step)
        client.log_text(run.info.run_id, "trained on shard 3", "notes.txt")
        client.set_terminated(run.info.run_id)
        ids.append(run.info.run_id)
    return ids


def snapshot(store, run_ids):
    """Everything a sweep must never change about a run."""
    client = store.client()
    out = {}
    for run_id in run_ids:
        run = client.get_run(run_id)
        histories = {k: [(m.step, m.value) for m in client.get_metric_history(run_id, k)] for k in run.data.metrics}
        artifacts = sorted(a.path for a in client.list_artifacts(run_id))
        out[run_id] = (run.info.status, run.info.end_time, dict(run.data.params), dict(run.data.tags), histories,
                       artifacts, client.download_artifacts(run_id, "notes.txt", str(store.root / "dl" / run_id)))
    return {k: (*v[:-1], Path(v[-1]).read_text()) for k, v in out.items()}


def parent_state(store, sweep_id):
    """The parent run's tags, status and artifacts, and the ledger's events."""
    client = store.client()
    run = client.get_run(sweep_id)
    names = sorted(a.path for a in client.list_artifacts(sweep_id))
    return dict(run.data.tags), run.info.status, names, ledger_events(store, sweep_id)


# -- prior runs ---------------------------------------------------------------------------------------


def test_a_grid_started_from_two_prior_runs_runs_the_other_four_points_and_the_prior_runs_stay_as_they_were(
        store):
    a, b, outside = prior_runs(store, [({"lr": 0.1, "opt": "sgd"}, [0.9, 0.2]), ({"lr": "0.01", "opt": "adam"}, [0.4]),
                                       ({"lr": 0.5, "opt": "adam"}, [0.1])])
    before = snapshot(store, [a, b, outside])
    sweep_id, out = init(store, GRID, "--prior-run", a, "--prior-run", f"{b},{outside}")
    assert "3 prior runs: 2 used, 1 outside the space (lr)\nSweep initialized with ID: " in out
    [header] = [e for e in ledger_events(store, sweep_id) if e["event"] == "sweep"]
    assert header["header"]["priors"] == [{"run_id": a, "params": {"lr": 0.1, "opt": "sgd"}, "metric": 0.2},
                                          {"run_id": b, "params": {"lr": 0.01, "opt": "adam"}, "metric": 0.4}]
    assert snapshot(store, [a, b, outside]) == before
    code, out, err = main(store, "run", "--sweep-id", sweep_id)
    runs = child_runs(store, sweep_id)
    ran = sorted((r.data.params["lr"], r.data.params["opt"]) for r in runs)
    assert (code, ran) == (0, [("0.01", "rmsprop"), ("0.01", "sgd"), ("0.1", "adam"), ("0.1", "rmsprop")]), err
    code, status, _ = main(store, "status", "--sweep-id", sweep_id)
    assert code == 0 and "Prior runs: 2 (history for the search" in status
    assert f"Best so far: prior run {a} (not run by this sweep) loss = 0.2" in status
    code, report, err = main(store, "finalize", "--sweep-id", sweep_id)
    assert code == 0 and f"Best trial: prior run {a} (not run by this sweep)" in report, err
    assert store.client().get_run(sweep_id).data.tags["sweep.best_run_id"] == a
    assert snapshot(store, [a, b, outside]) == before  # params, metrics, tags, status, artifacts: untouched


def test_prior_runs_from_an_experiment_and_a_filter_in_python_feed_bayes(store):
    rows = [({"lr": lr, "opt": opt}, [loss]) for lr, opt, loss in
            [(0.001, "adam", 0.5), (0.01, "adam", 0.3), (0.05, "adam", 0.6), (0.02, "sgd", 0.1), (0.9, "adam", 0.2)]]
    ids = prior_runs(store, rows, experiment="tuning")
    before = snapshot(store, ids)
    config = {"method": "bayes", "metric": {"name": "loss"}, "run_cap": 3, "experiment_name": "tuning",
              "parameters": {"lr": {"distribution": "log_uniform_values", "min": 0.0001, "max": 0.1},
                             "opt": {"values": ["adam", "sgd"]}}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sweep_id = mlflow_sweep.sweep(config, prior_experiment="tuning", prior_filter="params.opt = 'adam'")
    assert [str(w.message) for w in caught] == ["4 prior runs: 3 used, 1 outside the space (lr)"]
    seen = []
    mlflow_sweep.agent(sweep_id, function=lambda p: seen.append(p) or mlflow_sweep_log(p))
    state = mlflow_sweep.status(sweep_id)
    assert (len(seen), state.prior_runs, state.finished) == (3, 3, 3)
    assert all({"lr", "opt"} <= set(p) for p in seen)
    report = mlflow_sweep.finalize(sweep_id)
    assert report.prior_runs == 3 and "3 prior runs (not run by this sweep) are ranked with the trials" in report.text
    assert snapshot(store, ids) == before and {r.info.run_id for r in child_runs(store, sweep_id)}.isdisjoint(ids)


def mlflow_sweep_log(params):
    import mlflow

    mlflow.log_metric("loss", abs(params["lr"] - 0.02))


def test_an_unknown_prior_run_or_a_bad_filter_creates_nothing(store):
    path = write(store, "sweep.yaml", GRID)
    [known] = prior_runs(store, [({"lr": 0.1, "opt": "sgd"}, [0.3])])
    code, out, err = main(store, "init", path, "--prior-run", known, "--prior-run", "feedface")
    assert (code, out) == (1, "") and err.startswith("prior run 'feedface': no such run in the tracking store")
    code, out, err = main(store, "init", path, "--prior-experiment", "Default", "--prior-filter", "params.lr ==")
    assert (code, out) == (2, "") and err.startswith("--prior-filter 'params.lr ==': ")
    code, out, err = main(store, "init", path, "--prior-filter", "metrics.loss < 1")
    assert (code, err) == (2, "--prior-filter needs --prior-experiment NAME: the experiment whose runs it filters\n")
    with pytest.raises(TrackingError, match="no experiment named 'nope'"):
        mlflow_sweep.sweep(GRID, prior_experiment="nope")
    assert [r.info.run_id for r in store.client().search_runs(["0"])] == [known]


# -- enqueued points ----------------------------------------------------------------------------------

RANDOM = {"method": "random", "run_cap": 5, "command": "echo ${x} ${opt}",
          "parameters": {"x": {"min": 0.0, "max": 1.0}, "opt": {"values": ["adam", "sgd"]}}}


def test_points_enqueued_from_the_cli_and_from_python_run_first_in_order(store):
    sweep_id, _ = init(store, RANDOM)
    code, out, err = main(store, "enqueue", "--sweep-id", sweep_id, '{"x": 0.5, "opt": "sgd"}')
    assert (code, out.strip()) == (0, f"sweep {sweep_id}: 1 point enqueued (1 waiting in all); they run before any "
                                      "new point"), err
    points = write(store, "points.yaml", [{"x": 0.25}, {"x": 1e-4, "opt": "adam"}])
    assert main(store, "enqueue", points, "--sweep-id", sweep_id)[0] == 0
    bad = write(store, "bad.yaml", [{"x": 0.75}, {"x": 2, "lr": 1}])
    before = ledger_events(store, sweep_id)
    code, out, err = main(store, "enqueue", bad, "--sweep-id", sweep_id)
    assert (code, out, err.splitlines()) == (2, "", [
        f"{bad}: invalid points for sweep {sweep_id} (2 problems)",
        "  [1].x: 2 is outside the search space: uniform(min=0.0, max=1.0)",
        "  [1].lr: is not a parameter of the sweep (known: x, opt)"])
    assert ledger_events(store, sweep_id) == before
    with pytest.raises(PointError):
        mlflow_sweep.enqueue(sweep_id, [{"opt": "rmsprop"}])
    result = mlflow_sweep.enqueue(sweep_id, {"x": 0.125})
    assert (result.points, result.changed) == ((3,), True)
    assert main(store, "run", "--sweep-id", sweep_id)[0] == 0
    claims = sorted((e for e in ledger_events(store, sweep_id) if e["event"] == "claim"), key=lambda e: e["trial"])
    assert [(c.get("enqueued"), c["params"]["x"]) for c in claims[:4]] == [(0, 0.5), (1, 0.25), (2, 0.0001), (3, 0.125)]
    assert (len(claims), claims[0]["params"]["opt"], claims[2]["params"]["opt"], "enqueued" in claims[4]) == \
        (5, "sgd", "adam", False)
    runs = {r.data.tags["sweep.trial"]: r for r in child_runs(store, sweep_id)}
    assert (runs["0"].data.params, runs["3"].data.params["x"]) == ({"x": "0.5", "opt": "sgd"}, "0.125")


@pytest.mark.slow
def test_five_points_enqueued_for_three_agents_run_once_each_before_any_new_point(store):
    sweep_id, _ = init(store, {**RANDOM, "run_cap": 9, "command": "true"})
    given = [{"x": round(0.1 * i, 1), "opt": "adam" if i % 2 else "sgd"} for i in range(1, 6)]
    assert main(store, "enqueue", json.dumps(given), "--sweep-id", sweep_id)[0] == 0
    codes, text = forked_agents(store, sweep_id, 3, timeout=240)
    claims = sorted((e for e in ledger_events(store, sweep_id) if e["event"] == "claim"), key=lambda e: e["trial"])
    enqueued = [(c["trial"], c["enqueued"], c["params"]) for c in claims if "enqueued" in c]
    assert (codes, len(claims), enqueued) == ([0, 0, 0], 9, [(i, i, p) for i, p in enumerate(given)]), text


# -- a new config version -----------------------------------------------------------------------------


def test_update_config_adds_values_to_a_done_grid_runs_exactly_the_new_points_and_a_refused_one_changes_nothing(
        store):
    sweep_id, _ = init(store, GRID)
    assert main(store, "run", "--sweep-id", sweep_id)[0] == 0
    bigger = {**GRID, "parameters": {**GRID["parameters"], "lr": {"values": [0.1, 0.01, 0.001]}}}
    path = write(store, "v2.yaml", bigger)
    events = ledger_events(store, sweep_id)
    code, out, err = main(store, "validate", path, "--sweep-id", sweep_id)
    assert code == 0 and "version 2 would change:\n  parameters.lr: categorical(values=[0.1, 0.01]) -> " in out, err
    assert ledger_events(store, sweep_id) == events  # validate writes nothing
    code, out, err = main(store, "update", "--config", path, "--sweep-id", sweep_id)
    assert code == 0 and "config version 2 is in effect" in out and "6 of 6 ended trials fit the new space" in out, err
    assert "State: running" in main(store, "status", "--sweep-id", sweep_id)[1]
    assert main(store, "run", "--sweep-id", sweep_id)[0] == 0
    runs = child_runs(store, sweep_id)
    new = sorted(r.data.params["opt"] for r in runs if r.data.params["lr"] == "0.001")
    assert (len(runs), new) == (9, ["adam", "rmsprop", "sgd"])
    status = main(store, "status", "--sweep-id", sweep_id)[1]
    assert "Config: version 2, set " in status and "State: done" in status
    before = parent_state(store, sweep_id)
    assert "config_versions" in before[2] and before[0]["sweep.config_version"] == "2"
    bad = write(store, "bad.yaml", {**bigger, "metric": {"name": "accuracy", "goal": "maximize"}})
    code, out, err = main(store, "update", "--config", bad, "--sweep-id", sweep_id)
    assert (code, out, err.splitlines()[0]) == (2, "", f"{bad}: invalid update of sweep {sweep_id} (1 problem)")
    invalid = write(store, "invalid.yaml", {**bigger, "parameters": {"lr": {"min": 0.1, "max": 0.2}}})
    code, out, err = main(store, "update", "--config", invalid, "--sweep-id", sweep_id)
    assert (code, out) == (2, "") and "is not finite, but method grid needs a finite set of values" in err
    with pytest.raises(ConfigError, match="seed: cannot change"):
        mlflow_sweep.update(sweep_id, config={**bigger, "seed": 3, "run_cap": 12})
    assert parent_state(store, sweep_id) == before  # tags, status, artifacts, ledger: as they were
    changed = mlflow_sweep.update(sweep_id, config={**GRID, "parameters": {
        **bigger["parameters"], "opt": {"values": ["adam", "sgd", "rmsprop", "adamw"]}}})
    assert (changed.version, changed.state) == (3, "running")
    assert mlflow_sweep.agent(sweep_id, function=lambda: None).ran == 3
    artifacts = sorted(a.path for a in store.client().list_artifacts(sweep_id, "config_versions/v3"))
    assert artifacts == ["config_versions/v3/sweep_config.json"]
