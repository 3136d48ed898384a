"""``mlflow sweep status``: trials by state, run_cap progress, best so far, live agents."""
from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from mlflow_sweep.config import config_from_dict
from mlflow_sweep.progress import render_status
from mlflow_sweep.trials import SweepPhase, Trial, TrialState
from tests.e2e.agents import init_sweep
from tests.e2e.test_finalize import CONFIG, add_trials, ledger_of, lr_only_trials


def status(store, sweep_id: str, **kw) -> str:
    proc = store.main("status", "--sweep-id", sweep_id, **kw)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.e2e
def test_status_shows_states_progress_best_and_live_agents(store):
    sweep_id = init_sweep(store, CONFIG)
    specs = lr_only_trials(4)
    run_ids = add_trials(store, sweep_id, specs + [(specs[0][0], TrialState.FAILED, None),
                                                   (specs[1][0], TrialState.KILLED, None),
                                                   (specs[2][0], None, None)])
    ledger = ledger_of(store, sweep_id)
    ledger.heartbeat("node7-4242", {"host": "node7", "pid": 4242, "trial": 6})
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    ledger.heartbeat("here-died", {"host": socket.gethostname(), "pid": int(gone.stdout), "trial": None})
    ledger.heartbeat("node8-77", {"host": "node8", "pid": 77, "trial": None, "stopped": True})
    out = status(store, sweep_id)
    best = min(range(4), key=lambda i: specs[i][2])
    lines = out.splitlines()
    assert lines[0].startswith("Sweep ") and lines[0].endswith(f"({sweep_id}): method random, metric loss (minimize)")
    assert lines[1] == "State: running"  # from policy.sweep_state, as in 'mlflow sweep list'
    assert lines[2] == "Progress: 7 of run_cap 30 trials claimed (23%)"
    assert lines[3] == "Trials: 4 finished, 1 failed, 1 killed, 1 running"
    assert lines[4].startswith(f"Best so far: #{best} (run {run_ids[best]}) loss = ")
    assert "Agents: 1 live, 1 exited, 1 died (gone without exiting cleanly)" in out
    agent_row = next(line for line in lines if "node7-4242" in line).split()
    assert agent_row[:3] == ["node7-4242", "node7", "4242"] and agent_row[-1] == "#6"
    assert store.client().get_run(run_ids[6]).info.status == "RUNNING"  # its agent is beating


@pytest.mark.e2e
def test_status_of_a_new_sweep_without_metric_and_reaping(store):
    sweep_id = init_sweep(store, {k: v for k, v in CONFIG.items() if k != "metric"})
    assert "Trials: 0 finished, 0 failed, 0 killed, 0 running" in status(store, sweep_id)
    run_ids = add_trials(store, sweep_id, [(lr_only_trials(1)[0][0], None, None)], ago=60)
    out = status(store, sweep_id, env={**store.env, "MLFLOW_SWEEP_HEARTBEAT_TIMEOUT": "30"})
    assert "no metric" in out.splitlines()[0] and "Best so far: n/a (no metric configured)" in out
    assert "Trials: 0 finished, 1 failed, 0 killed, 0 running (1 failed because their agent went silent)" in out
    assert "Agents: 0 live" in out
    assert store.client().get_run(run_ids[0]).info.status == "FAILED"


@pytest.mark.e2e
def test_status_of_an_unknown_sweep(store):
    proc = store.main("status", "--sweep-id", "nope")
    assert proc.returncode == 1 and "no sweep with ID 'nope'" in proc.stderr and "Traceback" not in proc.stderr


def grid_config(**changes):
    raw = {"command": "echo ${a} ${b}", "method": "grid", "metric": {"name": "acc", "goal": "maximize", "target": 0.9},
           "parameters": {"a": {"values": [1, 2, 3]}, "b": {"values": ["x", "y"]}}, **changes}
    return config_from_dict(raw, "grid.yaml")


def test_render_grid_progress_target_and_agent_ages():
    trials = [Trial(0, {"a": 1, "b": "x"}, TrialState.FINISHED, 0.95, run_id="r0"),
              Trial(1, {"a": 2, "b": "x"}, TrialState.FINISHED, float("nan"), run_id="r1")]
    trials.append(Trial(2, {"a": 3, "b": "x"}, agent_id="a1"))
    agents = [{"agent": "a1", "host": "h", "pid": 1, "beat": 990.0, "trial": None},
              {"agent": "a2", "host": "h", "pid": 2, "beat": 700.0, "trial": 3},
              {"agent": "a3", "host": "h", "pid": 3, "beat": 999.0, "trial": 1},
              {"agent": "a4", "host": "h", "pid": 4, "beat": 998.0, "trial": None, "stopped": True}]
    text = render_status("g (id)", grid_config(), trials, agents, now=1000.0, timeout=120.0, exited={"a3"})
    lines = text.splitlines()[1:]  # after the title
    assert lines[0] == "State: running"
    assert lines[1] == "Progress: 3 trials claimed for a grid of 6 points (dead trials' points are run again)"
    assert lines[3] == "Best so far: #0 (run r0) acc = 0.95"
    assert lines[4] == "  a=1, b=x"
    assert lines[5] == "Target acc >= 0.9 reached: no new trials will start"
    assert lines[6] == "Agents: 1 live, 1 exited, 2 died (gone without exiting cleanly)"  # a2 silent, a3 gone
    assert lines[7].split() == ["agent", "host", "pid", "last", "heartbeat", "trial"]
    assert lines[8].split() == ["a1", "h", "1", "10", "s", "ago", "#2"]


def test_render_with_no_finished_trial_yet():
    text = render_status("g (id)", grid_config(run_cap=4), [Trial(0, {"a": 1, "b": "x"})], [], now=0.0, timeout=1.0)
    assert "Progress: 1 of run_cap 4 trials claimed (25%)" in text
    assert "Best so far: none yet (no finished trial with a value for 'acc')" in text
    assert text.endswith("Agents: 0 live")


def test_render_shows_the_lifecycle_state_and_leaves_requeued_trials_out_of_run_cap():
    trials = [Trial(0, {"a": 1, "b": "x"}, TrialState.KILLED, requeued="interrupted"),
              Trial(1, {"a": 2, "b": "x"}, TrialState.FAILED, requeued="retry"),
              Trial(2, {"a": 1, "b": "x"}, TrialState.FINISHED, retry_of=0)]
    text = render_status("g (id)", grid_config(run_cap=4), trials, [], now=0.0, timeout=1.0, state=SweepPhase.PAUSED,
                         run_cap=6)
    assert text.splitlines()[1:3] == [
        "State: paused (running trials finish, agents wait; 'mlflow sweep resume' goes on)",
        "Progress: 1 of run_cap 6 trials claimed (16%), not counting 2 interrupted or retried; "
        "1 of their points waits to run again"]


def test_render_says_when_conflicting_claims_were_resolved():
    from mlflow_sweep.ledger import Conflict

    text = render_status("g (id)", grid_config(run_cap=4), [Trial(0, {"a": 1, "b": "x"})], [], now=0.0, timeout=1.0,
                         conflicts=[Conflict(0, "h-1", 3)])
    clean = render_status("g (id)", grid_config(run_cap=4), [Trial(0, {"a": 1, "b": "x"})], [], now=0.0, timeout=1.0)
    assert ("Conflicts: 1 claim of a trial number already taken (#0) was dropped; the first claim in the ledger "
            "keeps each trial, and nothing needs repair" in text, "Conflicts" in clean) == (True, False)
