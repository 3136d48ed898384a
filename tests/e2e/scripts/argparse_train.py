"""The most common MLflow training script: argparse with type=float, then log_params(vars(args))."""
import argparse

import mlflow

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--wd", type=float, default=0.0)
args = parser.parse_args()

with mlflow.start_run():
    mlflow.log_params(vars(args))  # 1.0 for the sweep's 1, 0.0 for its 0
    for step in range(3):
        mlflow.log_metric("loss", (args.lr - 0.1) ** 2 + args.wd + 1.0 / (step + 1), step=step)
