"""Micro-benchmark: ledger claim and complete cost at trial 1 vs trial 1000 (should be flat).

Not a test (speed is measured by benchmarks, never asserted by a timed test). Run::

    python tests/ledger/bench_ledger.py [--trials 1000] [--dir DIR] [--no-fsync]

``--no-fsync`` replaces os.fsync by a no-op to show the ledger's own cost apart from the disk's.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from mlflow_sweep.ledger import Ledger
from mlflow_sweep.trials import DONE, Proposal, TrialState

CAP = 10**9


def decide(state):
    """A cap-like decide, as the agent's: it looks at the whole history."""
    return DONE if state.count() >= CAP else Proposal({"lr": 0.01, "batch": 32, "n": len(state.trials)})


def run(directory: Path, trials: int) -> tuple[list[float], list[float]]:
    """Claim and complete ``trials`` trials; per-trial seconds for each."""
    ledger = Ledger.create(directory, {"config": {}, "seed": 0, "sweep_id": "bench"})
    claims, completes = [], []
    for _ in range(trials):
        t0 = time.perf_counter()
        trial = ledger.claim(decide, "bench-agent").trial
        t1 = time.perf_counter()
        ledger.complete(trial.index, TrialState.FINISHED, 0.5)
        completes.append(time.perf_counter() - t1)
        claims.append(t1 - t0)
    return claims, completes


def describe(name: str, times: list[float]) -> str:
    ms = [t * 1e3 for t in times]
    first, last = statistics.median(ms[:100]), statistics.median(ms[-100:])
    return (f"{name:8s} trial 1 {ms[0]:6.2f} ms | median trials 1-100 {first:6.2f} ms, "
            f"{len(ms) - 99}-{len(ms)} {last:6.2f} ms (x{last / first:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--dir", type=Path, help="where to write (default: a temporary directory)")
    parser.add_argument("--no-fsync", action="store_true")
    args = parser.parse_args()
    if args.no_fsync:
        os.fsync = lambda fd: None
    base = Path(tempfile.mkdtemp(dir=args.dir))
    claims, completes = run(base / "ledger", args.trials)
    print(f"[events{', no fsync' if args.no_fsync else ''}]")
    print(describe("claim", claims))
    print(describe("complete", completes))
    t0 = time.perf_counter()
    count = Ledger(base / "ledger").state().count()
    print(f"cold read of {count} trials ({count * 2 + 1} events): {(time.perf_counter() - t0) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
