"""Write tests/assets/ledger-v2/: a format-v2 ledger directory using every event kind, on a fixed clock.

Run from the repository root with the release that introduced format v2 (the event-per-file log)::

    python tests/assets/make_ledger_v2.py

The same sweep as ledger-v1.jsonl (make_ledger_v1.py), written by the v2 writer: the header in
ledger.jsonl, every later event in events/, plus a temporary file that a writer killed before its
link() would leave. The directory is frozen: later releases must still replay it
(tests/ledger/test_asset.py), so never regenerate it with a newer writer; add a new asset instead.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from mlflow_sweep.ledger import Ledger
from mlflow_sweep.trials import Proposal, TrialState

ASSET = Path(__file__).resolve().parent / "ledger-v2"
HEADER = {
    "config": {
        "method": "grid", "run_cap": 6, "command": "python train.py --lr ${lr} --layers ${layers}",
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"lr": {"values": [0.1, 0.01]}, "layers": {"values": [1, 2]}},
    },
    "seed": 1234, "sweep_id": "5f0c0ffee0000000000000000000000b", "created": 1700000000.0,
}
NODE1, NODE2 = "node1-100-aaaaaa", "node2-200-bbbbbb"
POINTS = [{"lr": 0.1, "layers": 1}, {"lr": 0.1, "layers": 2}, {"lr": 0.01, "layers": 1}, {"lr": 0.01, "layers": 2}]
UNLINKED = (".tmp-node2-200-0badf00d", b'{"event": "end", "trial": 4, "sta')  # a writer killed before link()


class Clock:
    """The event clock, set by hand before each step so that every time in the files is known."""

    now = 1700000000.0

    def __call__(self) -> float:
        return self.now


def claim(ledger: Ledger, clock: Clock, at: float, point: int, agent: str) -> int:
    clock.now = at
    trial = ledger.claim(lambda state: Proposal(POINTS[point], point=point), agent).trial
    assert trial is not None
    return trial.index


def build(directory: Path, clock: Clock) -> Path:
    """Play a small sweep: a finish, a failure, a death and its reissue, a kill, one still running."""
    clock.now = 1700000000.0
    ledger = Ledger.create(directory, HEADER, clock=clock)
    ledger.heartbeat(NODE1, {"host": "node1", "pid": 100})
    steps = [(1700000001.0, 0, NODE1, "r0", (TrialState.FINISHED, 0.5, None, [0.9, 0.5])),
             (1700000003.0, 1, NODE2, "r1", (TrialState.FAILED, None, None, None)),
             (1700000005.0, 2, NODE2, "r2", None)]
    for at, point, agent, run_id, outcome in steps:
        index = claim(ledger, clock, at, point, agent)
        ledger.start(index, run_id)
        if outcome:
            clock.now = at + 1
            state, metric, stopped_at, history = outcome
            ledger.complete(index, state, metric, stopped_at=stopped_at, history=history)
    clock.now = 1700000200.0
    ledger.heartbeat(NODE1, {"host": "node1", "pid": 100})
    assert [t.index for t in ledger.reap(120)] == [2]  # node2 never beat; its claim is 195 s old
    index = claim(ledger, clock, 1700000201.0, 2, NODE1)
    ledger.start(index, "r3")
    clock.now = 1700000230.0
    ledger.complete(index, TrialState.KILLED, 0.7, stopped_at=1, history=[0.8, 0.7])
    index = claim(ledger, clock, 1700000231.0, 3, NODE1)
    ledger.start(index, "r4")
    (directory / "events" / UNLINKED[0]).write_bytes(UNLINKED[1])
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
