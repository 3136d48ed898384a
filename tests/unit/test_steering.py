"""Warm start and steering, decided by policy from the replayed state alone: prior runs, enqueued
points, config versions (and versions.compare, which says what a new version may change)."""
from __future__ import annotations

import statistics
from dataclasses import replace

import numpy as np
import pytest

from mlflow_sweep.config import config_from_dict
from mlflow_sweep.policy import Done, Wait, enqueued, history, next_step, sweep_state
from mlflow_sweep.replay import replay
from mlflow_sweep.trials import Controls, Enqueued, Proposal, SweepPhase, Trial, TrialState
from mlflow_sweep.versions import compare

GRID6 = {"method": "grid", "command": "true",
         "parameters": {"lr": {"values": [0.1, 0.01]}, "opt": {"values": ["adam", "sgd", "rmsprop"]}}}


def _config(data):
    return config_from_dict({"command": "true", **data}, "test.yaml")


def _prior(i, n, params, metric=None):
    return Trial(index=i - n, params=params, state=TrialState.FINISHED, metric=metric, run_id=f"prior{i}", prior=True)


def _finish(proposal: Proposal, index: int, metric: float | None = None) -> Trial:
    return Trial(index=index, params=dict(proposal.params), state=TrialState.FINISHED, metric=metric,
                 point=proposal.point, retry_of=proposal.retry_of, version=proposal.version,
                 enqueued=proposal.enqueued)


def _run_out(config, controls, trials=(), seed=0, value=lambda p: None, limit=50):
    """Claim and finish trials one by one until policy says Done; the trials and the reason."""
    trials = list(trials)
    for _ in range(limit):
        step = next_step(config, trials, seed, controls)
        if not isinstance(step, Proposal):
            return trials, step
        trials.append(_finish(step, len(trials), value(step.params)))
    raise AssertionError("never done")


# -- prior runs ---------------------------------------------------------------------------------------


def test_a_grid_of_six_with_two_prior_runs_covering_two_points_runs_exactly_the_other_four():
    priors = (_prior(0, 2, {"lr": 0.1, "opt": "sgd"}, 0.3), _prior(1, 2, {"lr": 0.01, "opt": "adam"}, 0.4))
    trials, done = _run_out(_config(GRID6), Controls(priors=priors))
    ran = {(t.params["lr"], t.params["opt"]) for t in trials}
    assert (len(trials), ran, done) == (4, {(0.1, "adam"), (0.1, "rmsprop"), (0.01, "sgd"), (0.01, "rmsprop")},
                                         Done("every grid point is taken"))


def test_prior_runs_never_count_toward_run_cap_but_count_for_the_target():
    config = _config({**GRID6, "run_cap": 3, "metric": {"name": "loss", "target": 0.2}})
    priors = tuple(_prior(i, 2, p, 0.5) for i, p in enumerate([{"lr": 0.1, "opt": "sgd"}, {"lr": 0.1, "opt": "adam"}]))
    trials, done = _run_out(config, Controls(priors=priors))
    assert (len(trials), done) == (3, Done("run_cap 3 reached"))
    reached = (replace(priors[0], metric=0.1),)
    assert next_step(config, [], 0, Controls(priors=reached)) == Done("metric target 0.2 reached")
    assert sweep_state(config, [], 0, Controls(priors=reached)) is SweepPhase.DONE


def test_the_header_holds_prior_runs_as_finished_trials_with_negative_indices():
    header = {"config": GRID6, "seed": 1, "sweep_id": "s", "priors": [
        {"run_id": "r1", "params": {"lr": 0.1, "opt": "sgd"}, "metric": 0.3},
        {"run_id": "r2", "params": {"lr": 0.01, "opt": "adam"}, "metric": None, "history": [1.0, 0.5]}]}
    state = replay([{"event": "sweep", "v": 3, "time": 0.0, "header": header}])
    assert state.controls.priors == (
        Trial(index=-2, params={"lr": 0.1, "opt": "sgd"}, state=TrialState.FINISHED, metric=0.3, run_id="r1",
              prior=True),
        Trial(index=-1, params={"lr": 0.01, "opt": "adam"}, state=TrialState.FINISHED, run_id="r2",
              history=(1.0, 0.5), prior=True))
    assert state.trials == ()


QUADRATIC = {"method": "bayes", "metric": {"name": "loss"},
             "parameters": {"x": {"min": -5.0, "max": 5.0}, "y": {"min": -5.0, "max": 5.0}}}


def _loss(p):
    return (p["x"] - 1.3) ** 2 + (p["y"] + 2.1) ** 2


def _random_priors(seed, n=10):
    rng = np.random.default_rng(1000 + seed)
    points = [{"x": float(rng.uniform(-5, 5)), "y": float(rng.uniform(-5, 5))} for _ in range(n)]
    return tuple(_prior(i, n, p, _loss(p)) for i, p in enumerate(points))


@pytest.mark.slow
def test_bayes_started_from_ten_prior_runs_finds_a_better_best_in_five_trials():
    config = _config(QUADRATIC)
    with_priors, without, best_prior = [], [], []
    for seed in range(5):
        priors = _random_priors(seed)
        for controls, into in ((Controls(priors=priors), with_priors), (Controls(), without)):
            trials, _ = _run_out(replace(config, run_cap=5), controls, seed=seed, value=_loss)
            into.append(min(t.metric for t in trials))
        best_prior.append(min(t.metric for t in priors))
    medians = [statistics.median(v) for v in (with_priors, without, best_prior)]
    assert medians[0] < medians[1] and medians[0] < medians[2], (with_priors, without, best_prior)


def test_bayes_never_proposes_the_point_of_a_prior_run_again():
    config = _config({**QUADRATIC, "parameters": {"x": {"values": [1, 2, 3]}, "y": {"values": [1, 2]}}})
    priors = tuple(_prior(i, 5, {"x": x, "y": y}, _loss({"x": x, "y": y}))
                   for i, (x, y) in enumerate([(1, 1), (1, 2), (2, 1), (2, 2), (3, 1)]))
    assert next_step(config, [], 7, Controls(priors=priors)).params == {"x": 3, "y": 2}


def test_a_prior_run_without_the_metric_is_history_for_grid_but_not_for_bayes():
    prior = _prior(0, 1, {"x": 1.0, "y": 1.0})
    assert history(_config({**QUADRATIC, "method": "random"}), [], Controls(priors=(prior,), version=2))[0] == [prior]
    assert history(_config(QUADRATIC), [], Controls(priors=(prior,), version=2))[0] == []


# -- enqueued points ----------------------------------------------------------------------------------


def test_requeued_points_come_first_then_enqueued_points_in_order_then_new_ones():
    config = _config({"method": "random", "run_cap": 10, "parameters": {"x": {"min": 0.0, "max": 1.0},
                                                                         "y": {"values": [1, 2]}}})
    interrupted = Trial(index=0, params={"x": 0.5, "y": 1}, state=TrialState.KILLED, requeued="interrupted")
    controls = Controls(enqueued=(Enqueued(0, {"x": 0.25, "y": 2}), Enqueued(1, {"x": 0.75})))
    trials, _ = _run_out(config, controls, [interrupted])
    first = [(t.retry_of, t.enqueued, t.params.get("x")) for t in trials[1:4]]
    assert first == [(0, None, 0.5), (None, 0, 0.25), (None, 1, 0.75)]
    assert trials[3].params["y"] in (1, 2) and all(t.enqueued is None for t in trials[4:])
    assert len([t for t in trials if t.requeued is None]) == 10  # enqueued trials count toward run_cap


def test_an_enqueued_point_runs_once_and_its_missing_values_are_the_same_for_every_agent():
    config = _config({"method": "random", "parameters": {"x": {"min": 0.0, "max": 1.0}, "y": {"min": 0, "max": 99}}})
    controls = Controls(enqueued=(Enqueued(0, {"x": 0.5}),))
    first, again = next_step(config, [], 3, controls), next_step(config, [], 3, controls)
    assert first == again and first.enqueued == 0 and first.params["x"] == 0.5
    after = next_step(config, [_finish(first, 0)], 3, controls)
    assert after.enqueued is None and after == next_step(config, [], 3, Controls())  # the first fresh draw


def test_a_grid_does_not_run_again_a_point_an_enqueued_trial_covers_and_runs_enqueued_points_when_exhausted():
    config = _config(GRID6)
    controls = Controls(enqueued=(Enqueued(0, {"lr": 0.01, "opt": "sgd"}),))
    trials, done = _run_out(config, controls)
    assert (len(trials), trials[0].point, done) == (6, 4, Done("every grid point is taken"))
    late = Controls(enqueued=(*controls.enqueued, Enqueued(1, {"lr": 0.1, "opt": "adam"})))
    assert sweep_state(config, trials, 0, late) is SweepPhase.RUNNING  # a done grid runs a point enqueued later
    more, done = _run_out(config, late, trials)
    assert [(t.enqueued, t.params) for t in more[6:]] == [(1, {"lr": 0.1, "opt": "adam"})]


def test_an_enqueued_point_the_config_no_longer_admits_is_skipped():
    config = _config({"method": "random", "parameters": {"x": {"min": 0.0, "max": 0.5}}})
    controls = Controls(enqueued=(Enqueued(0, {"x": 0.75}), Enqueued(1, {"x": 0.25})), version=2)
    assert [e.number for e in enqueued(config, [], controls)] == [1]


def test_enqueue_events_number_points_across_the_sweep_and_claims_mark_them_taken():
    head = {"event": "sweep", "v": 3, "time": 0.0, "header": {"config": GRID6, "seed": 1, "sweep_id": "s"}}
    state = replay([head, {"event": "enqueue", "points": [{"lr": 0.1}, {"lr": 0.01}], "time": 1.0},
                    {"event": "claim", "trial": 0, "params": {"lr": 0.1, "opt": "adam"}, "enqueued": 0, "time": 2.0},
                    {"event": "enqueue", "points": [{"opt": "sgd"}], "time": 3.0}])
    assert state.controls.enqueued == (Enqueued(0, {"lr": 0.1}), Enqueued(1, {"lr": 0.01}), Enqueued(2, {"opt": "sgd"}))
    assert [e.number for e in enqueued(_config(GRID6), state.trials, state.controls)] == [1, 2]


# -- config versions ----------------------------------------------------------------------------------


def test_values_added_to_a_done_grid_run_exactly_the_new_points_under_the_new_version():
    trials, _ = _run_out(_config(GRID6), Controls())
    bigger = _config({**GRID6, "parameters": {**GRID6["parameters"], "lr": {"values": [0.1, 0.01, 0.001]}}})
    assert sweep_state(bigger, trials, 0, Controls(version=2)) is SweepPhase.RUNNING
    more, done = _run_out(bigger, Controls(version=2), trials)
    new = more[6:]
    assert ({t.params["lr"] for t in new}, len(new), {t.version for t in new}, done) == \
        ({0.001}, 3, {2}, Done("every grid point is taken"))


def test_a_parameter_added_with_a_default_gives_old_trials_that_value_and_others_do_not_fit():
    old = [Trial(index=i, params={"lr": lr}, state=TrialState.FINISHED, point=i) for i, lr in enumerate([0.1, 0.01])]
    grown = _config({"method": "grid", "parameters": {"lr": {"values": [0.1, 0.01]},
                                                      "warmup": {"values": [0, 100], "default": 0}}})
    more, _ = _run_out(grown, Controls(version=2), old)
    assert sorted((t.params["lr"], t.params["warmup"]) for t in more[2:]) == [(0.01, 100), (0.1, 100)]
    no_default = _config({"method": "grid", "parameters": {"lr": {"values": [0.1, 0.01]},
                                                           "warmup": {"values": [0, 100]}}})
    assert history(no_default, old, Controls(version=2))[0] == []
    assert len(_run_out(no_default, Controls(version=2), old)[0]) == 6


def test_a_requeued_point_of_an_old_version_runs_in_the_new_space_or_not_at_all():
    killed = Trial(index=0, params={"lr": 0.1}, state=TrialState.KILLED, requeued="interrupted", point=0)
    grown = _config({"method": "grid", "parameters": {"lr": {"values": [0.01, 0.1]}, "w": {"value": 5}}})
    step = next_step(grown, [killed], 0, Controls(version=2))
    assert (step.params, step.point, step.retry_of, step.version) == ({"lr": 0.1, "w": 5}, 1, 0, 2)
    narrowed = _config({"method": "grid", "parameters": {"lr": {"values": [0.01]}}})
    assert next_step(narrowed, [killed], 0, Controls(version=2)).retry_of is None


def test_config_events_are_versions_and_a_changed_run_cap_in_the_file_replaces_update_run_cap():
    head = {"event": "sweep", "v": 3, "time": 0.0, "header": {"config": {**GRID6, "run_cap": 5}, "seed": 1,
                                                                "sweep_id": "s"}}
    same = {"event": "config", "version": 2, "config": {**GRID6, "run_cap": 5, "method": "random"}, "time": 2.0,
            "by": "me@host"}
    changed = {"event": "config", "version": 3, "config": {**GRID6, "run_cap": 8}, "time": 3.0}
    capped = [head, {"event": "run_cap", "run_cap": 20, "time": 1.0}]
    assert replay([*capped, same]).controls == Controls(run_cap=20, version=2)
    state = replay([*capped, same, changed])
    assert (state.controls, [v.number for v in state.configs], state.config["run_cap"], state.configs[1].by) == \
        (Controls(run_cap=None, version=3), [1, 2, 3], 8, "me@host")
    claim = {"event": "claim", "trial": 0, "params": {"lr": 0.1}, "config_version": 3, "time": 4.0}
    assert replay([*capped, same, changed, claim]).trials[0].version == 3


def test_a_paused_sweep_waits_even_with_points_enqueued():
    controls = Controls(SweepPhase.PAUSED, enqueued=(Enqueued(0, {"lr": 0.1}),))
    assert isinstance(next_step(_config(GRID6), [], 0, controls), Wait)


@pytest.mark.parametrize(("change", "path"), [
    ({"metric": {"name": "acc", "goal": "maximize"}}, "metric"),
    ({"metric": {"name": "loss", "summary": "last"}}, "metric"),
    ({"metric": None}, "metric"),
    ({"seed": 8}, "seed"),
    ({"experiment_name": "other"}, "experiment_name"),
    ({"sweep_name": "renamed"}, "sweep_name"),
    ({"early_terminate": {"type": "hyperband", "min_iter": 2}}, "early_terminate"),
])
def test_what_a_new_version_may_not_change_is_refused_with_its_path(change, path):
    base = {**GRID6, "metric": {"name": "loss"}, "seed": 7}
    new = {k: v for k, v in {**base, **change}.items() if v is not None}
    comparison = compare(_config(base), _config(new), 7)
    assert [p.path for p in comparison.refused] == [path]


def test_what_a_new_version_changes_is_said_line_by_line():
    base = _config({**GRID6, "metric": {"name": "loss"}})
    new = _config({"method": "bayes", "metric": {"name": "loss", "target": 0.1}, "command": "echo ${lr}",
                   "parameters": {"lr": {"min": 0.001, "max": 0.1}, "w": {"values": [1, 2], "default": 1}}})
    assert compare(base, new, 0) == type(compare(base, base, 0))(changes=(
        "method: grid -> bayes", "run_cap: none -> 10", "command: true -> echo ${lr}", "metric.target: none -> 0.1",
        "parameters.lr: categorical(values=[0.1, 0.01]) -> uniform(min=0.001, max=0.1)",
        "parameters.w added: categorical(values=[1, 2]), 1 for earlier runs", "parameters.opt removed"), refused=())
