"""The Pareto front of a sweep with several objectives: every trial's values, the front drawn out.

Two objectives: one panel, the front joined as a staircase (the region it dominates lies behind
it). More: one panel per pair of objectives, the front's trials marked in each (a trial on the
front may look dominated in a pair that leaves out the objective it is good at).
"""
from __future__ import annotations

from itertools import combinations
from typing import TYPE_CHECKING, Any, Sequence

from mlflow_sweep.plots.common import figure
from mlflow_sweep.trials import Trial

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_MAX_LABELS = 25


def pareto_front(scored: Sequence[Trial], front: Sequence[Trial], objectives: Sequence[Any]) -> Figure:
    """The front against every scored trial; pairwise panels for more than two objectives.

    Args:
        scored: the trials with a value for every objective (``analysis.scored``).
        front: the non-dominated ones (``analysis.pareto_front``).
        objectives: the config's ``objectives`` (``name``, ``goal``).
    """
    pairs = list(combinations(range(len(objectives)), 2))
    columns = min(len(pairs), 3)
    rows = -(-len(pairs) // columns)
    fig = figure(7.5 if len(pairs) == 1 else 4.6 * columns, 5.5 if len(pairs) == 1 else 4.2 * rows)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, (i, j) in zip(axes, pairs):
        _panel(ax, scored, front, objectives, i, j, staircase=len(objectives) == 2)
    for ax in axes[len(pairs):]:
        ax.set_visible(False)
    goals = ", ".join(f"{m.name} ({m.goal})" for m in objectives)
    fig.suptitle(f"Pareto front: {len(front)} of {len(scored)} trials; {goals}")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncols=3)
    return fig


def _panel(ax: Axes, scored: Sequence[Trial], front: Sequence[Trial], objectives: Sequence[Any],
           i: int, j: int, *, staircase: bool) -> None:
    """Objective ``i`` across, ``j`` up: every trial in grey, the front's trials in red, labelled."""
    names = [m.name for m in objectives]
    x, y = _column(scored, names, i), _column(scored, names, j)
    fx, fy = _column(front, names, i), _column(front, names, j)
    ax.scatter(x, y, s=18, color="#9e9e9e", alpha=0.6, linewidths=0, label="trial")
    ax.scatter(fx, fy, s=46, color="#c44e52", edgecolor="black", linewidths=0.5, zorder=3, label="on the front")
    if staircase:
        _staircase(ax, fx, fy, objectives[i], objectives[j])
    if len(front) <= _MAX_LABELS:
        for t, a, b in zip(front, fx, fy):
            ax.annotate(f"#{t.index}", (a, b), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel(f"{names[i]} ({_better(objectives[i])})")
    ax.set_ylabel(f"{names[j]} ({_better(objectives[j])})")
    ax.grid(alpha=0.3)


def _column(trials: Sequence[Trial], names: Sequence[str], k: int) -> list[float]:
    return [float(t.values(names)[k]) for t in trials]


def _staircase(ax: Axes, fx: Sequence[float], fy: Sequence[float], first: Any, second: Any) -> None:
    """The front as steps: sorted along the first objective, the second held until the next point."""
    points = sorted(zip(fx, fy), key=lambda p: first.sign * p[0])
    if len(points) < 2:
        return
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    ax.step(xs, ys, where="post", color="#c44e52", linewidth=1.4, alpha=0.8, label="front")


def _better(objective: Any) -> str:
    return "lower is better" if objective.goal == "minimize" else "higher is better"
