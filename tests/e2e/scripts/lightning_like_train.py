"""What PyTorch Lightning's MLFlowLogger does, in plain MLflow calls (no torch).

The logger ignores MLFLOW_RUN_ID and opens a run of its own in experiment 'lightning_logs',
unless it is given run_id=os.environ["MLFLOW_RUN_ID"].
"""
import argparse
import os

from mlflow import MlflowClient

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--pass_run_id", type=lambda s: s == "True", default=False)
args = parser.parse_args()

client = MlflowClient()
if args.pass_run_id:  # MLFlowLogger(run_id=os.environ["MLFLOW_RUN_ID"], ...)
    run_id = os.environ["MLFLOW_RUN_ID"]
else:  # MLFlowLogger(experiment_name="lightning_logs"): a run of its own
    experiment = client.get_experiment_by_name("lightning_logs")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("lightning_logs")
    run_id = client.create_run(experiment_id).info.run_id
for step in range(3):
    client.log_metric(run_id, "val_loss", args.lr / (step + 1), step=step)
if not args.pass_run_id:
    client.set_terminated(run_id)
