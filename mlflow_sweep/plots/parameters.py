"""The parameters' plots: parallel coordinates, and the metric against each parameter.

A parameter becomes an ``_Axis``: numbers stay numbers (log when configured so, whole numbers when
every value is an int), categoricals become slots in the sweep file's order, never-sampled values
included, so a plot reads as the sweep file does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from mlflow_sweep.analysis import CATEGORICAL, LOG, Analysis, category_label, effective_scale
from mlflow_sweep.plots.common import (STATE_COLOURS, count_trials, figure, jitter, ordered_names, short,
                                       thin_ticks, whole_numbers)
from mlflow_sweep.trials import Trial, is_number, trial_label

if TYPE_CHECKING:
    import numpy
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class _Axis:
    """A parameter placed on an axis: data positions, categorical tick labels, log, whole numbers."""

    name: str
    pos: Any
    ticks: tuple[tuple[float, str], ...]
    log: bool
    integer: bool = False


def parallel_coordinates(analysis: Analysis, trials: Sequence[Trial], scored: Sequence[Trial]) -> Figure:
    """Parallel coordinates: one axis per parameter (most important first) and the metric last.

    Numeric axes are scaled to their range (log axes in log space), categoricals get evenly
    spaced slots with a little jitter. Lines are coloured by metric, or by state without one.
    """
    import numpy as np
    from matplotlib.collections import LineCollection

    shown = list(scored) if analysis.metric else [t for t in trials if t.params]
    names = ordered_names(analysis)
    axes = [_axis(analysis, n, [t.params.get(n) for t in shown]) for n in names]
    columns = [_unit_interval(a, len(shown)) for a in axes]
    labels = [short(n) for n in names]
    if analysis.metric and shown:
        axes.append(_Axis(analysis.metric, np.array([float(t.metric) for t in shown]), (), False))
        columns.append(_unit_interval(axes[-1], len(shown)))
        labels.append(f"{short(analysis.metric)}\n({analysis.goal})")
    fig = figure(min(18.0, max(8.0, 0.8 * len(axes) + 3)), 6 if len(axes) <= 10 else 7)
    ax = fig.add_subplot()
    ys = np.column_stack(columns) if columns else np.zeros((len(shown), 0))
    xs = np.arange(len(axes), dtype=float)
    segments = [np.column_stack([xs, row]) for row in ys]
    lines = LineCollection(segments, linewidths=0.6 if len(shown) > 200 else 1.2,
                           alpha=0.35 if len(shown) > 200 else 0.7)
    _colour_lines(fig, ax, lines, analysis, shown)
    ax.add_collection(lines)
    if analysis.best is not None and analysis.best in shown:
        ax.plot(xs, ys[shown.index(analysis.best)], color="#c44e52", linewidth=2.5,
                label=f"best: {trial_label(analysis.best)}")
        fig.legend(fontsize=8, loc="outside lower center")
    _draw_axes(ax, axes, labels)
    ax.set_title(f"Parallel coordinates, {count_trials(len(shown), 'finished ' if analysis.metric else '')}")
    return fig


def metric_vs_parameters(analysis: Analysis, scored: Sequence[Trial]) -> Figure:
    """One scatter per parameter (most important first): the metric against its values, best starred."""
    import numpy as np

    names = ordered_names(analysis)
    ncols = math.ceil(math.sqrt(len(names)))
    nrows = math.ceil(len(names) / ncols)
    fig = figure(3.3 * ncols, 2.7 * nrows + 0.6)
    y = np.array([float(t.metric) for t in scored])
    best = analysis.best
    for k, name in enumerate(names):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        axis = _axis(analysis, name, [t.params.get(name) for t in scored])
        x = axis.pos + (jitter(len(y), 0.15, seed=k) if axis.ticks and len(y) > 20 else 0)
        ax.scatter(x, y, s=8 if len(y) > 200 else 18, alpha=0.5, color="#4c72b0", linewidths=0)
        if best is not None and best in scored:
            b = scored.index(best)
            ax.scatter([x[b]], [y[b]], marker="*", s=150, color="#c44e52", edgecolor="black", zorder=3)
        _scatter_axis(ax, axis)
        ax.set_title(short(name), fontsize=9)
        ax.tick_params(labelsize=7)
        if k % ncols == 0:
            ax.set_ylabel(analysis.metric or "metric", fontsize=8)
    fig.suptitle(f"{analysis.metric} against each parameter ({analysis.goal}; best trial starred)")
    return fig


def _axis(analysis: Analysis, name: str, values: Sequence[Any]) -> _Axis:
    """Numbers stay numbers (log when configured so, whole numbers when every value is an int);
    categoricals and configured number lists become slots in the sweep file's order."""
    import numpy as np

    configured = analysis.scales.get(name, "linear")
    scale = effective_scale(configured, values)
    if scale != CATEGORICAL and configured != CATEGORICAL:
        integer = all(isinstance(v, int) for v in values)  # effective_scale has ruled out bools
        return _Axis(name, np.array(values, dtype=float), (), scale == LOG, integer)
    levels = _levels(values, analysis.levels.get(name, ()))
    slot = {label: i for i, label in enumerate(levels)}
    pos = np.array([slot[category_label(v)] for v in values], dtype=float)
    return _Axis(name, pos, tuple((float(i), short(label)) for i, label in enumerate(levels)), False)


def _levels(values: Sequence[Any], configured: Sequence[Any]) -> list[str]:
    """Category labels: the sweep file's values in its order (sampled or not), then any others the trials hold."""
    levels = list(dict.fromkeys(category_label(v) for v in configured))
    known = set(levels)
    extra = {category_label(v): (float(v) if is_number(v) else math.inf, category_label(v))
             for v in values if category_label(v) not in known}
    return levels + sorted(extra, key=lambda k: extra[k])


def _unit_interval(axis: _Axis, n: int) -> numpy.ndarray:
    """An axis's positions mapped to [0, 1]; a constant sits in the middle."""
    import numpy as np

    pos = np.log10(axis.pos) if axis.log else axis.pos.astype(float)
    if axis.ticks:
        slots = max(len(axis.ticks) - 1, 1)
        spread = min(0.06, 0.2 / slots) if n > 20 else 0.0  # jitter only where lines pile up
        return (pos / slots if len(axis.ticks) > 1 else pos * 0 + 0.5) + jitter(n, spread, seed=len(axis.name))
    lo, hi = (float(pos.min()), float(pos.max())) if n else (0.0, 1.0)
    return (pos - lo) / (hi - lo) if hi > lo else pos * 0 + 0.5


def _colour_lines(fig: Figure, ax: Axes, lines: Any, analysis: Analysis, shown: Sequence[Trial]) -> None:
    """Colour by metric (best end bright, drawn on top) with a colour bar, or by trial state."""
    import numpy as np

    if analysis.metric and shown:
        metric = np.array([float(t.metric) for t in shown])
        order = np.argsort(metric if analysis.goal == "maximize" else -metric, kind="stable")
        segments = lines.get_segments()
        lines.set_segments([segments[i] for i in order])
        lines.set_array(metric[order])
        lines.set_cmap("viridis_r" if analysis.goal == "minimize" else "viridis")
        fig.colorbar(lines, ax=ax, label=analysis.metric, pad=0.01)
        return
    from matplotlib.lines import Line2D

    lines.set_color([STATE_COLOURS[t.state] for t in shown])
    present = sorted({t.state for t in shown}, key=list(STATE_COLOURS).index)
    fig.legend([Line2D([], [], color=STATE_COLOURS[s]) for s in present],
               [s.value.lower() for s in present], fontsize=8, loc="outside lower center", ncols=len(present))


def _draw_axes(ax: Axes, axes: Sequence[_Axis], labels: Sequence[str]) -> None:
    """Vertical axis lines with a few value labels each; parameter names along the bottom."""
    for i, axis in enumerate(axes):
        ax.axvline(i, color="black", linewidth=0.8)
        for pos, text in _axis_ticks(axis):
            ax.text(i + 0.04, pos, text, fontsize=7, va="center", ha="left",
                    bbox=dict(facecolor="white", alpha=0.6, edgecolor="none", pad=0.5))
    ax.set_xticks(range(len(axes)), labels, rotation=30 if len(axes) > 8 else 0,
                  ha="right" if len(axes) > 8 else "center", fontsize=8)
    ax.set_xlim(-0.2, max(len(axes) - 1, 0) + 0.6)
    ax.set_ylim(-0.08, 1.08)
    ax.set_yticks([])
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)


def _axis_ticks(axis: _Axis) -> list[tuple[float, str]]:
    """Where to write values on a parallel axis, in its [0, 1] coordinates."""
    import numpy as np

    if axis.ticks:
        slots = max(len(axis.ticks) - 1, 1)
        return [(p / slots if len(axis.ticks) > 1 else 0.5, t) for p, t in thin_ticks(axis.ticks, 12)]
    if not len(axis.pos):
        return []
    lo, hi = float(axis.pos.min()), float(axis.pos.max())
    if hi <= lo:
        return [(0.5, _tick_text(lo, axis.integer, 4))]
    unit = _unit_scale(lo, hi, axis.log)
    if not axis.integer:
        values = np.linspace(lo, hi, 5) if not axis.log else np.logspace(math.log10(lo), math.log10(hi), 5)
        return [(unit(v), _tick_text(v, False)) for v in values]
    inner = [v for v in _integer_ticks(lo, hi, axis.log) if 0.1 <= unit(v) <= 0.9]  # room for the ends' labels
    return [(unit(v), _tick_text(v, True)) for v in [lo, *inner, hi]]


def _unit_scale(lo: float, hi: float, log: bool) -> Callable[[float], float]:
    """Maps a value between lo and hi to [0, 1], in log space on a log axis."""
    if log:
        return lambda v: (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
    return lambda v: (v - lo) / (hi - lo)


def _integer_ticks(lo: float, hi: float, log: bool) -> list[float]:
    """Round whole numbers between lo and hi: every one when few, else 1-2-5 steps (1-2-5 decades on a log axis)."""
    from matplotlib.ticker import MaxNLocator

    if hi - lo <= 6:
        return [float(v) for v in range(math.ceil(lo), math.floor(hi) + 1)]
    if not log:
        return [float(v) for v in MaxNLocator(nbins=5, integer=True, steps=[1, 2, 5, 10]).tick_values(lo, hi)]
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    for subs in ((1, 2, 5), (1,)):
        values = [float(m * 10**k) for k in decades for m in subs if lo <= m * 10**k <= hi]
        if len(values) <= 5:
            return values
    return values[:: math.ceil(len(values) / 5)]


def _tick_text(value: float, integer: bool, digits: int = 3) -> str:
    return f"{round(value):d}" if integer else f"{value:.{digits}g}"


def _scatter_axis(ax: Axes, axis: _Axis) -> None:
    """Log axes get plain-number ticks (1-2-5 when under two decades), integer axes whole numbers,
    categoricals their labels with a slot for every category (sampled or not)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.margins(x=0.08)
    if axis.log:
        ax.set_xscale("log")
        decades = math.log10(float(axis.pos.max()) / float(axis.pos.min()))
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0,) if decades >= 2 else (1.0, 2.0, 5.0), numticks=6))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    elif axis.integer:
        whole_numbers(ax.xaxis)
    if axis.ticks:
        ticks = thin_ticks(axis.ticks, 8)
        tilt = len(ticks) > 4 or any(len(t) > 6 for _, t in ticks)
        ax.set_xticks([p for p, _ in ticks], [t for _, t in ticks],
                      rotation=30 if tilt else 0, ha="right" if tilt else "center")
        ax.set_xlim(-0.5, len(axis.ticks) - 0.5)
