"""Finalize math: rankings, categorical alignment, seeding, best trial, edge cases."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from mlflow_sweep.analysis import CATEGORICAL, LINEAR, LOG, analyse, best_trial, param_levels, param_scales
from mlflow_sweep.trials import Trial, TrialState

SCALES = {"lr": LOG, "optimizer": CATEGORICAL, "dropout": LINEAR, "batch_size": CATEGORICAL}
OPT_EFFECT = {"adam": 0.0, "sgd": 3.0, "rmsprop": 1.5}


def make_trials(n: int, metric_of, seed: int = 7) -> list[Trial]:
    """n finished trials over SCALES' parameters; ``metric_of(params)`` gives each metric."""
    rng = np.random.default_rng(seed)
    trials = []
    for i in range(n):
        params = {"lr": float(10 ** rng.uniform(-5, -1)), "optimizer": str(rng.choice(list(OPT_EFFECT))),
                  "dropout": float(rng.uniform(0, 0.5)), "batch_size": int(rng.choice([16, 32, 64]))}
        trials.append(Trial(i, params, TrialState.FINISHED, metric_of(params), run_id=f"run{i}",
                            started=10.0 * i, ended=10.0 * i + 5))
    return trials


def names(result) -> list[str]:
    return [row.name for row in result.rows]


@pytest.mark.parametrize("driver, metric_of", [
    ("dropout", lambda p: 4 * p["dropout"]),
    ("lr", lambda p: math.log10(p["lr"])),
    ("optimizer", lambda p: OPT_EFFECT[p["optimizer"]]),
    ("batch_size", lambda p: p["batch_size"] / 64),
])
def test_the_only_parameter_that_matters_ranks_first(driver, metric_of):
    result = analyse(make_trials(60, metric_of), metric="loss", scales=SCALES)
    assert names(result)[0] == driver
    first = result.rows[0]
    assert first.importance > 0.8 and first.permutation > 0.5
    assert all(row.importance < 0.1 for row in result.rows[1:])


def test_rows_stay_aligned_with_a_categorical_between_numbers():
    """One row per parameter, each about the parameter it names (the peer's table is misaligned)."""
    result = analyse(make_trials(80, lambda p: OPT_EFFECT[p["optimizer"]] + p["dropout"]),
                     metric="loss", scales=SCALES)
    assert sorted(names(result)) == sorted(SCALES)
    rows = {row.name: row for row in result.rows}
    assert names(result)[:2] == ["optimizer", "dropout"]
    assert rows["optimizer"].scale == CATEGORICAL and rows["optimizer"].pearson > 0.8
    assert abs(rows["lr"].pearson) < 0.3 and abs(rows["batch_size"].pearson) < 0.3
    assert math.isclose(sum(row.importance for row in result.rows), 1.0, rel_tol=1e-9)


def test_log_parameters_correlate_in_log_space_and_number_categoricals_keep_their_sign():
    rows = {row.name: row for row in analyse(make_trials(40, lambda p: -math.log10(p["lr"])),
                                             metric="loss", scales=SCALES).rows}
    assert rows["lr"].pearson < -0.99 and rows["lr"].spearman < -0.99
    rows = {row.name: row for row in analyse(make_trials(40, lambda p: -p["batch_size"]),
                                             metric="loss", scales=SCALES).rows}
    assert rows["batch_size"].scale == LINEAR and rows["batch_size"].pearson < -0.99


def test_the_same_sweep_gives_the_same_numbers():
    trials = make_trials(50, lambda p: p["dropout"] + OPT_EFFECT[p["optimizer"]])
    assert analyse(trials, metric="loss", scales=SCALES, seed=3) == analyse(trials, metric="loss", scales=SCALES, seed=3)


@pytest.mark.parametrize("goal, expected", [("minimize", 2), ("maximize", 0)])
def test_best_trial_follows_the_goal(goal, expected):
    values = [5.0, 1.0, -1.0, 1.0]
    trials = [Trial(i, {"x": i}, TrialState.FINISHED, v) for i, v in enumerate(values)]
    assert best_trial(trials, goal).index == expected
    assert analyse(trials, metric="m", goal=goal).best.index == expected


def test_ties_go_to_the_earliest_trial():
    trials = [Trial(i, {"x": i}, TrialState.FINISHED, 1.0) for i in range(3)]
    assert best_trial(trials, "minimize").index == 0


def test_no_metric_configured_gives_a_note_and_no_table():
    trials = [Trial(0, {"x": 1}, TrialState.FINISHED), Trial(1, {"x": 2}, TrialState.FAILED)]
    result = analyse(trials, metric=None)
    assert (result.rows, result.best, result.used) == ((), None, 0)
    assert "no metric configured" in result.notes[0]
    assert result.counts == {"running": 0, "finished": 1, "failed": 1, "killed": 0}


@pytest.mark.parametrize("n", [0, 1, 2])
def test_too_few_finished_trials_gives_a_note_but_keeps_the_best(n):
    trials = make_trials(n, lambda p: p["dropout"])
    result = analyse(trials, metric="loss", scales=SCALES)
    assert result.rows == ()
    assert "at least 3 finished trials" in result.notes[-1] and f"got {n}" in result.notes[-1]
    assert (result.best is None) == (n == 0)


def test_failed_killed_running_and_nan_trials_are_left_out():
    good = make_trials(10, lambda p: p["dropout"])
    bad = [Trial(10, good[0].params, TrialState.FAILED, -100.0),
           Trial(11, good[0].params, TrialState.KILLED, -100.0),
           Trial(12, good[0].params, TrialState.RUNNING),
           Trial(13, good[0].params, TrialState.FINISHED, float("nan")),
           Trial(14, good[0].params, TrialState.FINISHED, None),
           Trial(15, good[0].params, TrialState.FINISHED, float("inf"))]
    result = analyse(good + bad, metric="loss", scales=SCALES)
    assert result.used == 10 and result.best.index in range(10)
    assert result.counts == {"running": 1, "finished": 13, "failed": 1, "killed": 1}
    assert any("3 finished trials logged no finite value" in n for n in result.notes)
    assert any("3 trials not finished" in n for n in result.notes)
    assert names(result)[0] == "dropout"


def test_a_trial_stopped_early_by_hyperband_counts_with_its_metric():
    trials = make_trials(4, lambda p: p["dropout"])
    stopped = Trial(4, trials[0].params, TrialState.KILLED, -5.0, stopped_at=3)
    result = analyse([*trials, stopped], metric="loss", scales=SCALES)
    assert (result.used, result.best.index) == (5, 4)


def test_a_parameter_that_never_varies_gets_a_row_with_no_correlation():
    trials = [Trial(i, {"x": float(i), "fixed": 0.5}, TrialState.FINISHED, float(i) ** 2) for i in range(8)]
    result = analyse(trials, metric="loss", scales={"x": LINEAR, "fixed": LINEAR})
    assert names(result) == ["x", "fixed"]
    fixed = result.rows[1]
    assert (fixed.importance, fixed.permutation, fixed.pearson, fixed.spearman, fixed.varies) == (0, 0, None, None, False)
    assert "fixed never varies" in result.notes[-1]


def test_no_parameter_varies():
    trials = [Trial(i, {"fixed": "a"}, TrialState.FINISHED, float(i)) for i in range(5)]
    result = analyse(trials, metric="loss", scales={"fixed": CATEGORICAL})
    assert [(r.name, r.importance, r.pearson) for r in result.rows] == [("fixed", 0.0, None)]


def test_only_categorical_parameters():
    rng = np.random.default_rng(0)
    trials = []
    for i in range(30):
        params = {"act": str(rng.choice(["relu", "tanh"])), "opt": str(rng.choice(list(OPT_EFFECT))),
                  "flag": bool(rng.integers(2))}
        trials.append(Trial(i, params, TrialState.FINISHED, OPT_EFFECT[params["opt"]]))
    result = analyse(trials, metric="loss", scales={k: CATEGORICAL for k in ("act", "opt", "flag")})
    assert names(result)[0] == "opt" and len(result.rows) == 3
    assert all(row.scale == CATEGORICAL for row in result.rows)


def test_a_metric_that_never_varies_gives_a_note():
    trials = [Trial(i, {"x": i}, TrialState.FINISHED, 2.0) for i in range(5)]
    result = analyse(trials, metric="loss")
    assert result.rows == () and "is 2 in every finished trial" in result.notes[-1]


def test_parameters_only_in_trials_and_missing_values_are_handled():
    trials = [Trial(i, {"x": i, **({"extra": "on"} if i % 2 else {})}, TrialState.FINISHED, float(i)) for i in range(6)]
    result = analyse(trials, metric="loss", scales={"x": LINEAR})
    assert sorted(names(result)) == ["extra", "x"]
    assert result.scales == {"x": LINEAR, "extra": LINEAR}


def test_param_scales_from_distribution_names():
    dists = {"a": SimpleNamespace(name="log_uniform_values"), "b": SimpleNamespace(name="categorical"),
             "c": SimpleNamespace(name="q_uniform"), "d": SimpleNamespace(name="inv_log_uniform"),
             "e": SimpleNamespace(name="constant")}
    assert param_scales(dists) == {"a": LOG, "b": CATEGORICAL, "c": LINEAR, "d": LOG, "e": LINEAR}


def test_param_levels_keep_the_files_order_for_categoricals_only():
    from mlflow_sweep.distributions import from_spec

    dists = {"opt": from_spec({"distribution": "categorical", "values": ["sgd", "adam", 3]}),
             "lr": from_spec({"distribution": "uniform", "min": 0.0, "max": 1.0})}
    assert param_levels(dists) == {"opt": ("sgd", "adam", 3)}
    trials = [Trial(i, {"opt": "adam"}, TrialState.FINISHED, float(i)) for i in range(3)]
    assert analyse(trials, metric="loss", levels=param_levels(dists)).levels == {"opt": ("sgd", "adam", 3)}


def test_rows_are_named_by_the_mlflow_param_names_flat_and_nested():
    """A flat dotted name and a nested block's leaf are rows as named, never re-nested."""
    from tests.unit.helpers import make_config

    config = make_config({"model.lr": {"min": 0.0, "max": 1.0}, "mixmethod": {"values": ["a", "b"]},
                          "opt": {"parameters": {"lr": {"min": 0.0, "max": 1.0}}}})
    rng = np.random.default_rng(3)
    trials = [Trial(i, {"model.lr": float(rng.uniform()), "mixmethod": "ab"[i % 2], "opt.lr": float(rng.uniform())},
                    TrialState.FINISHED, float(i), run_id=f"r{i}") for i in range(12)]
    result = analyse(trials, metric="loss", scales=param_scales(config.parameters))
    assert sorted(names(result)) == ["mixmethod", "model.lr", "opt.lr"]
