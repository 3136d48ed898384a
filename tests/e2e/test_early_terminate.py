"""Hyperband early termination end to end: two real agents stop the diverging trials.

The sweep is a grid over examples/train_steps.py's learning rate, in an order that makes every
outcome certain even though the agents run side by side and a cut pools only trials that have
ended (docs/early_terminate.md):

    trial  lr      loss curve               outcome
    0      0.001   0.1 + 1/(t+1)            FINISHED  (runs beside 1; they tie, so neither is below the other)
    1      0.1     0.1 + 1/(t+1)            FINISHED
    2      4.0     2 + 2t (diverges)        KILLED at band 3 (claimed after 0 or 1 ended)
    3      0.01    1/(t+1)                  FINISHED  (the best: better than every trial before it)
    4      8.0     2 + 4t (diverges)        KILLED at band 3

``min_iter: 3, eta: 3`` gives bands 3, 9, 27; 9 steps of 0.25 s leave 1.5 s between a trial's
3rd and 9th value, against a check every 0.3 s, so a diverging trial is judged at band 3.
"""
from __future__ import annotations

import sys

import pytest

from mlflow_sweep.settings import early_terminate_interval
from mlflow_sweep.errors import SweepError

from tests.conftest import EXAMPLES
from tests.e2e.agents import agents, child_runs, init_sweep, ledger_events, logs, wait_all

pytestmark = [pytest.mark.e2e]

LRS = [0.001, 0.1, 4.0, 0.01, 8.0]
DIVERGING = {4.0, 8.0}
STEPS = 9


def _sweep(store) -> str:
    return init_sweep(store, {
        "method": "grid", "run_cap": len(LRS),
        "metric": {"name": "loss", "goal": "minimize"},
        "early_terminate": {"type": "hyperband", "min_iter": 3, "eta": 3},
        "command": f"${{interpreter}} {EXAMPLES / 'train_steps.py'} --lr ${{lr}} --steps {STEPS} --sleep 0.25",
        "parameters": {"lr": {"values": LRS}},
    })


@pytest.mark.timeout(240)
def test_two_agents_stop_the_diverging_trials_at_the_first_band(store):
    sweep_id = _sweep(store)
    env = {**store.env, "MLFLOW_SWEEP_EARLY_TERMINATE_INTERVAL": "0.3", "MLFLOW_SWEEP_KILL_GRACE": "5"}
    with agents(store, sweep_id, 2, env=env) as procs:
        codes = wait_all(procs, timeout=200)  # generous: ~20 s idle, ~60 s on a loaded machine
    runs = child_runs(store, sweep_id)
    client = store.client()
    ends = {e["trial"]: e for e in ledger_events(store, sweep_id) if e.get("event") == "end"}
    outcome = {float(r.data.params["lr"]): (r.info.status, r.data.tags.get("sweep.stopped_early"))
               for r in runs}
    expected = {lr: ("KILLED", "3") if lr in DIVERGING else ("FINISHED", None) for lr in LRS}
    assert (codes, len(runs), outcome) == ([0, 0], len(LRS), expected), logs(store)

    for run in runs:
        lr, trial = float(run.data.params["lr"]), int(run.data.tags["sweep.trial"])
        end, logged = ends[trial], [m.value for m in client.get_metric_history(run.info.run_id, "loss")]
        if lr in DIVERGING:
            # stopped after its 3rd value and before its 9th; its metric is its best value (2.0,
            # metric.summary) and the ledger holds what it logged, for later cuts
            assert (end["state"], end["stopped_at"], 3 <= len(logged) < 9, end["metric"]) == \
                ("KILLED", 3, True, 2.0), logs(store)
        else:
            assert (end["state"], end["stopped_at"], len(logged)) == ("FINISHED", None, STEPS), logs(store)
        assert end["history"] == pytest.approx(logged)
    best = min(ends.values(), key=lambda e: e["metric"])
    assert (LRS[best["trial"]], best["metric"]) == (0.01, pytest.approx(1 / STEPS))
    assert "below the hyperband cut at iteration 3" in logs(store)


@pytest.mark.parametrize(("raw", "expected"), [(None, 5.0), ("0.3", 0.3), ("soon", "a number of seconds, but got 'soon'"),
                                             ("0", "positive, but got '0'")])
def test_check_interval_comes_from_the_environment(monkeypatch, raw, expected) -> None:
    # the agent reads it once, before claiming, so a bad value costs no trial
    if raw is None:
        monkeypatch.delenv("MLFLOW_SWEEP_EARLY_TERMINATE_INTERVAL", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_SWEEP_EARLY_TERMINATE_INTERVAL", raw)
    if isinstance(expected, float):
        assert early_terminate_interval() == expected
    else:
        with pytest.raises(SweepError, match=f"MLFLOW_SWEEP_EARLY_TERMINATE_INTERVAL must be {expected}"):
            early_terminate_interval()


def test_example_script_curves_never_cross() -> None:
    # the property the bench's "same best metric" rests on: a better rate is better at every step
    sys.path.insert(0, str(EXAMPLES))
    try:
        from train_steps import loss
    finally:
        sys.path.remove(str(EXAMPLES))
    rates = [0.0001, 0.001, 0.003, 0.01, 0.05, 0.3, 1.0, 1.5, 4.0, 10.0]
    gaps = sorted(rates, key=lambda lr: loss(lr, 0))
    assert all(sorted(rates, key=lambda lr: loss(lr, t)) == gaps for t in range(1, 40))
