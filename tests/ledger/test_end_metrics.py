"""The end event of a sweep with several objectives carries each objective's counted value."""
from __future__ import annotations

from pathlib import Path

from mlflow_sweep.ledger import Ledger, replay
from mlflow_sweep.trials import Proposal, TrialState

HEAD = {"event": "sweep", "v": 2, "time": 0.0, "header": {"config": {}, "seed": 1, "sweep_id": "s"}}
CLAIM = {"event": "claim", "trial": 0, "params": {"x": 1}, "point": None, "agent": "a", "time": 1.0}
END = {"event": "end", "trial": 0, "state": "FINISHED", "metric": None, "stopped_at": None, "time": 2.0}


def test_metrics_fold_into_the_trial_and_old_events_still_replay() -> None:
    (trial,) = replay([HEAD, CLAIM, {**END, "metrics": {"loss": 0.5, "latency": 30}}]).trials
    assert (trial.metrics, trial.values(["latency", "loss", "size"])) == (
        {"loss": 0.5, "latency": 30.0}, (30.0, 0.5, None))
    (old,) = replay([HEAD, CLAIM, {**END, "metric": 0.25}]).trials  # a ledger written before metrics
    assert (old.metric, old.metrics, old.values(["loss"])) == (0.25, None, (0.25,))


def test_complete_writes_the_metrics_to_a_real_ledger(ledger_dir: Path) -> None:
    ledger = Ledger(ledger_dir)
    trial = ledger.claim(lambda state: Proposal(params={"x": 1}), "agent-1").trial
    assert ledger.complete(trial.index, TrialState.FINISHED, None, metrics={"loss": 0.5, "latency": 31.5})
    (ended,) = Ledger(ledger_dir).state().trials
    assert (ended.state, ended.metric, ended.metrics) == (TrialState.FINISHED, None, {"loss": 0.5, "latency": 31.5})
