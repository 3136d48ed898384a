"""Finalize math: encode parameters, forest and permutation importance, correlations, best trial.

Pure: plain lists of ``Trial`` in, frozen results out. Heavy libraries are imported inside functions.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from mlflow_sweep.trials import Trial, TrialState, is_number

if TYPE_CHECKING:
    import numpy

LINEAR, LOG, CATEGORICAL = "linear", "log", "categorical"
MIN_TRIALS = 3
"""Completed trials needed for the importance table (fewer give a message instead of a table)."""

_LOG_DISTRIBUTIONS = frozenset({
    "log_uniform", "log_uniform_values", "q_log_uniform", "q_log_uniform_values",
    "inv_log_uniform", "inv_log_uniform_values", "log_normal", "q_log_normal",
})
_N_ESTIMATORS = 100
_N_REPEATS = 5


@dataclass(frozen=True)
class ParameterResult:
    """One row of the table: a parameter's importances and correlations with the metric."""

    name: str
    scale: str
    importance: float
    permutation: float
    pearson: float | None
    spearman: float | None
    varies: bool = True


@dataclass(frozen=True)
class Analysis:
    """Everything finalize reports: counts, table rows (sorted by importance), best trial, notes."""

    metric: str | None
    goal: str
    counts: Mapping[str, int]
    used: int
    rows: tuple[ParameterResult, ...]
    best: Trial | None
    scales: Mapping[str, str]
    notes: tuple[str, ...] = field(default=())
    levels: Mapping[str, tuple] = field(default_factory=dict)
    """Categorical parameter -> its values in the sweep file's order, sampled or not (for the plots)."""


@dataclass(frozen=True)
class _Column:
    """A parameter encoded for the forest (``block``, one or more columns) and for correlations (``x``)."""

    name: str
    scale: str
    block: Any
    x: Any
    varies: bool


def param_scales(parameters: Mapping[str, Any]) -> dict[str, str]:
    """Map each parameter to how it is analysed and drawn: ``linear``, ``log`` or ``categorical``.

    Args:
        parameters: dotted name -> distribution (anything with a W&B ``name``).
    """
    def scale(dist: Any) -> str:
        name = getattr(dist, "name", "")
        if name == "categorical":
            return CATEGORICAL
        return LOG if name in _LOG_DISTRIBUTIONS else LINEAR

    return {name: scale(dist) for name, dist in parameters.items()}


def param_levels(parameters: Mapping[str, Any]) -> dict[str, tuple]:
    """Map each categorical parameter to its configured values, in the sweep file's order (plots keep it).

    Args:
        parameters: dotted name -> distribution (a categorical has ``values``).
    """
    return {name: tuple(dist.values) for name, dist in parameters.items()
            if getattr(dist, "name", "") == "categorical"}


def category_label(value: Any) -> str:
    """A stable text label for a categorical value (lists and dicts as compact JSON)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def effective_scale(scale: str, values: Sequence[Any]) -> str:
    """The scale the data allows: numbers only stay numeric, a log scale needs positive values.

    A categorical of plain numbers (``batch_size: values: [16, 32, 64]``) is analysed as a
    number, so its correlations keep their sign.
    """
    if not values or not all(is_number(v) for v in values):
        return CATEGORICAL
    if scale == LOG and all(v > 0 for v in values):
        return LOG
    return LINEAR


def usable_metric(trial: Trial) -> bool:
    """A completed trial whose metric is a finite number (NaN and missing are left out).

    Completed means FINISHED, or stopped early by hyperband: such a trial's metric follows the
    same ``metric.summary`` rule as every other's.
    """
    completed = trial.state is TrialState.FINISHED or trial.stopped_at is not None
    return completed and trial.metric is not None and is_number(trial.metric)


def best_trial(trials: Iterable[Trial], goal: str) -> Trial | None:
    """The finished trial with the best metric in the direction of ``goal``; ties go to the earliest.

    Args:
        trials: any trials; only finished ones with a finite metric compete.
        goal: ``minimize`` or ``maximize``.
    """
    sign = -1.0 if goal == "maximize" else 1.0
    candidates = [t for t in trials if usable_metric(t)]
    return min(candidates, key=lambda t: (sign * float(t.metric), t.index), default=None)


def count_states(trials: Iterable[Trial]) -> dict[str, int]:
    """Trials by state, every state present (dead trials count as failed)."""
    counts = {state.value.lower(): 0 for state in TrialState}
    for trial in trials:
        counts[trial.state.value.lower()] += 1
    return counts


def analyse(trials: Sequence[Trial], *, metric: str | None, goal: str = "minimize",
            scales: Mapping[str, str] | None = None, seed: int = 0,
            levels: Mapping[str, Sequence[Any]] | None = None, priors: Sequence[Trial] = (),
            ranked: Sequence[Trial] | None = None) -> Analysis:
    """Analyse a sweep: which parameters mattered for the metric, and the best trial.

    Prior runs (``Trial.prior``) are observations of the same metric against the same parameters:
    the table ranks them with the trials, and the best may be one of them. The counts are the
    sweep's own trials.

    Args:
        trials: every trial of the sweep, in any state.
        metric: the configured metric name, or None when the sweep has none.
        goal: ``minimize`` or ``maximize``.
        scales: parameter -> scale (see ``param_scales``); parameters seen only in trials are added.
        seed: seeds the forest and the permutations, so the same sweep gives the same table.
        levels: categorical parameter -> its values in file order (see ``param_levels``); kept for the plots.
        priors: the prior runs the sweep started from.
        ranked: the trials and prior runs the table ranks, with params placed in the space of the
            config in effect (``policy.in_space``); default: ``trials`` and ``priors`` as they are.
    """
    ranked = [*priors, *trials] if ranked is None else ranked
    names = _parameter_names(ranked, scales or {})
    all_scales = {n: (scales or {}).get(n, LINEAR) for n in names}
    counts = count_states(trials)
    base = dict(metric=metric, goal=goal, counts=counts, scales=all_scales,
                levels={n: tuple(v) for n, v in (levels or {}).items()})
    if metric is None:
        note = "no metric configured: no importance table and no best trial, only the timeline"
        return Analysis(**base, used=0, rows=(), best=None, notes=(note,))
    used = [t for t in ranked if usable_metric(t)]
    notes = _data_notes(trials, metric) + _ranked_notes(trials, priors, ranked)
    best = best_trial([t for t in [*priors, *trials] if usable_metric(t)], goal)
    if len(used) < MIN_TRIALS:
        notes.append(f"importance needs at least {MIN_TRIALS} finished trials with a value for "
                     f"{metric!r}, but got {len(used)}")
        return Analysis(**base, used=len(used), rows=(), best=best, notes=tuple(notes))
    rows, row_notes = _rank(used, names, all_scales, seed)
    return Analysis(**base, used=len(used), rows=rows, best=best, notes=tuple(notes + row_notes))


def _parameter_names(trials: Sequence[Trial], scales: Mapping[str, str]) -> list[str]:
    """Configured parameters in file order, then any others the trials carry."""
    names = list(scales)
    seen = set(names)
    for trial in trials:
        for name in trial.params:
            if name not in seen:
                names.append(name)
                seen.add(name)
    return names


def _data_notes(trials: Sequence[Trial], metric: str) -> list[str]:
    """Say which trials are left out of the analysis and why."""
    notes = []
    finished = [t for t in trials if t.state is TrialState.FINISHED]
    missing = [t for t in finished if not usable_metric(t)]
    if missing:
        notes.append(f"{len(missing)} finished trial{'s' * (len(missing) != 1)} logged no finite "
                     f"value for {metric!r} (missing or NaN) and {'are' if len(missing) != 1 else 'is'} left out")
    other = len(trials) - len(finished)
    if other:
        notes.append(f"{other} trial{'s' * (other != 1)} not finished (running, failed or killed) "
                     f"{'are' if other != 1 else 'is'} left out")
    return notes


def _ranked_notes(trials: Sequence[Trial], priors: Sequence[Trial], ranked: Sequence[Trial]) -> list[str]:
    """Say how many prior runs the table ranks, and which trials a changed search space leaves out."""
    notes = []
    kept = sum(1 for t in ranked if t.prior and usable_metric(t))
    if kept:
        notes.append(f"{kept} prior run{'s' * (kept != 1)} (not run by this sweep) {'are' if kept != 1 else 'is'} "
                     "ranked with the trials")
    placed = {t.index for t in ranked}
    outside = sum(1 for t in [*priors, *trials] if usable_metric(t) and t.index not in placed)
    if outside:
        notes.append(f"{outside} finished run{'s' * (outside != 1)} of an earlier search space "
                     f"{'do' if outside != 1 else 'does'} not fit the current one and {'are' if outside != 1 else 'is'} "
                     "left out of the table")
    return notes


def _rank(used: Sequence[Trial], names: Sequence[str], scales: Mapping[str, str],
          seed: int) -> tuple[tuple[ParameterResult, ...], list[str]]:
    """Rows sorted by importance, or none with a note when the metric never varies."""
    import numpy as np

    y = np.array([float(t.metric) for t in used])
    if np.ptp(y) == 0:
        return (), [f"the metric is {y[0]:g} in every finished trial, so no parameter can explain it"]
    columns = [_encode(name, [t.params.get(name) for t in used], scales.get(name, LINEAR), y)
               for name in names]
    importance, permutation = _importances(columns, y, seed)
    rows = [ParameterResult(c.name, c.scale, float(imp), float(perm), *_correlations(c, y), c.varies)
            for c, imp, perm in zip(columns, importance, permutation)]
    rows.sort(key=lambda r: (-r.importance, -r.permutation, not r.varies, r.name))
    notes = [f"{r.name} never varies, so it cannot explain the metric" for r in rows if not r.varies]
    return tuple(rows), notes


def _encode(name: str, values: Sequence[Any], scale: str, y: numpy.ndarray) -> _Column:
    """Numbers as one column (log10 for log scales); other values one-hot for the forest.

    Correlations need one number per trial, so a categorical gets its category's mean metric
    (target-mean encoding): its Pearson is then the correlation ratio, a strength with no sign.
    """
    import numpy as np

    scale = effective_scale(scale, values)
    if scale != CATEGORICAL:
        x = np.array(values, dtype=float)
        x = np.log10(x) if scale == LOG else x
        return _Column(name, scale, x[:, None], x, bool(np.ptp(x) > 0))
    labels = [category_label(v) for v in values]
    levels = sorted(set(labels))
    index = np.array([levels.index(label) for label in labels])
    block = (index[:, None] == np.arange(len(levels))[None, :]).astype(float)
    means = np.array([y[index == k].mean() for k in range(len(levels))])
    return _Column(name, CATEGORICAL, block, means[index], len(levels) > 1)


def _importances(columns: Sequence[_Column], y: numpy.ndarray, seed: int) -> tuple[list[float], list[float]]:
    """Impurity importance summed over each parameter's columns, and block-permutation importance."""
    import numpy as np

    varying = [c for c in columns if c.varies]
    if not varying:
        return [0.0] * len(columns), [0.0] * len(columns)
    X = np.hstack([c.block for c in varying])
    spans = np.cumsum([0] + [c.block.shape[1] for c in varying])
    forest = _forest(X, y, seed)
    impurity = forest.feature_importances_
    drops = _permutation_drops(forest, X, y, spans, seed)
    by_name = {c.name: (float(impurity[a:b].sum()), drop)
               for c, a, b, drop in zip(varying, spans[:-1], spans[1:], drops)}
    pairs = [by_name.get(c.name, (0.0, 0.0)) for c in columns]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _forest(X: numpy.ndarray, y: numpy.ndarray, seed: int) -> Any:
    """A seeded random forest, single-threaded (the machines running finalize are shared)."""
    from sklearn.ensemble import RandomForestRegressor

    forest = RandomForestRegressor(n_estimators=_N_ESTIMATORS, random_state=seed, n_jobs=1)
    return forest.fit(X, y)


def _permutation_drops(forest: Any, X: numpy.ndarray, y: numpy.ndarray, spans: Any, seed: int) -> list[float]:
    """Mean drop in R² when a parameter's columns are shuffled together, so one-hot stays one parameter."""
    import numpy as np
    from sklearn.metrics import r2_score

    rng = np.random.default_rng(seed)
    baseline = r2_score(y, forest.predict(X))
    drops = []
    for a, b in zip(spans[:-1], spans[1:]):
        scores = []
        for _ in range(_N_REPEATS):
            shuffled = X.copy()
            shuffled[:, a:b] = X[rng.permutation(len(X)), a:b]
            scores.append(r2_score(y, forest.predict(shuffled)))
        drops.append(float(baseline - np.mean(scores)))
    return drops


def _correlations(column: _Column, y: numpy.ndarray) -> tuple[float | None, float | None]:
    """Pearson and Spearman of the encoded parameter with the metric; None when undefined."""
    import numpy as np
    from scipy import stats

    if not column.varies or np.ptp(column.x) == 0:
        return None, None
    pearson = float(stats.pearsonr(column.x, y)[0])
    spearman = float(stats.spearmanr(column.x, y)[0])
    return _finite(pearson), _finite(spearman)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


# --- several objectives ------------------------------------------------------------------------


def scored(trials: Iterable[Trial], objectives: Sequence[Any]) -> list[Trial]:
    """The completed trials with a finite value for every objective, in the order given.

    Args:
        trials: any trials.
        objectives: the config's ``objectives`` (``name``, ``goal``).
    """
    names = [m.name for m in objectives]
    completed = (t for t in trials if t.state is TrialState.FINISHED or t.stopped_at is not None)
    return [t for t in completed if all(v is not None and is_number(v) for v in t.values(names))]


def pareto_front(trials: Iterable[Trial], objectives: Sequence[Any]) -> list[Trial]:
    """The non-dominated trials, in index order: no other trial is at least as good on every objective
    and better on one (each in its own ``goal``'s direction). Trials with equal values are all kept.

    Args:
        trials: any trials; only those ``scored`` compete.
        objectives: the config's ``objectives``.
    """
    import numpy as np

    candidates = sorted(scored(trials, objectives), key=lambda t: t.index)
    if not candidates:
        return []
    names = [m.name for m in objectives]
    y = np.array([[m.sign * float(v) for m, v in zip(objectives, t.values(names))] for t in candidates])
    no_worse = np.all(y[:, None, :] <= y[None, :, :], axis=2)  # [i, j]: i is nowhere worse than j
    better = np.any(y[:, None, :] < y[None, :, :], axis=2)
    dominated = np.any(no_worse & better, axis=0)
    return [t for t, out in zip(candidates, dominated) if not out]


def analyse_each(trials: Sequence[Trial], objectives: Sequence[Any], *, scales: Mapping[str, str] | None = None,
                 seed: int = 0, levels: Mapping[str, Sequence[Any]] | None = None) -> dict[str, Analysis]:
    """``analyse`` once per objective, each trial counted by that objective's value: a table per objective.

    Args:
        trials: every trial of the sweep, in any state.
        objectives: the config's ``objectives``.
        scales: parameter -> scale (see ``param_scales``).
        seed: seeds the forests and permutations.
        levels: categorical parameter -> its values in file order.
    """
    from dataclasses import replace

    out = {}
    for objective in objectives:
        own = [replace(t, metric=t.values([objective.name])[0] if t.metrics is not None else t.metric)
               for t in trials]
        out[objective.name] = analyse(own, metric=objective.name, goal=objective.goal, scales=scales,
                                      seed=seed, levels=levels)
    return out
