"""Build a checked SweepConfig for sampler and command tests from W&B-style parameters."""
from __future__ import annotations

from typing import Any, Mapping

from mlflow_sweep.config import SweepConfig, config_from_dict


def make_config(parameters: Mapping[str, Any], method: str = "random", *,
                metric: Mapping | None = None, command: str | list[str] = "true",
                program: str | None = None, metrics: list[Mapping] | None = None) -> SweepConfig:
    """A config through ``config_from_dict``, so tests see what users get (nested allowed)."""
    data: dict[str, Any] = {"method": method, "parameters": parameters, "command": command}
    if metric is not None:
        data["metric"] = dict(metric)
    if metrics is not None:
        data["metrics"] = [dict(m) for m in metrics]
    if program is not None:
        data["program"] = program
    return config_from_dict(data, "test.yaml")
