"""Hyperparameter sweeps for MLflow: W&B sweep files, parallel agents, nested child runs.

The Python API (the W&B way: ``sweep``, ``agent``, ``params``, ...) is here at package level; each function imports what it needs when
called, so ``import mlflow_sweep`` (and ``mlflow sweep --help``) stays cheap.
"""

from mlflow_sweep.api import agent, finalize, params, should_stop, status, sweep
from mlflow_sweep.control import ControlResult, cancel, enqueue, pause, resume, retry, stop, update
from mlflow_sweep.errors import ConfigError, SweepError

__version__ = "0.2.0"

__all__ = ["ConfigError", "ControlResult", "SweepError", "agent", "cancel", "enqueue", "finalize", "params", "pause",
           "resume", "retry", "should_stop", "status", "stop", "sweep", "update"]
