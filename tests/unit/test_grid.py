"""Grid sampler: the point order, DONE, held points, dead trials and nested names."""
from __future__ import annotations

import dataclasses
import itertools

import pytest

from mlflow_sweep.samplers import grid, propose
from mlflow_sweep.trials import DONE, Proposal, Trial, TrialState
from tests.unit.helpers import make_config

PARAMS = {
    "lr": {"values": [0.1, 0.01]},
    "model": {"parameters": {"depth": {"min": 1, "max": 3}, "act": {"value": "relu"}}},
    "flag": {"values": [False, True, 0]},
    "step": {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.5},
}


def _run_to_done(config, states=TrialState.FINISHED) -> list[Trial]:
    history: list[Trial] = []
    while (p := propose(config, history, seed=0, index=len(history))) is not DONE:
        history.append(Trial(index=len(history), params=p.params, state=states, point=p.point))
        assert len(history) <= 1000
    return history


def test_enumeration_until_done_is_the_cartesian_product_in_parameter_order() -> None:
    config = make_config(PARAMS, "grid")
    got = [tuple(t.params.values()) for t in _run_to_done(config)]
    want = list(itertools.product([0.1, 0.01], [1, 2, 3], ["relu"], [False, True, 0], [0.0, 0.5, 1.0]))
    assert [tuple(map(repr, g)) for g in got] == [tuple(map(repr, w)) for w in want]
    assert list(config.parameters) == ["lr", "model.depth", "model.act", "flag", "step"]
    assert config.grid_size() == len(want) == 54


def test_points_are_indices_and_round_trip() -> None:
    config = make_config(PARAMS, "grid")
    history = _run_to_done(config)
    assert [t.point for t in history] == list(range(54))
    assert all(grid.point_of(config, t.params) == t.point for t in history)
    assert grid.point_of(config, {**history[0].params, "flag": None}) is None


@pytest.mark.parametrize("state", list(TrialState))
def test_live_trials_hold_their_point_in_any_state(state: TrialState) -> None:
    config = make_config({"a": {"values": [1, 2, 3]}}, "grid")
    history = [Trial(index=0, params={"a": 1}, state=state, point=0)]
    assert propose(config, history, 0, 1) == Proposal(params={"a": 2}, point=1)


def test_running_trials_are_never_reproposed() -> None:
    config = make_config({"a": {"values": [1, 2, 3]}, "b": {"values": ["x", "y"]}}, "grid")
    history = _run_to_done(config, states=TrialState.RUNNING)
    assert len({t.point for t in history}) == len(history) == 6
    assert propose(config, history, 0, 6) is DONE


def test_a_dead_trials_point_comes_back_first() -> None:
    config = make_config({"a": {"values": [1, 2, 3]}}, "grid")
    history = [
        Trial(index=0, params={"a": 1}, state=TrialState.FAILED, point=0, dead=True),
        Trial(index=1, params={"a": 2}, state=TrialState.RUNNING, point=1),
    ]
    assert propose(config, history, 0, 2) == Proposal(params={"a": 1}, point=0)
    history.append(Trial(index=2, params={"a": 1}, point=0))
    assert propose(config, history, 0, 3) == Proposal(params={"a": 3}, point=2)


def test_trials_without_a_point_are_matched_by_value() -> None:
    config = make_config({"a": {"values": [0, False, ""]}}, "grid")
    history = [Trial(index=0, params={"a": False})]
    assert propose(config, history, 0, 1) == Proposal(params={"a": 0}, point=0)
    history.append(Trial(index=1, params={"a": 0}))
    assert propose(config, history, 0, 2).params == {"a": ""}


def test_out_of_order_holes_are_filled_lowest_first() -> None:
    config = make_config({"a": {"min": 0, "max": 9}}, "grid")
    history = [Trial(index=i, params={}, point=p) for i, p in enumerate([0, 1, 2, 5, 7])]
    assert [propose(config, history[:n], 0, n).point for n in (0, 3, 5)] == [0, 3, 3]


def test_infinite_parameters_are_refused() -> None:
    # config.py reports this to the user; the sampler still refuses rather than loop forever
    config = dataclasses.replace(make_config({"a": {"min": 0.0, "max": 1.0}}), method="grid")
    with pytest.raises(ValueError, match=r"'a' \(uniform\(min=0.0, max=1.0\)\) has no finite grid"):
        propose(config, [], 0, 0)
