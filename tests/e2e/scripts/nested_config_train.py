"""A script that reads the trial's parameters as a nested config and logs the config dict itself."""
import json
import os

import mlflow

with open(os.environ["MLFLOW_SWEEP_PARAMS_FILE"]) as f:
    config = json.load(f)  # {"model.depth": 2, "optimizer": {"lr": 0.01, "momentum": 0.9}}

with mlflow.start_run():
    mlflow.log_params({"optimizer": config["optimizer"]})  # a dict logged as one param, as scripts do
    mlflow.log_param("optimizer.lr", f"{config['optimizer']['lr']:.3f}")  # its own text for a leaf
    mlflow.log_dict(config, "config.json")
    mlflow.log_metric("loss", config["optimizer"]["lr"] * config["model.depth"])
