"""``mlflow sweep finalize`` end to end on a real sqlite store.

Most sweeps are built fast: the real ``init``, then trials written straight into the ledger with
the Ledger API and matching child runs made with MlflowClient. One slow test runs real agents.
"""
from __future__ import annotations

import json
import math
import struct
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest

from mlflow_sweep.ledger import Ledger
from mlflow_sweep.trials import Proposal, TrialState
from tests.e2e.agents import agents, init_sweep, logs, wait_all

pytestmark = pytest.mark.e2e

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CONFIG = {
    "command": "echo ${lr} ${optimizer} ${dropout}",
    "method": "random",
    "metric": {"name": "loss", "goal": "minimize"},
    "run_cap": 30,
    "seed": 1,
    "parameters": {
        "lr": {"distribution": "log_uniform_values", "min": 0.00001, "max": 0.1},
        "optimizer": {"values": ["adam", "sgd", "rmsprop"]},
        "dropout": {"min": 0.0, "max": 0.5},
    },
}


def ledger_of(store, sweep_id: str, ago: float = 0.0) -> Ledger:
    """The sweep's ledger, writing times ``ago`` seconds in the past."""
    return Ledger(store.client().get_run(sweep_id).data.tags["sweep.ledger_dir"], clock=lambda: time.time() - ago)


def add_trials(store, sweep_id: str, specs: Sequence[tuple[dict[str, Any], TrialState | None, float | None]],
               agent: str = "test-agent", ago: float = 0.0) -> list[str]:
    """Claim one trial per (params, state, metric) with a real child run; state None leaves it running.

    ``ago`` dates the claims in the past, so a test of reaping does not depend on how fast it runs.
    """
    client, ledger = store.client(), ledger_of(store, sweep_id, ago)
    experiment_id = client.get_run(sweep_id).info.experiment_id
    run_ids = []
    for params, state, metric in specs:
        trial = ledger.claim(lambda _state, p=params: Proposal(params=p), agent).trial
        run = client.create_run(experiment_id, tags={"mlflow.parentRunId": sweep_id})
        ledger.start(trial.index, run.info.run_id)
        if state is not None:
            ledger.complete(trial.index, state, metric)
            client.set_terminated(run.info.run_id, status=state.value)
        run_ids.append(run.info.run_id)
    return run_ids


def lr_only_trials(n: int, seed: int = 0) -> list[tuple[dict[str, Any], TrialState, float]]:
    """Finished trials whose loss depends on lr alone (in log space)."""
    rng = np.random.default_rng(seed)
    specs = []
    for _ in range(n):
        params = {"lr": float(10 ** rng.uniform(-5, -1)), "optimizer": str(rng.choice(["adam", "sgd", "rmsprop"])),
                  "dropout": float(rng.uniform(0, 0.5))}
        specs.append((params, TrialState.FINISHED, (math.log10(params["lr"]) + 3) ** 2))
    return specs


def finalize(store, sweep_id: str, **kw) -> str:
    proc = store.main("finalize", "--sweep-id", sweep_id, **kw)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    return proc.stdout


def artifacts(store, run_id: str, path: str | None = None) -> dict[str, Path]:
    """Local paths of a run's artifacts under ``path`` (the store keeps them under tmp_path)."""
    client = store.client()
    root = Path(client.get_run(run_id).info.artifact_uri.removeprefix("file://"))
    return {Path(f.path).name: root / f.path for f in client.list_artifacts(run_id, path) if not f.is_dir}


def test_finalize_prints_the_table_and_records_best_plots_and_status(store):
    sweep_id = init_sweep(store, CONFIG)
    specs = lr_only_trials(24)
    run_ids = add_trials(store, sweep_id, specs)
    add_trials(store, sweep_id, [(specs[0][0], TrialState.FAILED, None), (specs[1][0], TrialState.KILLED, None)])
    out = finalize(store, sweep_id)

    table = out[out.index("Parameter importance"):].split("\n\n")[0].splitlines()
    assert table[0] == "Parameter importance for loss (minimize), 24 trials"
    assert table[1] == "Parameter  | Importance | Permutation Importance | Pearson | Spearman"
    assert table[2].startswith("lr ") and sorted(row.split()[0] for row in table[2:]) == ["dropout", "lr", "optimizer"]
    assert "26 trials: 24 finished, 1 failed, 1 killed, 0 running" in out
    best = min(range(24), key=lambda i: specs[i][2])
    assert f"Best trial: #{best} (run {run_ids[best]})" in out

    client = store.client()
    parent = client.get_run(sweep_id)
    # 26 trials of run_cap 30: the sweep can still run trials, so finalize leaves it RUNNING
    assert (parent.info.status, parent.data.tags["sweep.state"]) == ("RUNNING", "running")
    assert parent.data.tags["sweep.best_run_id"] == run_ids[best]
    assert json.loads(parent.data.tags["sweep.best_params"]) == specs[best][0]
    assert parent.data.metrics["best_loss"] == pytest.approx(specs[best][2])
    plots = artifacts(store, sweep_id, "plots")
    assert len(plots) >= 5 and {"importance.png", "timeline.png", "parallel_coordinates.png"} <= set(plots)
    for path in plots.values():
        data = path.read_bytes()
        width, height = struct.unpack(">II", data[16:24])
        assert data[:8] == PNG_MAGIC and 10_000 < len(data) < 5_000_000 and 500 <= width <= 2400 and 300 <= height <= 2400
    summary = artifacts(store, sweep_id)["sweep_summary.txt"].read_text()
    assert "\n".join(table) in summary and f"Best trial: #{best}" in summary
    assert "ledger.jsonl" in artifacts(store, sweep_id, "sweep")

    again = finalize(store, sweep_id)
    assert again == out  # seeded: the same sweep prints the same table
    assert len(client.get_metric_history(sweep_id, "best_loss")) == 1
    assert artifacts(store, sweep_id, "plots").keys() == plots.keys()
    assert sorted(artifacts(store, sweep_id)) == sorted(["sweep_summary.txt", "sweep.yaml"])


def test_finalize_again_after_more_trials_replaces_the_best(store):
    sweep_id = init_sweep(store, CONFIG)
    add_trials(store, sweep_id, lr_only_trials(5, seed=1))
    finalize(store, sweep_id)
    better = add_trials(store, sweep_id, [({"lr": 0.001, "optimizer": "adam", "dropout": 0.1}, TrialState.FINISHED, -1.0)])
    out = finalize(store, sweep_id)
    parent = store.client().get_run(sweep_id)
    assert f"(run {better[0]})" in out and parent.data.tags["sweep.best_run_id"] == better[0]
    assert parent.data.metrics["best_loss"] == -1.0


def test_no_metric_gives_a_message_the_timeline_and_a_ledger_copy(store, tmp_path):
    store.env["MLFLOW_SWEEP_LEDGER_DIR"] = str(tmp_path / "shared-ledgers")
    sweep_id = init_sweep(store, {k: v for k, v in CONFIG.items() if k != "metric"})
    add_trials(store, sweep_id, [(p, s, None) for p, s, _ in lr_only_trials(4)] +
               [(lr_only_trials(1)[0][0], TrialState.FAILED, None)])
    out = finalize(store, sweep_id)
    assert "note: no metric configured" in out and "Parameter importance" not in out
    assert "Best trial: none (no metric configured)" in out
    parent = store.client().get_run(sweep_id)
    assert parent.info.status == "RUNNING" and "sweep.best_run_id" not in parent.data.tags  # not done: the parent stays RUNNING
    assert {"timeline.png", "parallel_coordinates.png"} <= set(artifacts(store, sweep_id, "plots"))
    assert "ledger.jsonl" in artifacts(store, sweep_id, "sweep")  # a copy of the ledger, stored at finalize


def test_too_few_trials_failures_and_nan_metrics_give_notes_not_errors(store):
    sweep_id = init_sweep(store, CONFIG)
    (a, _, _), (b, _, _) = lr_only_trials(2)
    run_ids = add_trials(store, sweep_id, [(a, TrialState.FINISHED, 0.5), (b, TrialState.FINISHED, float("nan")),
                                           (a, TrialState.FINISHED, None), (b, TrialState.FAILED, None),
                                           (a, TrialState.KILLED, 0.1)])
    out = finalize(store, sweep_id)
    assert "note: 2 finished trials logged no finite value for 'loss' (missing or NaN) and are left out" in out
    assert "note: importance needs at least 3 finished trials with a value for 'loss', but got 1" in out
    assert f"Best trial: #0 (run {run_ids[0]})" in out
    parent = store.client().get_run(sweep_id)
    assert parent.data.tags["sweep.best_run_id"] == run_ids[0] and parent.data.metrics["best_loss"] == 0.5
    assert {"metric_over_time.png", "timeline.png"} <= set(artifacts(store, sweep_id, "plots"))


def test_a_metric_name_no_trial_logged_shows_what_the_runs_have(store):
    sweep_id = init_sweep(store, CONFIG)  # metric.name is 'loss'
    run_ids = add_trials(store, sweep_id, [(p, TrialState.FINISHED, None) for p, _, _ in lr_only_trials(2)])
    for run_id in run_ids:
        store.client().log_metric(run_id, "val_loss", 0.3)
    out = finalize(store, sweep_id)
    assert ("Trial 1's run has val_loss: metric.name 'loss' in the sweep config must be the name the script logs "
            "with mlflow.log_metric") in out
    store.client().log_metric(run_ids[1], "loss", float("nan"))  # the name is right; its value is not
    assert "metric.name 'loss' in the sweep config" not in finalize(store, sweep_id)


def test_only_categoricals_and_a_parameter_that_never_varies(store):
    config = {**CONFIG, "command": "echo ${act} ${fixed}",
              "parameters": {"act": {"values": ["relu", "tanh", "gelu"]}, "fixed": {"value": 7}}}
    sweep_id = init_sweep(store, config)
    effect = {"relu": 0.0, "tanh": 1.0, "gelu": 0.5}
    add_trials(store, sweep_id, [({"act": act, "fixed": 7}, TrialState.FINISHED, effect[act] + i / 100)
                                 for i, act in enumerate(["relu", "tanh", "gelu"] * 4)])
    out = finalize(store, sweep_id)
    rows = out[out.index("Parameter importance"):].splitlines()[2:4]
    assert rows[0].startswith("act ") and rows[1].startswith("fixed ") and rows[1].endswith("n/a |      n/a")
    assert "note: fixed never varies" in out


def test_finalize_reaps_trials_of_silent_agents(store):
    sweep_id = init_sweep(store, CONFIG)
    run_ids = add_trials(store, sweep_id, [(p, None, None) for p, _, _ in lr_only_trials(1)], ago=60)
    env = {**store.env, "MLFLOW_SWEEP_HEARTBEAT_TIMEOUT": "30"}
    out = finalize(store, sweep_id, env=env)
    assert "1 trial: 0 finished, 1 failed, 0 killed, 0 running" in out
    assert store.client().get_run(run_ids[0]).info.status == "FAILED"
    assert ("Left out importance.png, correlation.png, metric_over_time.png, parallel_coordinates.png, "
            "metric_vs_parameters.png: no finished trial has a value for 'loss' yet") in out
    assert set(artifacts(store, sweep_id, "plots")) == {"timeline.png"}  # no empty frame
    assert f"Recorded on run {sweep_id}: sweep_summary.txt, 1 plot under plots/ (timeline.png)" in out


def test_an_empty_sweep_draws_no_plot_and_says_why(store):
    sweep_id = init_sweep(store, CONFIG)
    out = finalize(store, sweep_id)
    assert f"Recorded on run {sweep_id}: sweep_summary.txt, 0 plots under plots/ (none)" in out
    assert ("Left out importance.png, correlation.png, metric_over_time.png, timeline.png, "
            "parallel_coordinates.png, metric_vs_parameters.png: the sweep has no trials yet") in out
    assert artifacts(store, sweep_id, "plots") == {}


def test_unknown_sweep_is_a_message_not_a_traceback(store):
    proc = store.main("finalize", "--sweep-id", "0123456789abcdef")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "no sweep with ID '0123456789abcdef'" in proc.stderr


@pytest.mark.slow
def test_finalize_after_real_agents(store):
    script = store.root / "train.py"
    script.write_text("import math, sys, mlflow\n"
                      "lr, width = float(sys.argv[1]), int(sys.argv[2])\n"
                      "with mlflow.start_run():\n"
                      "    for step in range(3):\n"
                      "        mlflow.log_metric('loss', (math.log10(lr) + 3) ** 2 + 1 / (step + 1), step=step)\n")
    config = {"command": f"python {script} ${{lr}} ${{width}}", "method": "random", "run_cap": 6, "seed": 3,
              "metric": {"name": "loss", "goal": "minimize"},
              "parameters": {"lr": {"distribution": "log_uniform_values", "min": 0.00001, "max": 0.1},
                             "width": {"values": [8, 16]}}}
    sweep_id = init_sweep(store, config)
    env = {**store.env, "PATH": f"{Path(__import__('sys').executable).parent}:{store.env.get('PATH', '')}"}
    with agents(store, sweep_id, 2, env=env) as procs:
        assert wait_all(procs, timeout=240) == [0, 0], logs(store)
    out = finalize(store, sweep_id)
    assert "6 trials: 6 finished" in out and "Parameter importance for loss (minimize), 6 trials" in out
    parent = store.client().get_run(sweep_id)
    best_run = store.client().get_run(parent.data.tags["sweep.best_run_id"])
    assert best_run.data.tags["mlflow.parentRunId"] == sweep_id
    assert parent.data.metrics["best_loss"] == pytest.approx(min(
        m.value for m in store.client().get_metric_history(best_run.info.run_id, "loss")))
    assert len(artifacts(store, sweep_id, "plots")) == 6
