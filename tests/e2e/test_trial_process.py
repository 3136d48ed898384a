"""What a command trial gets from its agent: its environment, and how it is stopped.

The environment is checked with the real CLI agent in this process (the trial is a real shell
process that writes out what it received). Stopping needs real signals to a real agent process:
one Ctrl-C sends SIGTERM to the trial's process group and SIGKILL after MLFLOW_SWEEP_KILL_GRACE;
a second Ctrl-C kills the trial at once.
"""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.e2e.agents import child_runs, init_sweep, kill_group, poll, start_agent

pytestmark = [pytest.mark.e2e]


def _environ(path: Path) -> dict[str, str]:
    """``env -0`` output as a dict."""
    return dict(item.split("=", 1) for item in path.read_text().split("\0") if item)


def test_the_trial_environment(store):
    sweep_id = init_sweep(store, {
        "method": "grid", "experiment_name": "env-check",
        "command": 'env -0 > env-${x}.txt; cp "$MLFLOW_SWEEP_PARAMS_FILE" params-${x}.json',
        "parameters": {"x": {"values": [1, 2]}, "opt": {"parameters": {"lr": {"value": 0.5}}}},
    })
    # A relative sqlite URI (resolved against the agent's directory) and an experiment name of the
    # caller's: the trial must get an absolute URI and the sweep's experiment.
    env = {**store.env, "MLFLOW_TRACKING_URI": "sqlite:///mlflow.db", "MLFLOW_EXPERIMENT_NAME": "elsewhere"}
    proc = store.main("run", "--sweep-id", sweep_id, env=env)
    runs = {int(r.data.tags["sweep.trial"]): r for r in child_runs(store, sweep_id)}
    assert (proc.returncode, sorted(runs), {r.info.status for r in runs.values()}) == (0, [0, 1], {"FINISHED"}), \
        proc.stderr
    experiment = store.client().get_experiment_by_name("env-check").experiment_id
    for trial, run in runs.items():
        x = run.data.params["x"]
        seen = _environ(store.root / f"env-{x}.txt")
        assert {k: seen.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME",
                                         "MLFLOW_RUN_ID", "MLFLOW_SWEEP_ID", "MLFLOW_SWEEP_TRIAL",
                                         "PYTHONUNBUFFERED")} == {
            "MLFLOW_TRACKING_URI": f"sqlite:///{(store.root / 'mlflow.db').resolve()}",
            "MLFLOW_EXPERIMENT_ID": experiment, "MLFLOW_EXPERIMENT_NAME": None,
            "MLFLOW_RUN_ID": run.info.run_id, "MLFLOW_SWEEP_ID": sweep_id, "MLFLOW_SWEEP_TRIAL": str(trial),
            "PYTHONUNBUFFERED": "1"}
        assert Path(seen["MLFLOW_SWEEP_PARAMS_FILE"]).is_absolute()
        assert json.loads((store.root / f"params-{x}.json").read_text()) == {"x": int(x), "opt": {"lr": 0.5}}
        assert seen["PATH"] == store.env["PATH"]  # the rest of the agent's environment


# Stands in for a training script that catches SIGTERM to save a checkpoint and never exits: it
# notes each SIGTERM and goes on. ``sleep`` is its own process in the trial's group, so each
# SIGTERM also ends the current sleep and the trap runs at once.
STUBBORN = ('trap \'echo "got TERM"; touch "term-$AGENT"\' TERM; echo $$ > ".ready-$AGENT"; '
            'mv ".ready-$AGENT" "ready-$AGENT"; while :; do sleep 1; done')


@pytest.mark.slow
@pytest.mark.timeout(360)
def test_sigterm_then_sigkill_after_the_grace_and_a_second_ctrl_c_kills_at_once(store):
    """Agent A gets one Ctrl-C and a 1 s grace; agent B a grace of an hour and two Ctrl-Cs.

    The trials never exit on SIGTERM, so A's can end only by the SIGKILL that follows the grace,
    and B's (within the test's timeout) only by the second Ctrl-C.
    """
    sweep_id = init_sweep(store, {"method": "grid", "command": STUBBORN, "parameters": {"x": {"values": [1, 2]}}})
    agents = {name: start_agent(store, sweep_id, log=store.root / f"agent-{name}.log",
                                env={**store.env, "AGENT": name, "MLFLOW_SWEEP_KILL_GRACE": grace})
              for name, grace in (("A", "1"), ("B", "3600"))}
    pids: list[int] = []
    try:
        poll(lambda: all((store.root / f"ready-{name}").exists() for name in agents), timeout=150)
        pids = [int((store.root / f"ready-{name}").read_text()) for name in agents]  # each trial's group
        for proc in agents.values():
            proc.send_signal(signal.SIGINT)
        poll(lambda: (store.root / "term-B").exists(), timeout=60)
        agents["B"].send_signal(signal.SIGINT)
        codes = {name: proc.wait(timeout=120) for name, proc in agents.items()}
    finally:
        for proc in agents.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for pid in pids:
            kill_group(pid)
    logs = {name: (store.root / f"agent-{name}.log").read_text() for name in agents}
    runs = [r for r in child_runs(store, sweep_id)]
    assert (codes, [r.info.status for r in runs], [r.data.tags.get("sweep.killed_by") for r in runs]) == (
        {"A": 130, "B": 130}, ["KILLED", "KILLED"], ["SIGINT", "SIGINT"]), logs
    assert all("got TERM" in text for text in logs.values()), logs  # SIGTERM came first, and was ignored
