"""What Hugging Face's Trainer does through its MLflowCallback, in plain MLflow calls (no torch).

The callback honours MLFLOW_RUN_ID, logs every TrainingArguments field as a param (num_train_epochs
as a float: 3.0 for the sweep's 3) and logs eval metrics per epoch.
"""
import argparse
from dataclasses import asdict, dataclass

import mlflow


@dataclass
class TrainingArguments:
    output_dir: str = "out"
    learning_rate: float = 5e-05
    num_train_epochs: float = 3.0
    per_device_train_batch_size: int = 8
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    lr_scheduler_type: str = "linear"
    seed: int = 42
    fp16: bool = False
    report_to: str = "mlflow"


parser = argparse.ArgumentParser()
parser.add_argument("--learning_rate", type=float, default=5e-05)
parser.add_argument("--num_train_epochs", type=float, default=3.0)
cli = parser.parse_args()
training_args = TrainingArguments(learning_rate=cli.learning_rate, num_train_epochs=cli.num_train_epochs)

mlflow.start_run()  # the callback's setup: MLFLOW_RUN_ID makes it the trial's child run
mlflow.log_params(asdict(training_args))
for epoch in range(int(training_args.num_train_epochs)):
    mlflow.log_metrics({"eval_loss": 1.0 / (epoch + 1) + training_args.learning_rate * 1000, "epoch": epoch + 1},
                       step=epoch)
mlflow.end_run()
