"""A stand-in training script for the example sweeps: no data, no downloads, a few seconds.

"Accuracy" is a smooth formula of the hyperparameters plus a little seeded noise, revealed
over a short per-epoch loop, so sweeps, plots and the importance table have something real
to show: the learning rate matters most (its best value depends on the optimizer), then the
optimizer and dropout; the batch size barely matters.

    python train.py --learning-rate 0.003 --batch-size 64 --optimizer adam --dropout 0.2

Under ``mlflow sweep run`` the agent's MLFLOW_RUN_ID makes ``mlflow.start_run()`` log into the
trial's own child run. Run by hand, it logs a run of its own in the current experiment.
"""
from __future__ import annotations

import argparse
import math
import random
import time

BEST_LR = {"adam": 3e-3, "sgd": 3e-2, "rmsprop": 1e-3}
PEAK = {"adam": 0.96, "sgd": 0.94, "rmsprop": 0.95}


def final_accuracy(learning_rate: float, batch_size: int, optimizer: str, dropout: float) -> float:
    """The accuracy a setting converges to, before noise."""
    lr_miss = (math.log10(learning_rate) - math.log10(BEST_LR[optimizer])) ** 2
    bs_miss = abs(math.log2(batch_size / 64))
    return PEAK[optimizer] - 0.12 * lr_miss - 0.004 * bs_miss - 0.3 * (dropout - 0.2) ** 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learning-rate", type=float, required=True)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--optimizer", choices=sorted(BEST_LR), default="adam")
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--sleep", type=float, default=0.05, help="seconds of 'work' per epoch")
    args = parser.parse_args()
    if args.learning_rate <= 0:
        parser.error("--learning-rate must be positive")

    import mlflow  # after argument parsing, so --help is quick

    target = final_accuracy(args.learning_rate, args.batch_size, args.optimizer, args.dropout)
    noise = random.Random(f"{args.learning_rate}/{args.batch_size}/{args.optimizer}/{args.dropout}")
    with mlflow.start_run():
        for epoch in range(args.epochs):
            time.sleep(args.sleep)
            progress = 1 - math.exp(-(epoch + 1) / 1.5)
            accuracy = max(0.0, target * progress + noise.gauss(0, 0.003))
            mlflow.log_metrics({"val_accuracy": accuracy, "val_loss": 1 - accuracy}, step=epoch)
            print(f"epoch {epoch}: val_accuracy {accuracy:.4f}", flush=True)


if __name__ == "__main__":
    main()
