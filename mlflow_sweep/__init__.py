"""Hyperparameter sweeps for MLflow: W&B sweep files, parallel agents, nested child runs."""

__version__ = "0.2.0"
