"""The contract every sampler keeps (optuna's base sampler suite): grid, random, bayes and Optuna's methods.

Optuna's methods need the ``optuna`` extra (and PyTorch for ``gp``), which the test install has.
"""
from __future__ import annotations

import json

import pytest

from mlflow_sweep.samplers import propose
from mlflow_sweep.trials import DONE, Trial, TrialState
from tests.unit.helpers import make_config

METHODS = ["grid", "random", "bayes", "tpe", "gp", "cmaes", "nsga2"]
SEVERAL = ["grid", "random", "tpe", "gp", "nsga2"]  # the methods that take metrics:

FINITE = {
    "bs": {"values": [16, 32, 64, 128]},
    "depth": {"min": 1, "max": 6},
    "drop": {"distribution": "q_uniform", "min": 0.0, "max": 0.5, "q": 0.1},
    "model": {"parameters": {"act": {"values": ["relu", "tanh", ""]}, "width": {"value": 8}}},
}
CONTINUOUS = {
    "lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 0.1},
    "mom": {"min": 0.0, "max": 1.0},
    "wd": {"distribution": "q_log_uniform_values", "min": 1, "max": 100, "q": 1},
    **FINITE,
}
METRIC = {"name": "loss", "goal": "minimize"}
METRICS = [{"name": "loss", "goal": "minimize"}, {"name": "size", "goal": "maximize"}]


def _score(params: dict) -> float:
    return sum(float(v) for v in params.values() if isinstance(v, (int, float))) / 100


CASES = [(m, "one") for m in METHODS] + [(m, "several") for m in SEVERAL]


@pytest.fixture(params=CASES, ids=[f"{m}-{k}" for m, k in CASES])
def case(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param


@pytest.fixture
def method(case: tuple[str, str]) -> str:
    return case[0]


@pytest.fixture
def objectives(case: tuple[str, str]) -> str:
    return case[1]


@pytest.fixture
def config(method: str, objectives: str):
    space = FINITE if method == "grid" else CONTINUOUS
    if objectives == "several":
        return make_config(space, method, metrics=METRICS)
    return make_config(space, method, metric=METRIC)


def _history(config, n: int, state: TrialState, seed: int = 0) -> list[Trial]:
    history: list[Trial] = []
    for i in range(n):
        p = propose(config, history, seed, i)
        done = state is TrialState.FINISHED
        metric = _score(dict(p.params)) if done and not config.metrics else None
        metrics = {"loss": _score(dict(p.params)), "size": float(i % 3)} if done and config.metrics else None
        history.append(Trial(index=i, params=p.params, state=state, metric=metric, point=p.point, metrics=metrics))
    return history


def _assert_in_support(config, params) -> None:
    assert list(params) == list(config.parameters)
    for name, dist in config.parameters.items():
        assert dist.contains(params[name]), (name, params[name], dist.describe())


class TestSamplerContract:
    """Every method in METHODS runs every test here."""

    def test_empty_history_gives_a_proposal_in_support(self, config) -> None:
        _assert_in_support(config, propose(config, [], 0, 0).params)

    def test_proposals_stay_in_support_as_history_grows(self, config) -> None:
        for trial in _history(config, 8, TrialState.FINISHED):
            _assert_in_support(config, trial.params)

    def test_all_failed_history_still_proposes(self, config) -> None:
        history = _history(config, 5, TrialState.FAILED)
        _assert_in_support(config, propose(config, history, 0, 5).params)

    def test_same_seed_same_proposals(self, config) -> None:
        runs = [[dict(t.params) for t in _history(config, 6, TrialState.FINISHED, seed=7)]
                for _ in range(2)]
        assert runs[0] == runs[1]

    def test_different_seed_different_proposals(self, config, method: str) -> None:
        first = [json.dumps(dict(t.params)) for t in _history(config, 6, TrialState.FINISHED, 1)]
        other = [json.dumps(dict(t.params)) for t in _history(config, 6, TrialState.FINISHED, 2)]
        # The grid's order is fixed by design: the seed does not enter it.
        assert (first == other) is (method == "grid")

    def test_running_trials_are_not_proposed_again(self, config, method: str) -> None:
        running = _history(config, 6, TrialState.RUNNING)
        seen = {json.dumps(dict(t.params)) for t in running}
        if method != "random":  # random ignores history by design (agents agree); bayes: pending
            assert len(seen) == len(running)
            assert json.dumps(dict(propose(config, running, 0, 6).params)) not in seen

    def test_proposals_are_json_serialisable(self, config) -> None:
        for trial in _history(config, 6, TrialState.FINISHED):
            assert json.loads(json.dumps(dict(trial.params))) == dict(trial.params)
            assert trial.point is None or isinstance(trial.point, int)

    def test_only_grid_says_done(self, config, method: str) -> None:
        history = _history(config, 3, TrialState.FINISHED)
        assert (propose(config, history, 0, 3) is DONE) is False
        if method == "grid":
            small = make_config({"a": {"values": [1]}}, "grid", metric=METRIC)
            assert propose(small, _history(small, 1, TrialState.FINISHED), 0, 1) is DONE

    def test_a_model_past_its_start_stays_in_support_and_seeded(self, config, method: str) -> None:
        """Enough finished trials that every model fits (Optuna's TPE and GP start after 10), some failed
        and some running: the proposal is in support, and the same for the same (seed, index)."""
        history = _history(config, 12, TrialState.FINISHED)
        history[3] = Trial(3, history[3].params, TrialState.FAILED)
        history += [Trial(12 + i, t.params, TrialState.RUNNING) for i, t in enumerate(_history(config, 2,
                                                                                             TrialState.RUNNING, 5))]
        first = propose(config, history, 3, 14)
        _assert_in_support(config, first.params)
        assert propose(config, history, 3, 14) == first
        assert json.loads(json.dumps(dict(first.params))) == dict(first.params)
