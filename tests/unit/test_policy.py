"""The stopping decision (policy.next_step): every rule once, from the trials alone."""
from __future__ import annotations

from dataclasses import replace

from mlflow_sweep.config import config_from_dict
from mlflow_sweep.policy import (
    Done, Wait, control_change, counted, next_step, queue, retry_candidates, run_cap, sampler_view, sweep_state,
)
from mlflow_sweep.trials import Controls, Proposal, SweepPhase, Trial, TrialState


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


# -- lifecycle: stop, pause, cancel, update, requeue ---------------------------------------------

PAUSED, STOPPED, CANCELLED = (Controls(SweepPhase.PAUSED), Controls(SweepPhase.STOPPED),
                              Controls(SweepPhase.CANCELLED))


def test_stopped_and_cancelled_sweeps_hand_out_nothing_and_say_so() -> None:
    assert next_step(_config(), [], seed=0, controls=STOPPED) == Done("the sweep is stopped")
    assert next_step(_config(), [], seed=0, controls=CANCELLED) == Done("the sweep is cancelled")
    assert sweep_state(_config(), [_trial(0, 1, TrialState.RUNNING)], 0, STOPPED) == "stopped"
    assert sweep_state(_config(), [], 0, CANCELLED) == "cancelled"


def test_a_paused_sweep_waits_and_reads_as_paused_until_it_is_done() -> None:
    assert next_step(_config(), [], seed=0, controls=PAUSED) == \
        Wait("the sweep is paused (mlflow sweep resume goes on)")
    assert sweep_state(_config(), [], 0, PAUSED) == "paused"
    capped = _config("random", run_cap=1)
    assert next_step(capped, [_trial(0, 1)], seed=0, controls=PAUSED) == Done("run_cap 1 reached")
    assert sweep_state(capped, [_trial(0, 1)], 0, PAUSED) == "done"


def test_update_run_cap_replaces_the_configs_and_reopens_a_done_sweep() -> None:
    config, trials = _config("random", run_cap=2), [_trial(0, 1), _trial(1, 2)]
    assert sweep_state(config, trials, 0) == "done"
    raised = Controls(run_cap=3)
    assert sweep_state(config, trials, 0, raised) == "running"
    assert isinstance(next_step(config, trials, 0, raised), Proposal)
    assert next_step(config, [*trials, _trial(2, 1)], 0, raised) == Done("run_cap 3 reached")
    assert run_cap(config, raised) == 3 and run_cap(config) == 2
    grid = _config()  # a grid without run_cap runs its grid; with one, at most that many
    assert next_step(grid, [_trial(0, 1)], 0, Controls(run_cap=1)) == Done("run_cap 1 reached")


def _requeued(trial: Trial, reason: str = "interrupted") -> Trial:
    state = TrialState.KILLED if reason == "interrupted" else TrialState.FAILED
    return replace(trial, state=state, requeued=reason)


def test_a_requeued_point_comes_first_with_its_exact_params_and_does_not_count() -> None:
    config = _config("random", run_cap=2, parameters={"x": {"min": 0.0, "max": 1.0}})
    first = next_step(config, [], seed=5)
    trials = [Trial(0, {"x": 0.123}, point=None), _requeued(Trial(1, first.params))]
    step = next_step(config, trials, seed=5)
    assert step == Proposal(params=first.params, point=None, retry_of=1)
    assert len(counted(trials)) == 1 and [t.index for t in queue(trials)] == [1]
    rerun = [*trials, Trial(2, first.params, retry_of=1)]
    assert queue(rerun) == [] and next_step(config, rerun, seed=5) == Done("run_cap 2 reached")


def test_random_draws_new_points_by_fresh_draw_count_not_trial_index() -> None:
    config = _config("random", run_cap=9, parameters={"x": {"min": 0.0, "max": 1.0}})
    plain = [next_step(config, [Trial(i, {}) for i in range(n)], seed=3).params for n in range(3)]
    interrupted = [Trial(0, plain[0], requeued="interrupted", state=TrialState.KILLED),
                   Trial(1, plain[1]), Trial(2, plain[0], retry_of=0)]
    assert next_step(config, interrupted, seed=3).params == plain[2]


def test_grid_keeps_a_queued_point_held_and_frees_nothing_twice() -> None:
    config = _config()  # points x=1 (0), x=2 (1)
    trials = [_requeued(_trial(0, 1, TrialState.RUNNING)), _trial(1, 2, TrialState.RUNNING)]
    assert next_step(config, trials, 0) == Proposal(params={"x": 1}, point=0, retry_of=0)
    rerun = [*trials, Trial(2, {"x": 1}, point=0, retry_of=0)]
    assert next_step(config, rerun, 0) == Wait("every remaining grid point is held by a running trial")
    history, draws = sampler_view(rerun)
    assert ([t.index for t in history], draws) == ([1, 2], 2)
    assert sweep_state(config, trials[:1], 0) == "running"  # queued, nothing running: not done


def test_bayes_sees_a_queued_point_as_pending_and_its_rerun_alone_after() -> None:
    trials = [_requeued(Trial(0, {"x": 0.5}, state=TrialState.RUNNING, metric=3.0), "retry")]
    history, draws = sampler_view(trials)
    assert [(t.state, t.metric) for t in history] == [(TrialState.RUNNING, None)] and draws == 1


def test_retry_names_failed_trials_once_and_not_a_dead_grid_trial() -> None:
    dead = replace(_trial(1, 2, TrialState.FAILED), dead=True)
    trials = [_trial(0, 1, TrialState.FAILED), dead, _trial(2, 1, TrialState.KILLED),
              _requeued(_trial(3, 1), "retry")]
    assert retry_candidates(_config(), trials) == [0]
    assert retry_candidates(_config("random"), trials) == [0, 1]


def test_control_changes_and_refusals() -> None:
    running, stopped = Controls(), STOPPED
    assert control_change("stop", running, SweepPhase.RUNNING) is SweepPhase.STOPPED
    assert control_change("stop", running, SweepPhase.DONE) == "the sweep is done; nothing to stop"
    assert control_change("stop", stopped, SweepPhase.STOPPED) == "the sweep is already stopped"
    assert control_change("pause", stopped, SweepPhase.STOPPED) == \
        "the sweep is stopped; 'mlflow sweep resume' starts it again"
    assert control_change("cancel", stopped, SweepPhase.STOPPED) is SweepPhase.CANCELLED
    assert control_change("stop", CANCELLED, SweepPhase.CANCELLED) == \
        "the sweep is cancelled; 'mlflow sweep resume' starts it again"
    assert control_change("resume", PAUSED, SweepPhase.PAUSED) is SweepPhase.RUNNING
    assert control_change("resume", CANCELLED, SweepPhase.CANCELLED) is SweepPhase.RUNNING
    assert control_change("resume", running, SweepPhase.RUNNING) == "the sweep is already running"
    assert control_change("resume", running, SweepPhase.DONE).startswith("the sweep is done; 'mlflow sweep update")


def test_bayes_never_skips_a_design_row_for_an_interrupted_trial() -> None:
    from mlflow_sweep import samplers

    config = _config("bayes", run_cap=9, metric={"name": "loss"}, parameters={"x": {"min": 0.0, "max": 1.0}})
    row0 = next_step(config, [], seed=4)
    interrupted = [Trial(0, row0.params, TrialState.KILLED, requeued="interrupted"),
                   Trial(1, row0.params, retry_of=0)]
    step = next_step(config, interrupted, seed=4)
    assert step == samplers.propose(config, [interrupted[1]], 4, 1)  # design row 1, not row 2
    assert step.params != row0.params and step.retry_of is None

