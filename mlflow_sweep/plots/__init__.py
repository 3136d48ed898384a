"""Finalize plots: PNGs written to a directory, drawn with matplotlib's Agg canvas; no mlflow.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot), so nothing needs a display and no
global figure state leaks between calls. Every plot stays legible with 20 parameters or 1,000 trials,
and a plot with nothing to show is left out with the reason, never drawn empty. The plots live in
``summary`` (importance, correlation), ``history`` (metric over time, timeline) and
``parameters`` (parallel coordinates, metric against each parameter); ``common`` holds what they share.
A sweep with several objectives gets ``draw_front_plots``: the Pareto front (``front``), an importance
plot per objective and the timeline.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from mlflow_sweep.analysis import MIN_TRIALS, Analysis, pareto_front, scored, usable_metric
from mlflow_sweep.plots import front, history, parameters, summary
from mlflow_sweep.plots.common import DPI
from mlflow_sweep.trials import Trial

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plots:
    """What ``draw_plots`` did: the PNGs it wrote, and every plot it left out with the reason."""

    paths: tuple[Path, ...]
    skipped: tuple[tuple[str, str], ...] = ()
    """(file name, why), e.g. ("importance.png", "needs at least 3 finished trials …")."""


PLOTS = ("importance", "correlation", "metric_over_time", "timeline", "parallel_coordinates",
         "metric_vs_parameters")
"""Every plot finalize can draw, in the order it draws them; the file is ``<name>.png``."""


def draw_plots(analysis: Analysis, trials: Sequence[Trial], directory: Path,
               ranked: Sequence[Trial] | None = None) -> Plots:
    """Write every plot that has something to show into ``directory``; say why each other one is left out.

    Args:
        analysis: the result of ``analysis.analyse`` for these trials.
        trials: every trial of the sweep.
        directory: an existing directory; files are named after the plot (``importance.png`` …).
        ranked: what the parameter plots show, as ``analysis.analyse`` ranked it (the trials and prior
            runs placed in the current space); default: ``trials``. The plots over time show the
            sweep's own trials: prior runs have no time in it.
    """
    plans = [(name, why, lambda name=name: draw_figure(name, analysis, trials, ranked))
             for name, why in plan_plots(analysis, trials, ranked)]
    return _draw(plans, Path(directory))


def draw_front_plots(analyses: Mapping[str, Analysis], trials: Sequence[Trial], objectives: Sequence[Any],
                     directory: Path, priors: Sequence[Trial] = ()) -> Plots:
    """The plots of a sweep with several objectives: ``pareto_front.png``, ``importance_<objective>.png``
    for each objective, ``timeline.png``; each one with nothing to show is left out with the reason.

    Args:
        analyses: ``analysis.analyse_each`` for these trials (one Analysis per objective name).
        trials: every trial of the sweep.
        objectives: the config's ``objectives``.
        directory: an existing directory.
        priors: the prior runs the sweep started from: on the front plot with the trials.
    """
    both = scored([*priors, *trials], objectives)
    plans: list[tuple[str, str | None, Callable[[], Figure]]] = [
        ("pareto_front", None if both else "no finished trial has a value for every objective yet",
         lambda: front.pareto_front(both, pareto_front(both, objectives), objectives))]
    for name, result in analyses.items():
        plans.append((f"importance_{name}", _why_no_table(result), lambda result=result: summary.importance(result)))
    any_result = next(iter(analyses.values()))
    plans.append(("timeline", _why_left_out("timeline", any_result, trials, []), lambda: history.timeline(trials)))
    return _draw(plans, Path(directory))


def _draw(plans: Sequence[tuple[str, str | None, Callable[[], Figure]]], directory: Path) -> Plots:
    """Write each planned figure that has something to show; keep the reason for the others."""
    paths, skipped = [], []
    for name, why, draw in plans:
        path = directory / f"{_file_name(name)}.png"
        if why is None:
            try:
                draw().savefig(path, dpi=DPI)
                paths.append(path)
                continue
            except Exception as exc:  # one odd plot must not cost the user the table
                log.warning("could not draw %s: %s: %s", path.name, type(exc).__name__, exc)
                why = f"could not be drawn ({type(exc).__name__}: {exc})"
        skipped.append((path.name, why))
    return Plots(tuple(paths), tuple(skipped))


def _why_no_table(result: Analysis) -> str | None:
    """Why one objective's importance plot would be empty (its table has no rows), or None."""
    if result.rows:
        return None
    if result.used < MIN_TRIALS:
        return (f"needs at least {MIN_TRIALS} finished trials with a value for {result.metric!r}, "
                f"but got {result.used}")
    return f"{result.metric} has the same value in every finished trial"


def _file_name(name: str) -> str:
    """A metric name as part of a file name: path separators and spaces become ``_``."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def plan_plots(analysis: Analysis, trials: Sequence[Trial],
               ranked: Sequence[Trial] | None = None) -> list[tuple[str, str | None]]:
    """Each plot's name and why it is left out, or None when it has something to show.

    Args:
        analysis: the result of ``analysis.analyse`` for these trials.
        trials: every trial of the sweep.
        ranked: as ``draw_plots``.
    """
    shown = {name: trials if name in _OVER_TIME else (trials if ranked is None else ranked) for name in PLOTS}
    return [(name, _why_left_out(name, analysis, shown[name], _scored(analysis, shown[name]))) for name in PLOTS]


_OVER_TIME = ("metric_over_time", "timeline")
"""The plots of the sweep's own trials over its time (prior runs have none)."""


def draw_figure(name: str, analysis: Analysis, trials: Sequence[Trial],
                ranked: Sequence[Trial] | None = None) -> Figure:
    """One plot as a matplotlib Figure (``plan_plots`` says whether it has anything to show).

    Args:
        name: one of ``PLOTS``.
        analysis: the result of ``analysis.analyse`` for these trials.
        trials: every trial of the sweep.
    """
    ranked = trials if ranked is None else ranked
    scored, placed = _scored(analysis, trials), _scored(analysis, ranked)
    draw: dict[str, Callable[[], Figure]] = {
        "importance": lambda: summary.importance(analysis),
        "correlation": lambda: summary.correlation(analysis),
        "metric_over_time": lambda: history.metric_over_time(analysis, scored),
        "timeline": lambda: history.timeline(trials),
        "parallel_coordinates": lambda: parameters.parallel_coordinates(analysis, ranked, placed),
        "metric_vs_parameters": lambda: parameters.metric_vs_parameters(analysis, placed),
    }
    return draw[name]()


def _scored(analysis: Analysis, trials: Sequence[Trial]) -> list[Trial]:
    return [t for t in trials if usable_metric(t)] if analysis.metric else []


def _why_left_out(name: str, analysis: Analysis, trials: Sequence[Trial], scored: Sequence[Trial]) -> str | None:
    """The reason a plot would be empty, in words for the finalize output; None when it is not."""
    if not trials:
        return "the sweep has no trials yet"
    if name == "timeline":
        return None if any(t.started is not None for t in trials) else "no trial has started"
    if name in ("parallel_coordinates", "metric_vs_parameters") and not analysis.scales:
        return "the sweep has no parameters"
    if name == "parallel_coordinates" and not analysis.metric:  # lines coloured by state instead
        if len(analysis.scales) < 2:
            return "one parameter and no metric make one axis, with no lines between axes to draw"
        return None if any(t.params for t in trials) else "no trial has parameters yet"
    if not analysis.metric:
        return "no metric configured"
    if not scored:
        return f"no finished trial has a value for {analysis.metric!r} yet"
    if name in ("importance", "correlation") and not analysis.rows:
        if analysis.used < MIN_TRIALS:
            return (f"needs at least {MIN_TRIALS} finished trials with a value for {analysis.metric!r}, "
                    f"but got {analysis.used}")
        return f"{analysis.metric} has the same value in every finished trial"
    return None
