"""The sweep over time: each trial's metric with the best so far, and the trial timeline by state."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from mlflow_sweep.analysis import Analysis
from mlflow_sweep.plots.common import STATE_COLOURS, count_trials, figure, whole_numbers
from mlflow_sweep.trials import Trial

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def metric_over_time(analysis: Analysis, scored: Sequence[Trial]) -> Figure:
    """Each finished trial's metric at its end time, the best-so-far line, and the best trial starred."""
    import numpy as np

    timed = all(t.ended is not None for t in scored)
    order = sorted(scored, key=lambda t: (t.ended, t.index) if timed else (t.index, 0))
    origin, size, unit = _clock(order)
    x = np.array([(t.ended - origin) / size if timed else t.index for t in order])
    y = np.array([float(t.metric) for t in order])
    best_so_far = np.maximum.accumulate(y) if analysis.goal == "maximize" else np.minimum.accumulate(y)
    fig = figure(9, 5)
    ax = fig.add_subplot()
    ax.scatter(x, y, s=12 if len(y) > 200 else 24, alpha=0.55, color="#4c72b0", label="trial", linewidths=0)
    ax.step(x, best_so_far, where="post", color="#c44e52", linewidth=2, label="best so far")
    b = int(np.flatnonzero(y == best_so_far[-1])[0])
    ax.scatter([x[b]], [y[b]], marker="*", s=220, color="#c44e52", edgecolor="black", zorder=3,
               label=f"best: #{order[b].index} = {y[b]:.4g}")
    if y.min() > 0 and y.max() / y.min() > 1000:
        ax.set_yscale("log")
    ax.set_xlabel(f"time since the sweep started ({unit})" if timed else "trial number")
    if not timed:
        whole_numbers(ax.xaxis)
    ax.set_ylabel(analysis.metric or "metric")
    ax.set_title(f"{analysis.metric} over time ({analysis.goal}), {count_trials(len(y), 'finished ')}")
    fig.legend(fontsize=8, loc="outside lower center", ncols=3)
    ax.grid(alpha=0.3)
    return fig


def timeline(trials: Sequence[Trial]) -> Figure:
    """One horizontal bar per trial from start to end, coloured by state; running trials run to the last event."""
    import numpy as np

    timed = [t for t in trials if t.started is not None]
    origin, size, unit = _clock(timed)
    now = max(t for tr in timed for t in (tr.started, tr.ended) if t is not None)
    fig = figure(10, min(3 + 0.12 * len(timed), 9))
    ax = fig.add_subplot()
    width = float(np.clip(250 / max(len(timed), 1), 0.6, 8))
    shortest = 0.004 * max((now - origin) / size, 1e-9)
    for state, colour in STATE_COLOURS.items():
        group = [t for t in timed if t.state is state]
        if group:
            starts = [(t.started - origin) / size for t in group]
            ends = [max((((t.ended if t.ended is not None else now) - origin) / size), s + shortest)
                    for t, s in zip(group, starts)]  # very short trials stay visible
            ax.hlines([t.index for t in group], starts, ends, colors=colour, linewidth=width,
                      label=f"{state.value.lower()} ({len(group)})")
    dead = [t for t in timed if t.dead]
    if dead:
        ax.scatter([((t.ended or now) - origin) / size for t in dead], [t.index for t in dead],
                   marker="x", color="black", s=20, label=f"agent died ({len(dead)})", zorder=3)
    indices = [t.index for t in timed]
    ax.set_ylim(max(indices) + 0.6, min(indices) - 0.6)  # trial 0 on top, half a row of room
    if len(indices) <= 20:
        ax.set_yticks(indices)  # few trials: every one is labelled
    else:
        whole_numbers(ax.yaxis)
    ax.set_xlabel(f"time since the sweep started ({unit})")
    ax.set_ylabel("trial number")
    ax.set_title(f"Trial timeline, {count_trials(len(timed))}")
    fig.legend(fontsize=8, loc="outside lower center", ncols=5)
    ax.grid(axis="x", alpha=0.3)
    return fig


def _time_unit(seconds: float) -> tuple[float, str]:
    for size, unit in ((3600.0, "hours"), (60.0, "minutes")):
        if seconds >= 2 * size:
            return size, unit
    return 1.0, "seconds"


def _clock(trials: Sequence[Trial]) -> tuple[float, float, str]:
    """Origin, unit size and unit name for the sweep's time axis."""
    times = [t for tr in trials for t in (tr.started, tr.ended) if t is not None]
    origin = min(times, default=0.0)
    size, unit = _time_unit(max(times, default=0.0) - origin)
    return origin, size, unit
