"""The stopping decision (policy.next_step): every rule once, from the trials alone."""
from __future__ import annotations

from dataclasses import replace

from mlflow_sweep.config import config_from_dict
from mlflow_sweep.policy import Done, Wait, next_step, sweep_state
from mlflow_sweep.trials import Proposal, Trial, TrialState


def _config(method: str = "grid", **extra):
    data = {"method": method, "command": "true", "parameters": {"x": {"values": [1, 2]}}, **extra}
    return config_from_dict(data, "test.yaml")


def _trial(index: int, x: int, state: TrialState = TrialState.FINISHED, metric: float | None = None) -> Trial:
    return Trial(index=index, params={"x": x}, state=state, metric=metric, point=x - 1)


def test_a_fresh_grid_proposes_its_first_point() -> None:
    assert next_step(_config(), [], seed=0) == Proposal(params={"x": 1}, point=0)


def test_run_cap_is_done_even_when_the_sampler_has_more() -> None:
    step = next_step(_config("random", run_cap=2), [_trial(0, 1), _trial(1, 2)], seed=0)
    assert step == Done("run_cap 2 reached")


def test_a_reached_target_is_done_but_a_failed_trial_never_reaches_it() -> None:
    config = _config("random", metric={"name": "loss", "target": 0.1})
    assert isinstance(next_step(config, [_trial(0, 1, TrialState.FAILED, 0.0)], seed=0), Proposal)
    assert next_step(config, [_trial(0, 1, metric=0.05)], seed=0) == Done("metric target 0.1 reached")


def test_an_exhausted_grid_waits_while_a_trial_runs_and_is_done_after() -> None:
    running = [_trial(0, 1), _trial(1, 2, TrialState.RUNNING)]
    assert next_step(_config(), running, seed=0) == Wait("every remaining grid point is held by a running trial")
    ended = [running[0], replace(running[1], state=TrialState.FINISHED)]
    assert next_step(_config(), ended, seed=0) == Done("every grid point is taken")


def test_sweep_state_is_done_only_when_nothing_runs_and_nothing_is_left() -> None:
    grid, capped = _config(), _config("random", run_cap=2)
    assert sweep_state(grid, [_trial(0, 1)], seed=0) == "running"
    assert sweep_state(grid, [_trial(0, 1), _trial(1, 2, TrialState.RUNNING)], seed=0) == "running"
    assert sweep_state(grid, [_trial(0, 1), _trial(1, 2, TrialState.FAILED)], seed=0) == "done"
    assert sweep_state(capped, [_trial(0, 1)], seed=0) == "running"
    assert sweep_state(capped, [_trial(0, 1), _trial(1, 2, TrialState.KILLED)], seed=0) == "done"
