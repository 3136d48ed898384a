"""What the finalize plots share: figure size and layout, state colours, labels and whole-number ticks."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

from mlflow_sweep.analysis import Analysis
from mlflow_sweep.trials import TrialState

if TYPE_CHECKING:
    import numpy
    from matplotlib.figure import Figure

DPI = 110

STATE_COLOURS = {TrialState.FINISHED: "#2ca02c", TrialState.FAILED: "#d62728",
                 TrialState.KILLED: "#ff7f0e", TrialState.RUNNING: "#1f77b4"}

_MAX_LABEL = 14


def figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def count_trials(n: int, kind: str = "") -> str:
    """``1 finished trial``, ``2 finished trials``."""
    return f"{n} {kind}trial{'s' * (n != 1)}"


def short(label: str) -> str:
    return label if len(label) <= _MAX_LABEL else label[: _MAX_LABEL - 1] + "…"


def ordered_names(analysis: Analysis) -> list[str]:
    """Parameters by importance when there is a table, else in file order."""
    return [r.name for r in analysis.rows] if analysis.rows else list(analysis.scales)


def whole_numbers(axis: Any) -> None:
    """Ticks on whole numbers only (trial numbers, integer parameters): no 0.2, 0.4 … or 5.75."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # one trial: a single tick at 0


def jitter(n: int, spread: float, seed: int = 0) -> numpy.ndarray:
    """Deterministic jitter so stacked categorical points stay visible."""
    import numpy as np

    return np.random.default_rng(seed).uniform(-spread, spread, n)


def thin_ticks(ticks: Sequence[tuple[float, str]], most: int = 15) -> list[tuple[float, str]]:
    step = max(1, math.ceil(len(ticks) / most))
    return list(ticks[::step])
