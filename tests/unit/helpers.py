"""Build the sweep config the samplers and command builder need, from a W&B-style dict.

Until ``mlflow_sweep.config`` lands this flattens nested parameters and infers distributions
itself; samplers only read ``parameters``, ``method``, ``metric``, ``command`` and ``program``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from mlflow_sweep.distributions import Distribution, from_spec, infer_distribution


@dataclass(frozen=True)
class Metric:
    """The metric block, as config.Metric."""

    name: str
    goal: str = "minimize"
    target: float | None = None
    impute: str = "worst"
    summary: str = "best"


@dataclass(frozen=True)
class Config:
    """The slice of SweepConfig that samplers and command.py read."""

    parameters: Mapping[str, Distribution]
    method: str = "random"
    metric: Metric | None = None
    command: str | tuple[str, ...] = "true"
    program: str | None = None
    run_cap: int | None = 10
    seed: int | None = None
    raw: Mapping = field(default_factory=dict)


def _flatten(parameters: Mapping[str, Any], prefix: str = "") -> dict[str, Distribution]:
    out: dict[str, Distribution] = {}
    for name, spec in parameters.items():
        if "parameters" in spec:
            out.update(_flatten(spec["parameters"], f"{prefix}{name}."))
        else:
            out[prefix + name] = from_spec({**spec, "distribution": infer_distribution(spec)})
    return out


def make_config(parameters: Mapping[str, Any], method: str = "random", *,
                metric: Mapping | None = None, command: str | list[str] = "true",
                program: str | None = None) -> Config:
    """A config with W&B parameter syntax (nested ``parameters`` allowed)."""
    return Config(
        parameters=_flatten(parameters), method=method,
        metric=Metric(**metric) if metric else None,
        command=command if isinstance(command, str) else tuple(command), program=program,
        raw={"parameters": parameters, "method": method},
    )
