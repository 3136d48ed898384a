"""Samplers: ``propose(config, history, seed, index)`` -> the next trial's parameters or DONE.

Samplers are pure (no mlflow, files, clock or subprocess). The agent enforces ``run_cap`` and
``metric.target``; a sampler only says what comes next, or DONE when a grid is exhausted.
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from mlflow_sweep.trials import Proposal, Trial, _Done

# method -> module; imported on first use so `bayes` (skopt) costs nothing for other methods.
_OPTUNA = "mlflow_sweep.samplers.optuna_search"
_MODULES = {
    "grid": "mlflow_sweep.samplers.grid",
    "random": "mlflow_sweep.samplers.random",
    "bayes": "mlflow_sweep.samplers.bayes",
    "tpe": _OPTUNA,
    "gp": _OPTUNA,
    "cmaes": _OPTUNA,
    "nsga2": _OPTUNA,
}


def propose(config: Any, history: Sequence[Trial], seed: int, index: int) -> Proposal | _Done:
    """Next trial for ``config`` given every trial so far.

    Args:
        config: the sweep's ``SweepConfig`` (``method``, ``parameters``, ``metric``).
        history: every trial of the sweep the ledger knows, in any state.
        seed: the sweep's effective seed.
        index: the index the new trial will get (0-based, unique within the sweep).
    """
    if config.method not in _MODULES:
        raise ValueError(f"unknown method {config.method!r} (known: {', '.join(_MODULES)})")
    return import_module(_MODULES[config.method]).propose(config, history, seed, index)


def prepare(method: str) -> None:
    """Import what ``method`` needs now, outside the ledger lock (bayes: skopt, about 1 s).

    Optuna's methods first check that their optional packages are installed, and raise the
    ``ConfigError`` that names the install command when one is not.

    Args:
        method: the sweep's ``method``.
    """
    module = import_module(_MODULES[method])
    if hasattr(module, "prepare"):
        module.prepare(method)
    elif hasattr(module, "preload"):
        module.preload()
