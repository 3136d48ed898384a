"""Hyperband early termination end to end: an agent stops a diverging command at the first band.

Every decision of the cut (bands, pools, the watch thread's verdict, function trials) is tested in
milliseconds in tests/unit; this test proves the real path: the metric read back from MLflow while
the command runs, SIGTERM to its process group, the child run KILLED with ``sweep.stopped_early``.

One agent runs a grid in order: two good rates finish (their histories set the cut), then a
diverging one logs three values and waits there until it is stopped. It can only be judged at
band 3 (``min_iter: 3, eta: 3``), whenever the check comes: no timing window.
"""
from __future__ import annotations

import sys
import textwrap

import pytest

from mlflow_sweep.errors import SweepError
from mlflow_sweep.settings import early_terminate_interval
from tests.conftest import EXAMPLES
from tests.e2e.agents import child_runs, init_sweep, ledger_events, logs, start_agent

pytestmark = [pytest.mark.e2e]

LRS = [0.1, 0.01, 4.0]
STEPS = 9
TRAIN = textwrap.dedent("""
    import sys, time, mlflow
    lr = float(sys.argv[1])
    with mlflow.start_run():
        for t in range(9):
            mlflow.log_metric("loss", 2 + 2 * lr * t if lr > 1 else lr + 1 / (t + 1), step=t)
            if lr > 1 and t == 2:
                time.sleep(300)  # diverging: wait at the 3rd value until hyperband stops the trial
""")


@pytest.mark.timeout(240)
def test_an_agent_stops_the_diverging_command_at_the_first_band(store):
    (store.root / "train.py").write_text(TRAIN)
    sweep_id = init_sweep(store, {
        "method": "grid", "metric": {"name": "loss", "goal": "minimize"},
        "early_terminate": {"type": "hyperband", "min_iter": 3, "eta": 3},
        "command": f"{sys.executable} train.py ${{lr}}",
        "parameters": {"lr": {"values": LRS}},
    })
    env = {**store.env, "MLFLOW_SWEEP_EARLY_TERMINATE_INTERVAL": "0.3", "MLFLOW_SWEEP_KILL_GRACE": "5"}
    agent = start_agent(store, sweep_id, env=env, log=store.root / "agent-0.log")
    try:
        code = agent.wait(timeout=200)
    finally:
        agent.kill()
        agent.wait()
    runs = child_runs(store, sweep_id)
    client = store.client()
    ends = {e["trial"]: e for e in ledger_events(store, sweep_id) if e.get("event") == "end"}
    outcome = {float(r.data.params["lr"]): (r.info.status, r.data.tags.get("sweep.stopped_early")) for r in runs}
    expected = {0.1: ("FINISHED", None), 0.01: ("FINISHED", None), 4.0: ("KILLED", "3")}
    assert (code, outcome) == (0, expected), logs(store)
    for run in runs:
        end = ends[int(run.data.tags["sweep.trial"])]
        logged = [m.value for m in client.get_metric_history(run.info.run_id, "loss")]
        assert end["history"] == pytest.approx(logged)  # kept in the ledger for later cuts
        if float(run.data.params["lr"]) > 1:
            # its metric is its best value (metric.summary), from what it logged before it was stopped
            assert (end["state"], end["stopped_at"], len(logged), end["metric"]) == ("KILLED", 3, 3, 2.0)
        else:
            assert (end["state"], end["stopped_at"], len(logged)) == ("FINISHED", None, STEPS)
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
