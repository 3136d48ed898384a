"""Write tests/assets/ledger-v3/: a format-v3 ledger directory with what format 3 added, on a fixed clock.

Run from the repository root with the release that introduced format v3 (prior runs, enqueued
points, config versions)::

    python tests/assets/make_ledger_v3.py

A grid started from one prior run, with a point enqueued, a second config version that adds a
parameter with a default, every lifecycle event, and claims that record the enqueued point and the
config version they were decided under. The directory is frozen: later releases must still replay
it (tests/ledger/test_asset.py), so never regenerate it with a newer writer; add a new asset instead.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from mlflow_sweep.ledger import Decision, Ledger
from mlflow_sweep.trials import Proposal, TrialState

ASSET = Path(__file__).resolve().parent / "ledger-v3"
CONFIG = {
    "command": "python train.py --lr ${lr} --layers ${layers}", "experiment_name": "Default", "method": "grid",
    "metric": {"name": "loss", "goal": "minimize", "impute": "worst", "summary": "best"},
    "parameters": {"lr": {"distribution": "categorical", "values": [0.1, 0.01]},
                   "layers": {"distribution": "categorical", "values": [1, 2]}},
}
CONFIG_V2 = {
    **CONFIG, "command": "python train.py --lr ${lr} --layers ${layers} --warmup ${warmup}",
    "parameters": {**CONFIG["parameters"], "warmup": {"distribution": "categorical", "values": [0, 100], "default": 0}},
}
HEADER = {"config": CONFIG, "seed": 1234, "sweep_id": "5f0c0ffee0000000000000000000000c", "created": 1700000000.0,
          "priors": [{"run_id": "p0", "params": {"lr": 0.1, "layers": 1}, "metric": 0.45}]}
NODE1 = "node1-100-aaaaaa"


class Clock:
    """The event clock, set by hand before each step so that every time in the files is known."""

    now = 1700000000.0

    def __call__(self) -> float:
        return self.now


def claim(ledger: Ledger, clock: Clock, at: float, proposal: Proposal) -> int:
    clock.now = at
    trial = ledger.claim(lambda state: proposal, NODE1).trial
    assert trial is not None
    return trial.index


def build(directory: Path, clock: Clock) -> Path:
    """Enqueue a point, run it, change the config, run a point of the new version, requeue one."""
    clock.now = 1700000000.0
    ledger = Ledger.create(directory, HEADER, clock=clock)
    clock.now = 1700000001.0
    ledger.commit(lambda state: Decision(None, {"event": "enqueue", "points": [{"lr": 0.01}], "by": "me@login"}))
    index = claim(ledger, clock, 1700000002.0, Proposal({"lr": 0.01, "layers": 2}, point=3, enqueued=0))
    ledger.start(index, "r0")
    clock.now = 1700000003.0
    ledger.complete(index, TrialState.FINISHED, 0.25)
    clock.now = 1700000004.0
    ledger.commit(lambda state: Decision(None, {"event": "config", "version": 2, "config": CONFIG_V2,
                                                "by": "me@login"}))
    index = claim(ledger, clock, 1700000005.0, Proposal({"lr": 0.1, "layers": 1, "warmup": 100}, point=1, version=2))
    ledger.start(index, "r1")
    clock.now = 1700000006.0
    ledger.complete(index, TrialState.KILLED, None, requeue="interrupted")
    clock.now = 1700000007.0
    ledger.commit(lambda state: Decision(None, {"event": "run_cap", "run_cap": 5, "by": "me@login"}))
    ledger.commit(lambda state: Decision(None, {"event": "control", "state": "paused", "by": "me@login"}))
    return directory


def main() -> None:
    clock = Clock()
    directory = Path(tempfile.mkdtemp())
    try:
        built = build(directory / "sweep", clock)
        shutil.rmtree(ASSET, ignore_errors=True)
        shutil.copytree(built, ASSET, ignore=shutil.ignore_patterns("agents", "ledger.lock"))
    finally:
        shutil.rmtree(directory)


if __name__ == "__main__":
    main()
