"""Random sampler: trial k depends on (seed, k) only."""
from __future__ import annotations

import json

from mlflow_sweep.samplers import propose
from mlflow_sweep.samplers.random import trial_rng
from mlflow_sweep.trials import Trial, TrialState
from tests.unit.helpers import make_config

PARAMS = {
    "lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 0.1},
    "bs": {"values": [16, 32, 64]},
    "opt": {"parameters": {"momentum": {"min": 0.0, "max": 1.0}, "nesterov": {"values": [True, False]}}},
    "layers": {"min": 1, "max": 8},
}
CONFIG = make_config(PARAMS, "random")


def _params(seed: int, index: int, history=()) -> dict:
    return dict(propose(CONFIG, list(history), seed, index).params)


def test_same_seed_and_index_give_the_same_params_whatever_the_history() -> None:
    history = [Trial(index=i, params=_params(1, i), state=TrialState.FAILED) for i in range(5)]
    assert _params(1, 7) == _params(1, 7, history)


def test_trials_drawn_in_any_order_by_any_agent_agree() -> None:
    one_agent = [_params(3, k) for k in range(20)]
    eight_agents = {k: _params(3, k) for k in reversed(range(20))}
    assert one_agent == [eight_agents[k] for k in range(20)]


def test_different_seeds_or_indices_differ() -> None:
    assert _params(1, 0) != _params(2, 0)
    assert len({json.dumps(_params(1, k)) for k in range(20)}) == 20


def test_params_use_flat_dotted_names_in_config_order_with_native_types() -> None:
    params = _params(0, 0)
    assert list(params) == ["lr", "bs", "opt.momentum", "opt.nesterov", "layers"]
    assert [type(v) for v in params.values()] == [float, int, float, bool, int]


def test_negative_and_huge_seeds_work() -> None:
    assert trial_rng(-1, 0).random() != trial_rng(1, 0).random()
    assert _params(2**70, 3) == _params(2**70, 3)
