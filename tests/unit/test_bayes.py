"""Bayes sampler: the distribution→skopt table, imputation, pending trials, convergence."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlflow_sweep.distributions import from_spec
from mlflow_sweep.samplers import bayes, outcomes
from mlflow_sweep.samplers import random as random_search
from mlflow_sweep.trials import Trial, TrialState
from tests.unit.helpers import make_config

EVERY = {
    "const": {"value": 0},
    "cat": {"values": [0, 0.0, False, "", "x; touch PWNED", [1, 2]]},
    "catp": {"values": ["a", "b"], "probabilities": [0.9, 0.1]},
    "iu": {"distribution": "int_uniform", "min": -3, "max": 4},
    "u": {"distribution": "uniform", "min": -1.0, "max": 2.0},
    "qu": {"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 0.1},
    "qui": {"distribution": "q_uniform", "min": 0, "max": 100, "q": 5},
    "lu": {"distribution": "log_uniform", "min": -9.0, "max": -2.0},
    "qlu": {"distribution": "q_log_uniform", "min": 0.0, "max": 6.0, "q": 2},
    "luv": {"distribution": "log_uniform_values", "min": 1e-5, "max": 0.1},
    "qluv": {"distribution": "q_log_uniform_values", "min": 1.0, "max": 256.0, "q": 1},
    "ilu": {"distribution": "inv_log_uniform", "min": 1.0, "max": 5.0},
    "iluv": {"distribution": "inv_log_uniform_values", "min": 0.001, "max": 0.5},
    "n": {"distribution": "normal", "mu": 1.0, "sigma": 2.0},
    "qn": {"distribution": "q_normal", "mu": 0.0, "sigma": 10.0, "q": 0.5},
    "ln": {"distribution": "log_normal", "mu": 0.0, "sigma": 1.0},
    "qln": {"distribution": "q_log_normal", "mu": 2.0, "sigma": 0.5, "q": 1},
    "b": {"distribution": "beta", "a": 2.0, "b": 5.0},
    "qb": {"distribution": "q_beta", "a": 0.5, "b": 0.5, "q": 0.25},
}
QUADRATIC = {"x": {"min": -1.0, "max": 1.0}, "y": {"min": -1.0, "max": 1.0}}
OPTIMUM = (0.3, -0.2)


def _quadratic(params: dict) -> float:
    return (params["x"] - OPTIMUM[0]) ** 2 + (params["y"] - OPTIMUM[1]) ** 2


def _config(parameters=QUADRATIC, **metric):
    return make_config(parameters, "bayes", metric={"name": "loss", **metric})


def _run(config, objective, n: int, seed: int = 0, sampler=bayes) -> list[Trial]:
    history: list[Trial] = []
    for i in range(n):
        params = sampler.propose(config, history, seed, i).params
        history.append(Trial(index=i, params=params, state=TrialState.FINISHED, metric=objective(params)))
    return history


def _finished(params: dict, metric: float | None, index: int = 0, **kw) -> Trial:
    return Trial(index=index, params=params, state=kw.pop("state", TrialState.FINISHED), metric=metric, **kw)


# --- the distribution → skopt table ----------------------------------------------------------

def test_every_distribution_but_constant_is_a_dimension() -> None:
    config = _config(EVERY)
    dims, fixed = bayes._dims(config.parameters)
    assert fixed == {"const": 0}
    assert [d.name for d in dims] == [n for n in EVERY if n != "const"]
    assert set(bayes._TABLE) == {d.name for d in config.parameters.values()} - {"constant"}


def test_proposals_over_every_distribution_stay_in_support_with_native_types() -> None:
    config = _config(EVERY)
    history = _run(config, lambda p: float(p["u"]) ** 2 + p["iu"], 8)
    for trial in history:
        assert list(trial.params) == list(EVERY)
        for name, dist in config.parameters.items():
            assert dist.contains(trial.params[name]), (name, trial.params[name])
        assert json.loads(json.dumps(dict(trial.params))) == dict(trial.params)
        for name in ("iu", "qui", "qlu", "qluv", "qln"):
            assert type(trial.params[name]) is int, name


def test_falsy_categorical_values_come_back_exactly() -> None:
    config = _config({"cat": {"values": [0, 0.0, False, ""]}})
    seen = [t.params["cat"] for t in _run(config, lambda p: 1.0, 4)]
    assert sorted(json.dumps(v) for v in seen) == ['""', "0", "0.0", "false"]


_SPECS = st.one_of(
    st.builds(lambda lo, w, q: {"distribution": "q_uniform", "min": lo, "max": lo + w, "q": q},
              st.floats(-1e3, 1e3), st.floats(1e-2, 1e3), st.sampled_from([0.001, 0.1, 0.25, 1, 5])),
    st.builds(lambda lo, w: {"distribution": "int_uniform", "min": lo, "max": lo + w},
              st.integers(-100, 100), st.integers(1, 1000)),
    st.builds(lambda lo, w: {"distribution": "log_uniform", "min": lo, "max": lo + w},
              st.floats(-10, 5), st.floats(0.1, 10)),
    st.builds(lambda lo, f, q: {"distribution": "q_log_uniform_values", "min": lo, "max": lo * f, "q": q},
              st.floats(1e-3, 100), st.floats(1.5, 1e4), st.sampled_from([0.01, 1, 3])),
    st.builds(lambda lo, w: {"distribution": "inv_log_uniform", "min": lo, "max": lo + w},
              st.floats(-3, 5), st.floats(0.1, 8)),
    st.builds(lambda lo, f: {"distribution": "inv_log_uniform_values", "min": lo, "max": lo * f},
              st.floats(1e-5, 10), st.floats(1.5, 1e4)),
    st.builds(lambda mu, s, q: {"distribution": "q_normal", "mu": mu, "sigma": s, "q": q},
              st.floats(-100, 100), st.floats(0.01, 100), st.sampled_from([0.1, 1, 2])),
    st.builds(lambda mu, s: {"distribution": "log_normal", "mu": mu, "sigma": s},
              st.floats(-5, 5), st.floats(0.01, 2)),
    st.builds(lambda mu, s, q: {"distribution": "q_log_normal", "mu": mu, "sigma": s, "q": q},
              st.floats(-2, 5), st.floats(0.01, 1.5), st.sampled_from([0.5, 1])),
    st.builds(lambda a, b, q: {"distribution": "q_beta", "a": a, "b": b, "q": q},
              st.floats(0.1, 20), st.floats(0.1, 20), st.sampled_from([0.05, 0.1, 1])),
)


@settings(max_examples=150, deadline=None)
@given(_SPECS, st.floats(0.0, 1.0))
def test_any_point_of_the_box_decodes_into_support(spec: dict, u: float) -> None:
    dist = from_spec(spec)
    (dim,), _ = bayes._dims({"p": dist})
    value = dim.decode(bayes._unit_column(dim, [u])[0])
    assert dist.contains(value), (spec, u, value)
    wants_int = spec["distribution"] == "int_uniform" or isinstance(spec.get("q"), int)
    assert isinstance(value, int) is wants_int


@pytest.mark.parametrize("name", [n for n in EVERY if n not in ("const", "cat", "catp")])
def test_samples_lie_in_the_box_and_round_trip(name: str) -> None:
    """The table agrees with distributions.py: what random search draws, bayes can place."""
    dist = _config(EVERY).parameters[name]
    (dim,), _ = bayes._dims({name: dist})
    lo, hi = dim.dimension.bounds
    rng = np.random.default_rng(0)
    for value in (dist.sample(rng) for _ in range(300)):
        x = dim.encode(value)
        if dist.name.endswith("normal") and not lo <= value <= hi:
            continue  # beyond mu ± 3 sigma: clipped into the box by design
        assert lo - 1e-9 <= value <= hi + 1e-9 or dist.name.startswith("q_"), (value, lo, hi)
        assert math.isclose(dim.decode(x), value, rel_tol=1e-9, abs_tol=1e-12), (value, x)


# --- the history: imputation and pending trials ------------------------------------------------

def _targets(history: list[Trial], **metric) -> list[float | None]:
    return [v if v is None else v[0] for _, v in outcomes.targets(history, (_config(**metric).metric,))]


def _p(x: float) -> dict:
    return {"x": x, "y": 0.0}


@pytest.mark.parametrize("impute, expected", [("worst", 5.0), ("best", 1.0), ("latest", 5.0)])
def test_a_failed_trial_without_a_value_is_imputed(impute: str, expected: float) -> None:
    history = [_finished(_p(0.1), 1.0), _finished(_p(0.2), 5.0),
               _finished(_p(0.3), None, state=TrialState.FAILED)]
    assert _targets(history, impute=impute) == [1.0, 5.0, expected]


@pytest.mark.parametrize("impute, expected", [("worst", 5.0), ("best", 2.0), ("latest", 2.0)])
def test_a_failed_trial_with_its_own_value_follows_w_and_b(impute: str, expected: float) -> None:
    history = [_finished(_p(0.1), 1.0), _finished(_p(0.2), 5.0),
               _finished(_p(0.3), 2.0, state=TrialState.KILLED)]
    assert _targets(history, impute=impute) == [1.0, 5.0, expected]


def test_maximize_negates_and_worst_is_the_lowest_value() -> None:
    history = [_finished(_p(0.1), 1.0), _finished(_p(0.2), 5.0), _finished(_p(0.3), None)]
    assert _targets(history, goal="maximize") == [-1.0, -5.0, -1.0]


def test_running_is_pending_dead_is_failed_and_hyperband_stopped_keeps_its_value() -> None:
    history = [_finished(_p(0.1), 1.0), _finished(_p(0.2), 5.0),
               _finished(_p(0.3), None, state=TrialState.RUNNING),
               _finished(_p(0.4), 0.5, state=TrialState.FAILED, dead=True),
               _finished(_p(0.5), 3.0, state=TrialState.KILLED, stopped_at=3)]
    assert _targets(history) == [1.0, 5.0, None, 5.0, 3.0]


def test_all_failed_history_still_proposes_in_support() -> None:
    config = _config()
    for impute in ("worst", "best", "latest"):
        cfg = _config(impute=impute)
        history = [Trial(index=i, params=bayes.propose(cfg, [], 0, i).params, state=TrialState.FAILED)
                   for i in range(8)]
        params = bayes.propose(cfg, history, 0, 8).params
        assert all(config.parameters[n].contains(v) for n, v in params.items())


def test_empty_history_proposes_at_any_index() -> None:
    config = _config(EVERY)
    for index in (0, bayes.N_DESIGN, 50):
        params = bayes.propose(config, [], 0, index).params
        assert all(config.parameters[n].contains(v) for n, v in params.items())


def test_a_running_trial_at_the_proposed_point_changes_the_proposal() -> None:
    config = _config()
    history = _run(config, _quadratic, 10)
    first = bayes.propose(config, history, 0, 10).params
    running = Trial(index=10, params=first, state=TrialState.RUNNING)
    second = bayes.propose(config, [*history, running], 0, 10).params
    assert second != first
    assert math.dist((first["x"], first["y"]), (second["x"], second["y"])) > 1e-3


def test_the_believer_keeps_the_fitted_model_where_nothing_is_pending() -> None:
    """_condition leans on skopt's kernel layout (signal + WhiteKernel); this pins it."""
    from skopt.space import Space

    config = _config()
    dims, _ = bayes._dims(config.parameters)
    X = [[float(v) for v in t.params.values()] for t in _run(config, _quadratic, 12)]
    y = np.array([_quadratic({"x": a, "y": b}) for a, b in X])
    space = Space([d.dimension for d in dims])
    model = bayes._fit(space, X, y, 0)
    believer = bayes._condition(model, space.transform(X), list(y))
    probe = space.transform([[0.0, 0.0], [0.9, -0.9], X[0]])
    for a, b in zip(model.predict(probe, return_std=True), believer.predict(probe, return_std=True)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


def test_agents_in_parallel_propose_distinct_points() -> None:
    config = _config()
    history = _run(config, _quadratic, 8)
    for i in range(8, 12):
        params = bayes.propose(config, history, 0, i).params
        history.append(Trial(index=i, params=params, state=TrialState.RUNNING))
    running = [(t.params["x"], t.params["y"]) for t in history[8:]]
    assert min(math.dist(a, b) for i, a in enumerate(running) for b in running[:i]) > 1e-3


def test_parallel_agents_take_distinct_design_rows() -> None:
    config = _config(EVERY)
    rows = [json.dumps(dict(bayes.propose(config, [], 5, i).params)) for i in range(bayes.N_DESIGN)]
    assert len(set(rows)) == bayes.N_DESIGN


def test_a_small_discrete_space_is_covered_without_repeats() -> None:
    config = _config({"a": {"min": 1, "max": 4}, "b": {"values": ["p", "q"]}})
    history = _run(config, lambda p: p["a"] + (p["b"] == "q"), 8)
    assert len({(t.params["a"], t.params["b"]) for t in history}) == 8


# --- reproducibility, goal and convergence -----------------------------------------------------

def test_same_seed_same_proposals_and_another_seed_others() -> None:
    config = _config()
    runs = [[dict(t.params) for t in _run(config, _quadratic, 9, seed)] for seed in (3, 3, 4)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_converges_on_a_quadratic_and_beats_random_search() -> None:
    config = _config()
    bayes_best = min(t.metric for t in _run(config, _quadratic, 20))
    random_best = [min(t.metric for t in _run(config, _quadratic, 20, s, random_search)) for s in range(40)]
    assert bayes_best < 1e-3
    assert bayes_best < np.percentile(random_best, 10)


def test_maximize_is_honoured() -> None:
    config = _config(goal="maximize")
    history = _run(config, lambda p: -_quadratic(p), 20)
    best = max(history, key=lambda t: t.metric)
    assert math.dist((best.params["x"], best.params["y"]), OPTIMUM) < 0.05


def test_log_ei_and_its_gradient_match_the_gp_and_finite_differences() -> None:
    """acquisition.posterior reproduces the GP's predict, and its log EI climbs with a true gradient."""
    from skopt.space import Space

    from mlflow_sweep.samplers import acquisition

    config = _config()
    dims, _ = bayes._dims(config.parameters)
    rng = np.random.default_rng(0)
    X = [[float(a), float(b)] for a, b in rng.uniform(-1, 1, (15, 2))]
    y = np.array([_quadratic({"x": a, "y": b}) for a, b in X])
    space = Space([d.dimension for d in dims])
    model = bayes._fit(space, X, y, 0)
    Q = rng.random((6, 2))
    mean, std = model.predict(Q, return_std=True)
    ours = acquisition.posterior(model, Q)
    assert np.allclose(ours[0], mean, atol=1e-8) and np.allclose(ours[1], std, rtol=1e-3, atol=1e-6)
    value, grad = acquisition.log_ei(model, Q, float(y.min()), grad=True)
    step = 1e-6
    numeric = np.column_stack([(acquisition.log_ei(model, Q + step * np.eye(2)[j], float(y.min())) - value) / step
                               for j in range(2)])
    assert np.allclose(grad, numeric, rtol=2e-2, atol=1e-3)
    moved, climbed = acquisition.climb(model, Q, np.array([True, True]), float(y.min()))
    assert np.all(climbed >= value - 1e-9) and np.all((moved >= 0) & (moved <= 1))


def test_training_set_keeps_the_best_and_a_seeded_sample() -> None:
    obs = [([float(i)], float(i)) for i in range(200)]
    picked = bayes._training_set(obs, np.random.default_rng(0))
    assert len(picked) == bayes.TRAIN_CAP
    assert picked[: bayes.TRAIN_BEST] == obs[: bayes.TRAIN_BEST]
    assert picked == bayes._training_set(obs, np.random.default_rng(0))


def test_preload_imports_what_a_proposal_needs() -> None:
    """In a fresh interpreter: this session imported skopt long ago, so here the check could not fail."""
    code = ("import json, sys\nfrom mlflow_sweep.samplers import bayes\n"
            "needed = ['skopt', 'sklearn', 'threadpoolctl']\n"
            "before = [m for m in needed if m in sys.modules]\nbayes.preload()\n"
            "print(json.dumps([before, [m for m in needed if m in sys.modules]]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout
    assert json.loads(out) == [[], ["skopt", "sklearn", "threadpoolctl"]]
