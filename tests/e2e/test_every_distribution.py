"""Every W&B distribution through a real agent, and ``summary: last`` through the whole trial path.

One random sweep whose parameters use all 17 distributions runs 6 function trials in this process
against a real sqlite store. Each value the function received, and the param logged on its child
run, must lie in its distribution's support, written out here independently of the package. Each
trial logs its metric three times; with ``summary: last`` the value counted (ledger, the child
run's ``sweep.loss``, the best so far) is the last one, not the lowest.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

import mlflow_sweep
from tests.conftest import Store, make_store
from tests.e2e.agents import child_runs, ledger_events

pytestmark = [pytest.mark.e2e]

TRIALS = 6


def _multiple(x: float, q: float) -> bool:
    return abs(x / q - round(x / q)) < 1e-6


def _real(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# name → (the parameter's spec, its support)
PARAMETERS: dict[str, tuple[dict[str, Any], Callable[[Any], bool]]] = {
    "const": ({"value": 7}, lambda x: x == 7 and type(x) is int),
    "cat": ({"values": ["a", 3, False]}, lambda x: x in ("a", 3) or x is False),
    "catp": ({"values": ["lo", "hi"], "probabilities": [0.5, 0.5]}, lambda x: x in ("lo", "hi")),
    "iu": ({"distribution": "int_uniform", "min": -3, "max": 4}, lambda x: type(x) is int and -3 <= x <= 4),
    "u": ({"distribution": "uniform", "min": -1.0, "max": 2.0}, lambda x: _real(x) and -1 <= x <= 2),
    "qu": ({"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 0.1},
           lambda x: _real(x) and 0 <= x <= 1 and _multiple(x, 0.1)),
    "lu": ({"distribution": "log_uniform", "min": -9.0, "max": -2.0},
           lambda x: _real(x) and math.exp(-9) <= x <= math.exp(-2)),
    "qlu": ({"distribution": "q_log_uniform", "min": 0.0, "max": 6.0, "q": 2},
            lambda x: _real(x) and 0 <= x <= math.exp(6) + 2 and _multiple(x, 2)),
    "luv": ({"distribution": "log_uniform_values", "min": 1e-5, "max": 0.1},
            lambda x: _real(x) and 1e-5 <= x <= 0.1),
    "qluv": ({"distribution": "q_log_uniform_values", "min": 1.0, "max": 256.0, "q": 1},
             lambda x: _real(x) and 1 <= x <= 256 and _multiple(x, 1)),
    "ilu": ({"distribution": "inv_log_uniform", "min": 1.0, "max": 5.0},
            lambda x: _real(x) and math.exp(-5) <= x <= math.exp(-1)),
    "iluv": ({"distribution": "inv_log_uniform_values", "min": 0.01, "max": 1.0},
             lambda x: _real(x) and 0.01 <= x <= 1),
    "n": ({"distribution": "normal", "mu": 3.0, "sigma": 0.5}, _real),
    "qn": ({"distribution": "q_normal", "mu": 10.0, "sigma": 2.0, "q": 0.5}, lambda x: _real(x) and _multiple(x, 0.5)),
    "ln": ({"distribution": "log_normal", "mu": 0.0, "sigma": 1.0}, lambda x: _real(x) and x > 0),
    "qln": ({"distribution": "q_log_normal", "mu": 2.0, "sigma": 0.5, "q": 0.5},
            lambda x: _real(x) and x >= 0 and _multiple(x, 0.5)),
    "b": ({"distribution": "beta", "a": 2.0, "b": 5.0}, lambda x: _real(x) and 0 <= x <= 1),
    "qb": ({"distribution": "q_beta", "a": 0.5, "b": 0.5, "q": 0.1},
           lambda x: _real(x) and 0 <= x <= 1 and _multiple(x, 0.1)),
}
CURVE = [0.5, 0.1, 0.3]  # each trial logs loss + i/100 at three steps; the last counts, not the lowest


@dataclass
class Swept:
    store: Store
    sweep_id: str
    received: dict[int, dict[str, Any]]
    status: Any


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory, template_store: Path) -> Swept:
    import mlflow

    store = make_store(tmp_path_factory.mktemp("every"), template_store)
    received: dict[int, dict[str, Any]] = {}

    def train(params: dict[str, Any]) -> None:
        trial = len(received)
        received[trial] = dict(params)
        for step, value in enumerate(CURVE):
            mlflow.log_metric("loss", value + trial / 100, step=step)
        mlflow.set_tag("test.trial", str(trial))

    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
            mp.delenv(key)
        mp.setenv("MLFLOW_TRACKING_URI", store.uri)
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        sweep_id = mlflow_sweep.sweep({
            "method": "random", "run_cap": TRIALS, "seed": 4,
            "metric": {"name": "loss", "goal": "minimize", "summary": "last"},
            "parameters": {name: spec for name, (spec, _) in PARAMETERS.items()}})
        result = mlflow_sweep.agent(sweep_id, function=train)
        assert (result.ran, result.failed) == (TRIALS, 0)
        status = mlflow_sweep.status(sweep_id)
    return Swept(store, sweep_id, received, status)


def test_the_sweep_uses_every_distribution():
    from mlflow_sweep.config import config_from_dict
    from mlflow_sweep.distributions import REGISTRY

    cfg = config_from_dict({"command": "true", "parameters": {n: s for n, (s, _) in PARAMETERS.items()}}, "x.yaml")
    assert sorted({d.name for d in cfg.parameters.values()}) == sorted(REGISTRY)


def test_every_value_lies_in_its_support(swept: Swept):
    outside = {(trial, name): value for trial, params in swept.received.items()
               for name, value in params.items() if not PARAMETERS[name][1](value)}
    assert (len(swept.received), outside) == (TRIALS, {})


def test_the_child_runs_params_are_the_values_the_function_received(swept: Swept):
    runs = {int(r.data.tags["test.trial"]): r for r in child_runs(swept.store, swept.sweep_id)}
    assert {trial: run.data.params for trial, run in runs.items()} == {
        trial: {name: str(value) for name, value in params.items()} for trial, params in swept.received.items()}


def test_summary_last_counts_the_last_logged_value(swept: Swept):
    runs = {int(r.data.tags["test.trial"]): r for r in child_runs(swept.store, swept.sweep_id)}
    ends = {e["trial"]: e["metric"] for e in ledger_events(swept.store, swept.sweep_id) if e.get("event") == "end"}
    last = {trial: pytest.approx(CURVE[-1] + trial / 100) for trial in range(TRIALS)}
    assert {trial: run.data.metrics["sweep.loss"] for trial, run in runs.items()} == last
    assert {trial: ends[int(run.data.tags["sweep.trial"])] for trial, run in runs.items()} == last
    assert swept.status.best_value == pytest.approx(CURVE[-1])  # trial 0's last value; its lowest was 0.1
