"""Sweep a scikit-learn model from Python: 20 bayes trials run in this process, then finalize.

    MLFLOW_TRACKING_URI=sqlite:///mlflow.db python examples/python_api.py

The sweep has no ``program`` and no ``command``: its trials are the function ``train``, called
in this process (no Python start-up, no ``import mlflow`` per trial), each as a child run of the
sweep's parent run. ``train`` logs with MLflow's fluent API, which logs into the trial's own run.
The data set ships with scikit-learn (breast cancer, 569 samples), so nothing is downloaded.

In a notebook, the same three calls in three cells: ``sweep_id = mlflow_sweep.sweep(CONFIG)``,
``mlflow_sweep.agent(sweep_id, function=train)`` (the stop button ends the running trial KILLED
and returns), ``mlflow_sweep.finalize(sweep_id)`` (shows the importance table).
"""
from __future__ import annotations

import functools
from typing import Any

import mlflow

import mlflow_sweep

CONFIG: dict[str, Any] = {
    "sweep_name": "svm-breast-cancer",
    "method": "bayes",
    "metric": {"name": "val_accuracy", "goal": "maximize"},
    "run_cap": 20,
    "seed": 7,
    "parameters": {
        "scaler": {"values": ["standard", "minmax", "none"]},
        "svm": {  # a nested block: train gets params["svm"] as a dict; MLflow shows svm.C, svm.gamma, ...
            "parameters": {
                "C": {"distribution": "log_uniform_values", "min": 0.01, "max": 1000.0},
                "gamma": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1.0},
                "kernel": {"values": ["rbf", "sigmoid"]},
            },
        },
    },
}


@functools.lru_cache(maxsize=1)
def _data() -> tuple[Any, Any]:
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer(return_X_y=True)


def train(params: dict[str, Any]) -> float:
    """Fit an SVM with these params; log and return its 3-fold cross-validated accuracy."""
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, StandardScaler
    from sklearn.svm import SVC

    svm = params["svm"]
    steps = {"standard": [StandardScaler()], "minmax": [MinMaxScaler()], "none": []}[params["scaler"]]
    model = make_pipeline(*steps, SVC(C=svm["C"], gamma=svm["gamma"], kernel=svm["kernel"]))
    X, y = _data()
    accuracy = float(cross_val_score(model, X, y, cv=3).mean())
    mlflow.log_metric("val_accuracy", accuracy)  # the sweep's metric, on the trial's child run
    return accuracy


def main() -> None:
    sweep_id = mlflow_sweep.sweep(CONFIG, experiment_name="python-api-example")
    mlflow_sweep.agent(sweep_id, function=train)
    report = mlflow_sweep.finalize(sweep_id)  # prints nothing: the report is a value
    print(report)
    print(f"\nbest: {report.best_value:.4f} with {report.best_params} (run {report.best_run_id})")


if __name__ == "__main__":
    main()
