"""Warm start and steering as an agent lives them, in milliseconds: a real ledger in tmp_path, runs in
a MemoryTracker, a stand-in runner. Prior runs picked from the tracker, points enqueued and a config
changed while the agent runs, a refused change that leaves everything as it was."""
from __future__ import annotations

import json

import pytest

from mlflow_sweep import agent_loop, api, control, lifecycle, progress, results, runners
from mlflow_sweep.agent_loop import AgentSettings
from mlflow_sweep.config import config_from_dict
from mlflow_sweep.errors import ConfigError, PointError
from mlflow_sweep.ledger import Ledger
from mlflow_sweep.memory_tracker import MemoryTracker
from tests.unit.agent_doubles import ManualClock, StandIn, memory_sweep

pytestmark = pytest.mark.timeout(60)

GRID = {"method": "grid", "metric": {"name": "loss"},
        "parameters": {"lr": {"values": [0.1, 0.01]}, "opt": {"values": ["adam", "sgd", "rmsprop"]}}}
SETTINGS = AgentSettings(poll_every=1.0, check_every=5.0, heartbeat_timeout=120.0)


@pytest.fixture(autouse=True)
def _no_agent_settings(monkeypatch):
    for name in ("MLFLOW_SWEEP_POLL_INTERVAL", "MLFLOW_SWEEP_HEARTBEAT_TIMEOUT", "MLFLOW_SWEEP_LOCK_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)


def agent(opened, runner, said=None):
    return agent_loop.run_agent(opened.sweep.run_id, runner=lambda _: runner, tracker=opened.tracker,
                                clock=opened.clock, say=(said if said is not None else []).append)


def logging_loss(opened, loss=lambda params: params["lr"]):
    def behave(trial, run_id, stop):
        opened.tracker.log_metric(run_id, "loss", loss(trial.params))
        return 0
    return behave


def state(opened):
    return Ledger(opened.ledger.directory).state()


def test_an_agent_runs_the_grid_points_prior_runs_do_not_cover_and_status_and_finalize_show_them(tmp_path):
    tracker = MemoryTracker(tmp_path / "sweeps")
    a = tracker.add_run({"lr": "0.1", "opt": "sgd"}, {"loss": [0.5, 0.05]})
    b = tracker.add_run({"lr": "0.01", "opt": "adam", "other": "x"}, {"loss": [0.3]})
    outside = tracker.add_run({"lr": "0.5", "opt": "adam"}, {"loss": [0.1]})
    before = {r.run_id: (r.status, dict(r.params), dict(r.metrics), dict(r.tags)) for r in (a, b, outside)}
    config = config_from_dict({"command": "true", **GRID}, "sweep.yaml")
    choice = api.choose_priors(config, [a.run_id, b.run_id, outside.run_id], None, None, tracker=tracker)
    assert choice.summary() == "3 prior runs: 2 used, 1 outside the space (lr)"
    clock = ManualClock()
    sweep = lifecycle.init_sweep(config, "sweep.yaml", tracker=tracker, clock=clock, priors=choice.used)
    opened = lifecycle.open_sweep(sweep.run_id, tracker=tracker, clock=clock)
    runner = StandIn(logging_loss(opened, lambda params: 1.0))  # no trial beats prior run a
    result = agent(opened, runner)
    ran = sorted((t.params["lr"], t.params["opt"]) for t in state(opened).trials)
    assert (result.ran, ran) == (4, [(0.01, "rmsprop"), (0.01, "sgd"), (0.1, "adam"), (0.1, "rmsprop")])
    shown = progress.sweep_status(sweep.run_id, tracker=tracker)
    assert (shown.prior_runs, shown.best_run_id, shown.best_value, shown.state) == (2, a.run_id, 0.05, "done")
    assert f"Best so far: prior run {a.run_id} (not run by this sweep) loss = 0.05" in shown.text
    assert "for a grid of 6 points, 2 covered by prior runs" in shown.text
    report = results.finalize_sweep(sweep.run_id, tracker=tracker)
    assert (report.best_run_id, report.best_is_prior, report.prior_runs, report.counts["finished"]) == \
        (a.run_id, True, 2, 4)
    assert "note: 2 prior runs (not run by this sweep) are ranked with the trials" in report.text
    assert before == {r.run_id: (r.status, dict(r.params), dict(r.metrics), dict(r.tags)) for r in (a, b, outside)}
    assert not any(r.tags.get("mlflow.parentRunId") for r in (a, b, outside))


def test_enqueued_points_run_first_in_order_once_and_count_toward_run_cap(tmp_path):
    opened = memory_sweep(tmp_path, {"method": "random", "run_cap": 4, "seed": 2,
                                     "parameters": {"x": {"min": 0.0, "max": 1.0}, "y": {"values": ["a", "b"]}}})
    done = control.add_points(opened, [{"x": 0.5, "y": "b"}, {"x": 0.25}])
    assert (done.points, done.changed) == ((0, 1), True) and "2 points enqueued (2 waiting in all)" in done.message
    runner = StandIn()
    agent(opened, runner)
    trials = state(opened).trials
    assert [(t.enqueued, t.params.get("x")) for t in trials[:2]] == [(0, 0.5), (1, 0.25)]
    assert len(trials) == 4 and all(t.enqueued is None for t in trials[2:])
    assert json.loads(opened.tracker.children(opened.sweep.run_id)[0].tags["sweep.params"]) == {"x": 0.5, "y": "b"}
    late = control.add_points(opened, {"x": 0.75})
    assert "run_cap 4 is reached, so they wait" in late.message and late.state == "done"


def test_a_point_outside_the_space_is_refused_with_its_path_and_nothing_is_enqueued(tmp_path):
    opened = memory_sweep(tmp_path, {"method": "random", "parameters": {"x": {"min": 0.0, "max": 1.0}}})
    applied = state(opened).applied
    with pytest.raises(PointError) as refused:
        control.add_points(opened, [{"x": 0.5}, {"x": 3}], "points.yaml")
    assert str(refused.value) == (f"points.yaml: invalid points for sweep {opened.sweep.run_id} (1 problem)\n"
                                  "  [1].x: 3 is outside the search space: uniform(min=0.0, max=1.0)")
    assert state(opened).applied == applied


def test_a_new_config_takes_effect_for_the_next_claim_and_each_trial_runs_with_its_version(tmp_path):
    opened = memory_sweep(tmp_path, {"method": "grid", "parameters": {"lr": {"values": [0.1, 0.01]}}})
    grown = config_from_dict({"command": "echo ${lr} ${w}", "method": "grid", "parameters": {
        "lr": {"values": [0.1, 0.01]}, "w": {"values": [1, 2], "default": 1}}}, "v2.yaml")
    (tmp_path / "v2.yaml").write_text("the file as the user wrote it\n")
    seen = []

    def behave(trial, run_id, stop):
        seen.append((trial.version, dict(trial.params)))
        if trial.index == 0:  # the update lands while trial 0 runs
            changed = control.set_config(opened, grown, str(tmp_path / "v2.yaml"))
            assert changed.version == 2 and "parameters.w added" in changed.message
        return 0

    agent(opened, StandIn(behave))
    # trial 0 stands for (0.1, w=1) in the new grid: the other three points run, in grid order
    assert seen == [(1, {"lr": 0.1}), (2, {"lr": 0.1, "w": 2}), (2, {"lr": 0.01, "w": 1}), (2, {"lr": 0.01, "w": 2})]
    parent = opened.tracker.runs[opened.sweep.run_id]
    assert (parent.artifacts["config_versions/v2/v2.yaml"], parent.tags["sweep.config_version"]) == \
        ("the file as the user wrote it\n", "2")
    fresh = lifecycle.open_sweep(opened.sweep.run_id, tracker=opened.tracker, clock=opened.clock)
    runner = runners.CommandRunner(fresh.sweep, fresh.config, versions=fresh.config_at)
    first, last = state(opened).trials[0], state(opened).trials[-1]
    assert (runners.config_of(runner, first).command, runners.config_of(runner, last).command) == \
        ("true", "echo ${lr} ${w}")
    assert "Config: version 2" in progress.sweep_status(opened.sweep.run_id, tracker=opened.tracker).text


def test_a_change_that_cannot_apply_changes_nothing(tmp_path):
    opened = memory_sweep(tmp_path, {**GRID, "seed": 5})
    agent(opened, StandIn(logging_loss(opened)))
    parent = opened.tracker.runs[opened.sweep.run_id]
    before = (state(opened).applied, dict(parent.tags), dict(parent.artifacts), parent.status)
    renamed = config_from_dict({"command": "true", **GRID, "seed": 6, "metric": {"name": "acc"}}, "bad.yaml")
    with pytest.raises(ConfigError) as refused:
        control.set_config(opened, renamed, "bad.yaml")
    assert str(refused.value).splitlines() == [
        f"bad.yaml: invalid update of sweep {opened.sweep.run_id} (2 problems)",
        "  seed: cannot change (5 -> 6): the sweep's draws so far came from seed 5 (leave seed out or keep 5)",
        "  metric: cannot change (loss (minimize, summary best) -> acc (minimize, summary best)): every trial's "
        "value was counted by its name, goal and summary, and old trials would be ranked with new ones on another "
        "scale (target and impute may change) (start a new sweep from this one's runs instead: mlflow sweep init "
        "FILE --prior-experiment NAME)"]
    assert before == (state(opened).applied, dict(parent.tags), dict(parent.artifacts), parent.status)
    same = control.set_config(opened, config_from_dict({"command": "true", **GRID}, "same.yaml"), "same.yaml")
    assert (same.changed, state(opened).applied) == (False, before[0])
