"""The search methods a sweep file may name, what each needs, and whether it is installed.

One table, read by the config checks (which method needs a metric, which searches several
objectives), by the samplers (Optuna's class behind each Optuna method) and by the docs. Optuna's
samplers are an optional extra, so a missing package is found here without importing it.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib.util import find_spec

OPTUNA_INSTALL = 'pip install "mlflow-sweep[optuna]"'
TORCH_INSTALL = "pip install torch (the CPU build is enough)"


@dataclass(frozen=True)
class Method:
    """One value of ``method``.

    ``needs_metric``: the method learns from the trials' values, so ``metric`` or ``metrics`` is
    required. ``several``: it works with ``metrics:`` (grid and random ignore the values; a model
    of several objectives searches their Pareto front). ``optuna``: the Optuna sampler class behind
    it. ``modules``: (module, install command) for every package it needs beyond the base install.
    """

    name: str
    needs_metric: bool
    several: bool
    optuna: str | None = None
    modules: tuple[tuple[str, str], ...] = ()


_OPTUNA = (("optuna", OPTUNA_INSTALL),)

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("grid", needs_metric=False, several=True),
    Method("random", needs_metric=False, several=True),
    Method("bayes", needs_metric=True, several=False),
    Method("tpe", needs_metric=True, several=True, optuna="TPESampler", modules=_OPTUNA),
    Method("gp", needs_metric=True, several=True, optuna="GPSampler",
           modules=(*_OPTUNA, ("torch", TORCH_INSTALL))),
    Method("cmaes", needs_metric=True, several=False, optuna="CmaEsSampler",
           modules=(*_OPTUNA, ("cmaes", OPTUNA_INSTALL))),
    Method("nsga2", needs_metric=True, several=True, optuna="NSGAIISampler", modules=_OPTUNA),
)}
"""Every method by name, in the order the docs list them."""

SEVERAL = tuple(name for name, m in METHODS.items() if m.several and m.needs_metric)
"""The methods that search several objectives (their Pareto front)."""

CUSTOM = "custom"
"""W&B's ``method: custom``: the search is the ``scheduler`` block's engine."""

ENGINE_DEFAULT = "tpe"
"""What W&B's ``scheduler: {engine: optuna}`` runs: Optuna's default sampler (``create_study``'s)."""


def missing(method: str) -> list[tuple[str, str]]:
    """The packages ``method`` needs that are not installed, each with its install command.

    Found with ``importlib.util.find_spec``: nothing is imported.

    Args:
        method: a key of ``METHODS``.
    """
    entry = METHODS.get(method)
    return [(module, hint) for module, hint in (entry.modules if entry else ()) if find_spec(module) is None]


def missing_reason(method: str, gaps: list[tuple[str, str]]) -> str:
    """The sentence that says what to install, e.g. ``method tpe needs optuna, not installed: pip …``.

    Args:
        method: the sweep's method.
        gaps: what ``missing`` returned (not empty).
    """
    names = ", ".join(module for module, _ in gaps)
    commands = "; ".join(dict.fromkeys(hint for _, hint in gaps))
    sampler = METHODS[method].optuna
    what = f"method {method} (Optuna's {sampler})" if sampler else f"method {method}"
    return f"{what} needs {names}, which {'is' if len(gaps) == 1 else 'are'} not installed: {commands}"
