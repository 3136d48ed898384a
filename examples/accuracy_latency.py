"""A stand-in model with two objectives that pull apart: a wider, deeper net is more accurate and slower.

No data and no downloads: "accuracy" is a smooth formula of the hyperparameters (the learning rate's
best value moves with depth) plus a little seeded noise, revealed over a few epochs; "latency" grows
with width x depth. No setting is best at both, so a sweep of it has a Pareto front to find.

    python accuracy_latency.py --learning-rate 0.003 --width 256 --depth 4

Under ``mlflow sweep run`` the trial's own child run gets both metrics (``val_accuracy``,
``latency_ms``); run by hand, it logs a run of its own.
"""
from __future__ import annotations

import argparse
import math
import random
import time


def accuracy(learning_rate: float, width: int, depth: int) -> float:
    """The accuracy a setting converges to, before noise: capacity helps with diminishing returns."""
    capacity = 0.08 * (1 - math.exp(-width * depth / 600))
    lr_miss = (math.log10(learning_rate) - math.log10(3e-3 / math.sqrt(depth))) ** 2
    return 0.86 + capacity - 0.05 * lr_miss


def latency_ms(width: int, depth: int, batch_size: int) -> float:
    """Milliseconds per batch: the layers' work, plus a fixed cost per call."""
    return 2.0 + 0.004 * width * depth * batch_size / 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learning-rate", type=float, required=True)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()

    import mlflow  # after argument parsing, so --help is quick

    target = accuracy(args.learning_rate, args.width, args.depth)
    noise = random.Random(f"{args.learning_rate}/{args.width}/{args.depth}/{args.batch_size}")
    with mlflow.start_run():
        for epoch in range(args.epochs):
            time.sleep(0.02)
            reached = target * (1 - math.exp(-(epoch + 1) / 1.2)) + noise.gauss(0, 0.002)
            mlflow.log_metric("val_accuracy", reached, step=epoch)
        mlflow.log_metric("latency_ms", latency_ms(args.width, args.depth, args.batch_size) * noise.uniform(0.97, 1.03))


if __name__ == "__main__":
    main()
