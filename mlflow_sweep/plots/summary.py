"""The table as bars: impurity and permutation importance (two panels), Pearson and Spearman."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from mlflow_sweep.analysis import Analysis
from mlflow_sweep.plots.common import figure, short

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def importance(analysis: Analysis) -> Figure:
    """Impurity and permutation importance in two panels: they are different quantities on different scales.

    Impurity importance is each parameter's share of the forest's split gain (the column sums
    to 1); permutation importance is the drop in R² when the parameter is shuffled (it can be
    negative, and the column need not sum to 1). One shared axis would compare the two as one.
    """
    rows = analysis.rows
    fig = figure(10, 1.9 + 0.32 * len(rows))
    impurity, permutation = fig.subplots(1, 2, sharey=True)
    y = _parameter_rows(impurity, analysis)
    _bars(impurity, y, [r.importance for r in rows], 0.0, 0.6, "#4c72b0")
    impurity.set_title("impurity importance", fontsize=10)
    impurity.set_xlabel("share of the random forest's split gain (sums to 1)")
    _bars(permutation, y, [r.permutation for r in rows], 0.0, 0.6, "#dd8452")
    permutation.set_title("permutation importance", fontsize=10)
    permutation.set_xlabel("drop in R² when the parameter is shuffled")
    fig.suptitle(f"Parameter importance for {analysis.metric} ({analysis.goal}), {analysis.used} trials")
    return fig


def correlation(analysis: Analysis) -> Figure:
    """Pearson and Spearman side by side per parameter, on one axis from -1 to 1 (both are correlations)."""
    rows = analysis.rows
    fig = figure(8, 1.9 + 0.38 * len(rows))
    ax = fig.add_subplot()
    y = _parameter_rows(ax, analysis)
    _bars(ax, y, [r.pearson for r in rows], 0.2, 0.38, "#4c72b0", "Pearson")
    _bars(ax, y, [r.spearman for r in rows], -0.2, 0.38, "#dd8452", "Spearman")
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel(f"correlation with {analysis.metric} (categoricals: with the category's mean)")
    fig.legend(loc="outside lower center", ncols=2, fontsize=8)
    fig.suptitle(f"Correlation of each parameter with {analysis.metric}, {analysis.used} trials")
    return fig


def _bars(ax: Axes, y: Any, values: Sequence[float | None], offset: float, height: float, colour: str,
          label: str | None = None) -> None:
    """Horizontal bars at ``y + offset``; a missing value is written "n/a", not drawn as zero."""
    ax.barh(y + offset, [0.0 if v is None else v for v in values], height=height, color=colour, label=label)
    for yi, v in zip(y, values):
        if v is None:
            ax.text(0, yi + offset, " n/a", va="center", fontsize=7, color="grey")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.grid(axis="x", alpha=0.3)


def _parameter_rows(ax: Axes, analysis: Analysis) -> Any:
    """Parameter names down the y axis, most important on top; returns their y positions."""
    import numpy as np

    y = np.arange(len(analysis.rows))[::-1]
    ax.set_yticks(y, [short(r.name) for r in analysis.rows])
    ax.set_ylim(-0.7, len(analysis.rows) - 0.3)
    return y
