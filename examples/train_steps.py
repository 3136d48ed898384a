"""A stand-in training script that logs ``loss`` once per step, for early-termination sweeps.

No data, no downloads: the loss is a formula of the learning rate and the step, with a short
sleep per step standing in for the work. A stable learning rate (``lr <= 1``) gives a
decreasing curve ``gap(lr) + 1 / (step + 1)``, where ``gap`` is 0 at ``lr = 0.01`` and grows with
the distance from it in decades (so 0.001 and 0.1 give the same curve); the curves of
different rates never cross, so the best trial is the best at every step. An unstable rate
(``lr > 1``) diverges: its loss starts at 2 and grows.

    python examples/train_steps.py --lr 0.03 [--steps 12] [--sleep 0.25]

Used by examples/early_terminate.yaml, tests/e2e/test_early_terminate.py and
scripts/bench_early_terminate.py (issue 6).
"""
from __future__ import annotations

import argparse
import math
import time


def loss(lr: float, step: int) -> float:
    """The loss logged at ``step`` (0-based) for learning rate ``lr``."""
    if lr > 1:
        return 2.0 + 0.5 * lr * step
    gap = round((math.log10(lr) + 2) ** 2 / 10, 9)  # rounded so 0.001 and 0.1 tie exactly
    return gap + 1.0 / (step + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, required=True, help="learning rate (> 0)")
    parser.add_argument("--steps", type=int, default=12, help="number of steps (one logged value each)")
    parser.add_argument("--sleep", type=float, default=0.25, help="seconds of 'work' per step")
    args = parser.parse_args()

    import mlflow  # after argument parsing, so --help is quick

    with mlflow.start_run():  # the agent's MLFLOW_RUN_ID makes this the trial's own run
        for step in range(args.steps):
            time.sleep(args.sleep)
            mlflow.log_metric("loss", loss(args.lr, step), step=step)
            print(f"step {step}: loss {loss(args.lr, step):.4f}", flush=True)


if __name__ == "__main__":
    main()
