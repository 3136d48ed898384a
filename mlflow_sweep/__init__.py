"""Hyperparameter sweeps for MLflow: W&B sweep files, parallel agents, nested child runs."""

from mlflow_sweep.control import ControlResult, cancel, pause, resume, retry, stop, update

__version__ = "0.2.0"

__all__ = ["ControlResult", "cancel", "pause", "resume", "retry", "stop", "update"]
