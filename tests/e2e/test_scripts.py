"""The training script needs no change: real scripts, a real store, the real CLI.

Each script in ``scripts/`` does what a common one does: argparse floats + ``log_params(vars(args))``,
a nested config dict, ``mlflow.sklearn.autolog()``, and plain MLflow calls that do what Hugging Face's
Trainer callback and PyTorch Lightning's MLFlowLogger do (no torch in CI).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.e2e.agents import child_runs, init_sweep

pytestmark = [pytest.mark.e2e]

SCRIPTS = Path(__file__).resolve().parent / "scripts"


def _run(store, config: dict, script: str, *extra: str):
    """Copy ``script`` into the store's directory, init the sweep, run one agent to the end.

    The agent runs in this process; each trial is the real script in its own process.
    """
    shutil.copy(SCRIPTS / script, store.root / script)
    sweep_id = init_sweep(store, {"program": script, **config})
    proc = store.main("run", "--sweep-id", sweep_id, *extra)
    runs = sorted(child_runs(store, sweep_id), key=lambda r: int(r.data.tags["sweep.trial"]))
    return proc, runs


@pytest.mark.timeout(300)
def test_argparse_floats_and_log_params_of_vars_args(store):
    """argparse's float 1.0 for the sweep's 1 must not fail the script's log_params ("Changing param values is
    not allowed"): all 4 trials finish."""
    proc, runs = _run(store, {"method": "grid", "metric": {"name": "loss"},
                              "parameters": {"lr": {"values": [0.01, 1]}, "wd": {"values": [0, 0.0001]}}},
                      "argparse_train.py")
    got = [(r.info.status, r.data.params, json.loads(r.data.tags["sweep.params"]), r.data.metrics["sweep.loss"])
           for r in runs]
    best = [min((lr - 0.1) ** 2 + wd + 1.0 / (s + 1) for s in range(3)) for lr, wd in
            ((0.01, 0), (0.01, 0.0001), (1, 0), (1, 0.0001))]
    assert (proc.returncode, got) == (0, [
        ("FINISHED", {"lr": "0.01", "wd": "0.0"}, {"lr": 0.01, "wd": 0}, pytest.approx(best[0])),
        ("FINISHED", {"lr": "0.01", "wd": "0.0001"}, {"lr": 0.01, "wd": 0.0001}, pytest.approx(best[1])),
        ("FINISHED", {"lr": "1.0", "wd": "0.0"}, {"lr": 1, "wd": 0}, pytest.approx(best[2])),
        ("FINISHED", {"lr": "1.0", "wd": "0.0001"}, {"lr": 1, "wd": 0.0001}, pytest.approx(best[3])),
    ]), proc.stderr
    assert all(set(r.data.metrics) == {"loss", "sweep.loss"} for r in runs)


@pytest.mark.timeout(240)
def test_a_script_that_logs_its_nested_config_dict(store):
    proc, runs = _run(store, {"run_cap": 1, "metric": {"name": "loss"}, "parameters": {
        "model.depth": {"values": [2]},
        "optimizer": {"parameters": {"lr": {"values": [0.01]}, "momentum": {"value": 0.9}}}}},
        "nested_config_train.py")
    (run,) = runs
    assert (proc.returncode, run.info.status, run.data.params) == (0, "FINISHED", {
        "optimizer": "{'lr': 0.01, 'momentum': 0.9}", "optimizer.lr": "0.010",  # the script's own text
        "optimizer.momentum": "0.9", "model.depth": "2"}), proc.stderr  # filled in by the agent
    assert run.data.metrics["sweep.loss"] == pytest.approx(0.02)


@pytest.mark.timeout(300)
def test_sklearn_autolog_with_a_swept_estimator_param(store):
    proc, runs = _run(store, {"method": "grid", "metric": {"name": "training_score", "goal": "maximize"},
                              "parameters": {"C": {"values": [1, 10]}}}, "sklearn_autolog_train.py")
    got = [(r.info.status, r.data.params["C"], "sweep.training_score" in r.data.metrics) for r in runs]
    assert (proc.returncode, got) == (0, [("FINISHED", "1.0", True), ("FINISHED", "10.0", True)]), proc.stderr


@pytest.mark.timeout(240)
def test_hugging_face_trainer_logging_every_argument(store):
    """Hugging Face's callback logs num_train_epochs as 3.0 where the sweep says 3: its text stands, no failure."""
    proc, runs = _run(store, {"method": "grid", "metric": {"name": "eval_loss"},
                              "parameters": {"num_train_epochs": {"value": 3},
                                             "learning_rate": {"values": [5e-05, 0.0001]}}},
                      "hf_trainer_like_train.py")
    got = [(r.info.status, r.data.params["num_train_epochs"], r.data.params["learning_rate"],
            len(r.data.params), r.data.metrics.get("sweep.eval_loss")) for r in runs]
    assert (proc.returncode, got) == (0, [("FINISHED", "3.0", "5e-05", 10, pytest.approx(1 / 3 + 0.05)),
                                          ("FINISHED", "3.0", "0.0001", 10, pytest.approx(1 / 3 + 0.1))]), proc.stderr


@pytest.mark.timeout(240)
def test_lightning_logger_without_run_id_gets_one_hint(store):
    """Lightning's MLFlowLogger logs into its own run unless given MLFLOW_RUN_ID; the agent says so once."""
    proc, runs = _run(store, {"method": "grid", "metric": {"name": "val_loss"},
                              "parameters": {"pass_run_id": {"values": [False, False, True]}, "lr": {"value": 0.5}}},
                      "lightning_like_train.py")
    hints = [line for line in proc.stderr.splitlines() if "logged no metric 'val_loss'" in line]
    assert (proc.returncode, [r.info.status for r in runs], len(hints)) == (0, ["FINISHED"] * 3, 1), proc.stderr
    assert 'MLFlowLogger(run_id=os.environ["MLFLOW_RUN_ID"], ...)' in hints[0]
    assert "its run has no metrics at all" in hints[0]
    assert [r.data.metrics.get("sweep.val_loss") for r in runs] == [None, None, pytest.approx(0.5 / 3)]


def test_scripts_need_no_torch_or_transformers():
    """No torch in CI: the scripts mimic the frameworks with plain MLflow calls."""
    text = "\n".join(p.read_text() for p in SCRIPTS.glob("*.py"))
    assert ("import torch" in text, "import transformers" in text, "import lightning" in text) == (False,) * 3
