"""Finalize plots (SPEC §5): PNGs written to a directory, drawn with matplotlib's Agg canvas; no mlflow.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot), so nothing needs a display and no
global figure state leaks between calls. Every plot stays legible with 20 parameters or 1,000 trials.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from mlflow_sweep.analysis import CATEGORICAL, LOG, Analysis, category_label, effective_scale, is_number, usable_metric
from mlflow_sweep.trials import Trial, TrialState

if TYPE_CHECKING:
    import numpy
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

DPI = 110
STATE_COLOURS = {TrialState.FINISHED: "#2ca02c", TrialState.FAILED: "#d62728",
                 TrialState.KILLED: "#ff7f0e", TrialState.RUNNING: "#1f77b4"}
_MAX_LABEL = 14


@dataclass(frozen=True)
class _Axis:
    """A parameter placed on an axis: data positions, categorical tick labels, and whether it is log."""

    name: str
    pos: Any
    ticks: tuple[tuple[float, str], ...]
    log: bool


def draw_plots(analysis: Analysis, trials: Sequence[Trial], directory: Path) -> list[Path]:
    """Write every plot that makes sense for this sweep into ``directory``; return the PNG paths.

    Args:
        analysis: the result of ``analysis.analyse`` for these trials.
        trials: every trial of the sweep.
        directory: an existing directory; files are named after the plot (``importance.png`` …).
    """
    scored = [t for t in trials if usable_metric(t)] if analysis.metric else []
    plan: list[tuple[str, bool, Callable[[], Figure]]] = [
        ("importance", bool(analysis.rows), lambda: _importance(analysis)),
        ("correlation", bool(analysis.rows), lambda: _correlation(analysis)),
        ("metric_over_time", bool(scored), lambda: _metric_over_time(analysis, scored)),
        ("timeline", any(t.started is not None for t in trials), lambda: _timeline(trials)),
        ("parallel_coordinates", bool(trials and analysis.scales), lambda: _parallel(analysis, trials, scored)),
        ("metric_vs_parameters", bool(scored and analysis.scales), lambda: _metric_vs_params(analysis, scored)),
    ]
    paths = []
    for name, wanted, draw in plan:
        if wanted:
            path = Path(directory) / f"{name}.png"
            try:
                draw().savefig(path, dpi=DPI)
            except Exception as exc:  # one odd plot must not cost the user the table (SPEC §5)
                log.warning("could not draw %s: %s: %s", path.name, type(exc).__name__, exc)
                continue
            paths.append(path)
    return paths


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _short(label: str) -> str:
    return label if len(label) <= _MAX_LABEL else label[: _MAX_LABEL - 1] + "…"


def _ordered_names(analysis: Analysis) -> list[str]:
    """Parameters by importance when there is a table, else in file order."""
    return [r.name for r in analysis.rows] if analysis.rows else list(analysis.scales)


def _paired_bars(analysis: Analysis, keys: tuple[str, str], labels: tuple[str, str], xlabel: str) -> Figure:
    """Two horizontal bars per parameter, most important on top; n/a values are written, not drawn."""
    import numpy as np

    rows = analysis.rows
    fig = _figure(8, 1.9 + 0.38 * len(rows))
    ax = fig.add_subplot()
    y = np.arange(len(rows))[::-1]
    for offset, key, label, colour in zip((0.2, -0.2), keys, labels, ("#4c72b0", "#dd8452")):
        values = [getattr(r, key) for r in rows]
        ax.barh(y + offset, [0.0 if v is None else v for v in values], height=0.38, label=label, color=colour)
        for yi, v in zip(y, values):
            if v is None:
                ax.text(0, yi + offset, " n/a", va="center", fontsize=7, color="grey")
    ax.set_yticks(y, [_short(r.name) for r in rows])
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(xlabel)
    fig.legend(loc="outside lower center", ncols=2, fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return fig


def _importance(analysis: Analysis) -> Figure:
    fig = _paired_bars(analysis, ("importance", "permutation"),
                       ("random-forest impurity", "permutation (drop in R²)"), "importance")
    fig.suptitle(f"Parameter importance for {analysis.metric} ({analysis.goal}), {analysis.used} trials")
    return fig


def _correlation(analysis: Analysis) -> Figure:
    fig = _paired_bars(analysis, ("pearson", "spearman"), ("Pearson", "Spearman"),
                       f"correlation with {analysis.metric} (categoricals: with the category's mean)")
    fig.axes[0].set_xlim(-1.05, 1.05)
    fig.suptitle(f"Correlation of each parameter with {analysis.metric}, {analysis.used} trials")
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


def _metric_over_time(analysis: Analysis, scored: Sequence[Trial]) -> Figure:
    """Each finished trial's metric at its end time, the best-so-far line, and the best trial starred."""
    import numpy as np

    timed = all(t.ended is not None for t in scored)
    order = sorted(scored, key=lambda t: (t.ended, t.index) if timed else (t.index, 0))
    origin, size, unit = _clock(order)
    x = np.array([(t.ended - origin) / size if timed else t.index for t in order])
    y = np.array([float(t.metric) for t in order])
    best_so_far = np.maximum.accumulate(y) if analysis.goal == "maximize" else np.minimum.accumulate(y)
    fig = _figure(9, 5)
    ax = fig.add_subplot()
    ax.scatter(x, y, s=12 if len(y) > 200 else 24, alpha=0.55, color="#4c72b0", label="trial", linewidths=0)
    ax.step(x, best_so_far, where="post", color="#c44e52", linewidth=2, label="best so far")
    b = int(np.flatnonzero(y == best_so_far[-1])[0])
    ax.scatter([x[b]], [y[b]], marker="*", s=220, color="#c44e52", edgecolor="black", zorder=3,
               label=f"best: #{order[b].index} = {y[b]:.4g}")
    if y.min() > 0 and y.max() / y.min() > 1000:
        ax.set_yscale("log")
    ax.set_xlabel(f"time since the sweep started ({unit})" if timed else "trial index")
    ax.set_ylabel(analysis.metric or "metric")
    ax.set_title(f"{analysis.metric} over time ({analysis.goal}), {len(y)} finished trials")
    fig.legend(fontsize=8, loc="outside lower center", ncols=3)
    ax.grid(alpha=0.3)
    return fig


def _timeline(trials: Sequence[Trial]) -> Figure:
    """One horizontal bar per trial from start to end, coloured by state; running trials run to the last event."""
    import numpy as np

    timed = [t for t in trials if t.started is not None]
    origin, size, unit = _clock(timed)
    now = max(t for tr in timed for t in (tr.started, tr.ended) if t is not None)
    fig = _figure(10, min(3 + 0.12 * len(timed), 9))
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
    ax.invert_yaxis()
    ax.set_xlabel(f"time since the sweep started ({unit})")
    ax.set_ylabel("trial index")
    ax.set_title(f"Trial timeline, {len(timed)} trials")
    fig.legend(fontsize=8, loc="outside lower center", ncols=5)
    ax.grid(axis="x", alpha=0.3)
    return fig


def _axis(name: str, values: Sequence[Any], configured: str) -> _Axis:
    """Numbers stay numbers (log when configured so); categoricals and configured number lists become slots."""
    import numpy as np

    scale = effective_scale(configured, values)
    if scale != CATEGORICAL and configured != CATEGORICAL:
        return _Axis(name, np.array(values, dtype=float), (), scale == LOG)
    keys = {category_label(v): (float(v) if is_number(v) else math.inf, category_label(v)) for v in values}
    levels = sorted(keys, key=lambda k: keys[k])
    slot = {label: i for i, label in enumerate(levels)}
    pos = np.array([slot[category_label(v)] for v in values], dtype=float)
    return _Axis(name, pos, tuple((float(i), _short(label)) for i, label in enumerate(levels)), False)


def _jitter(n: int, spread: float, seed: int = 0) -> numpy.ndarray:
    """Deterministic jitter so stacked categorical points stay visible."""
    import numpy as np

    return np.random.default_rng(seed).uniform(-spread, spread, n)


def _thin_ticks(ticks: Sequence[tuple[float, str]], most: int = 15) -> list[tuple[float, str]]:
    step = max(1, math.ceil(len(ticks) / most))
    return list(ticks[::step])



def _parallel(analysis: Analysis, trials: Sequence[Trial], scored: Sequence[Trial]) -> Figure:
    """Parallel coordinates: one axis per parameter (most important first) and the metric last.

    Numeric axes are scaled to their range (log axes in log space), categoricals get evenly
    spaced slots with a little jitter. Lines are coloured by metric, or by state without one.
    """
    import numpy as np
    from matplotlib.collections import LineCollection

    shown = list(scored) if analysis.metric else [t for t in trials if t.params]
    names = _ordered_names(analysis)
    axes = [_axis(n, [t.params.get(n) for t in shown], analysis.scales.get(n, "linear")) for n in names]
    columns = [_unit_interval(a, len(shown)) for a in axes]
    labels = [_short(n) for n in names]
    if analysis.metric and shown:
        axes.append(_Axis(analysis.metric, np.array([float(t.metric) for t in shown]), (), False))
        columns.append(_unit_interval(axes[-1], len(shown)))
        labels.append(f"{_short(analysis.metric)}\n({analysis.goal})")
    fig = _figure(min(18.0, max(8.0, 0.8 * len(axes) + 3)), 6 if len(axes) <= 10 else 7)
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
                label=f"best trial: #{analysis.best.index}")
        fig.legend(fontsize=8, loc="outside lower center")
    _draw_axes(ax, axes, labels)
    ax.set_title(f"Parallel coordinates, {len(shown)} {'finished ' if analysis.metric else ''}trials")
    return fig


def _unit_interval(axis: _Axis, n: int) -> numpy.ndarray:
    """An axis's positions mapped to [0, 1]; a constant sits in the middle."""
    import numpy as np

    pos = np.log10(axis.pos) if axis.log else axis.pos.astype(float)
    if axis.ticks:
        slots = max(len(axis.ticks) - 1, 1)
        spread = min(0.06, 0.2 / slots) if n > 20 else 0.0  # jitter only where lines pile up
        return (pos / slots if len(axis.ticks) > 1 else pos * 0 + 0.5) + _jitter(n, spread, seed=len(axis.name))
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
        return [(p / slots if len(axis.ticks) > 1 else 0.5, t) for p, t in _thin_ticks(axis.ticks, 12)]
    if not len(axis.pos):
        return []
    lo, hi = float(axis.pos.min()), float(axis.pos.max())
    if hi <= lo:
        return [(0.5, f"{lo:.4g}")]
    values = np.linspace(lo, hi, 5) if not axis.log else np.logspace(math.log10(lo), math.log10(hi), 5)
    scaled = np.log10(values) if axis.log else values
    span = (math.log10(hi) - math.log10(lo)) if axis.log else hi - lo
    base = math.log10(lo) if axis.log else lo
    return [((s - base) / span, f"{v:.3g}") for s, v in zip(scaled, values)]


def _metric_vs_params(analysis: Analysis, scored: Sequence[Trial]) -> Figure:
    """One scatter per parameter (most important first): the metric against its values, best starred."""
    import numpy as np

    names = _ordered_names(analysis)
    ncols = math.ceil(math.sqrt(len(names)))
    nrows = math.ceil(len(names) / ncols)
    fig = _figure(3.3 * ncols, 2.7 * nrows + 0.6)
    y = np.array([float(t.metric) for t in scored])
    best = analysis.best
    for k, name in enumerate(names):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        axis = _axis(name, [t.params.get(name) for t in scored], analysis.scales.get(name, "linear"))
        x = axis.pos + (_jitter(len(y), 0.15, seed=k) if axis.ticks and len(y) > 20 else 0)
        ax.scatter(x, y, s=8 if len(y) > 200 else 18, alpha=0.5, color="#4c72b0", linewidths=0)
        if best is not None and best in scored:
            b = scored.index(best)
            ax.scatter([x[b]], [y[b]], marker="*", s=150, color="#c44e52", edgecolor="black", zorder=3)
        _scatter_axis(ax, axis)
        ax.set_title(_short(name), fontsize=9)
        ax.tick_params(labelsize=7)
        if k % ncols == 0:
            ax.set_ylabel(analysis.metric or "metric", fontsize=8)
    fig.suptitle(f"{analysis.metric} against each parameter ({analysis.goal}; best trial starred)")
    return fig


def _scatter_axis(ax: Axes, axis: _Axis) -> None:
    """Log axes get plain-number ticks (1-2-5 when under two decades); categoricals get their labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.margins(x=0.08)
    if axis.log:
        ax.set_xscale("log")
        decades = math.log10(float(axis.pos.max()) / float(axis.pos.min()))
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0,) if decades >= 2 else (1.0, 2.0, 5.0), numticks=6))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    if axis.ticks:
        ticks = _thin_ticks(axis.ticks, 8)
        tilt = len(ticks) > 4 or any(len(t) > 6 for _, t in ticks)
        ax.set_xticks([p for p, _ in ticks], [t for _, t in ticks],
                      rotation=30 if tilt else 0, ha="right" if tilt else "center")
