"""mlflow.sklearn.autolog(): the estimator's params are logged by autolog (C as 1.0 for the sweep's 1)."""
import argparse

import mlflow
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

parser = argparse.ArgumentParser()
parser.add_argument("--C", type=float, default=1.0)
args = parser.parse_args()

mlflow.sklearn.autolog(log_models=False, log_datasets=False)
X, y = load_iris(return_X_y=True)
with mlflow.start_run():
    LogisticRegression(C=args.C, max_iter=200).fit(X, y)
