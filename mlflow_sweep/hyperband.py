"""Hyperband early termination (W&B's ``early_terminate``): which running trials to stop.

Pure: metric histories in, trial indices out; no mlflow, no filesystem, no clock.

**Iteration.** An iteration is one logged value of the metric: the n-th
``mlflow.log_metric(metric.name, ...)`` call of a trial is its iteration n (counted from 1).
The ``step`` argument is ignored, as in W&B, where users found this confusing: a script that
logs the metric once per epoch has one iteration per epoch, one that logs it every 100
batches has one iteration per 100 batches. Values that are not finite numbers (NaN, ±inf) are
dropped before counting, as W&B's ``filter_invalid`` does.

**Bands** (W&B calls them brackets) are the iterations at which a trial may be stopped:

- ``min_iter: m`` gives ``m, m*eta, m*eta**2, ...`` (rounded down; W&B lists 100 of them);
- ``max_iter: M`` with ``s`` gives ``M/eta, M/eta**2, ..., M/eta**s`` (rounded down, those
  below 1 dropped), in increasing order. ``max_iter`` wins when both are given.

**The cut** at band ``b`` comes from every trial given that has logged at least ``b`` values:
sort their ``b``-th values from best to worst; the cut is the one at position ``floor(n / eta)``
(0-based), so roughly the best ``1/eta`` of them are at or better than it. W&B pools every run
of the sweep, running ones included. The agents pool (``stopping_band``) the trials that have
*ended* — their histories are in the ledger, from every agent — plus the one being judged,
read from MLflow; other agents' still-running trials are not compared, since reading every
running trial's history each interval would cost the tracking store one read per trial.

**The test.** A running trial is checked at the last band it has reached. It is stopped when
its value is strictly worse than that band's cut, where its value is the ``b``-th logged value
with ``strict: true`` (the default, as in W&B since 2024) and its best value so far with
``strict: false`` (W&B's older, gentler rule). A trial that has not reached the first band is
never stopped, and neither is a trial alone at its band.

The block comes checked from ``config``, with the schema's defaults (``eta`` 3, ``strict`` true)
filled in; ``max_iter`` needs ``s`` there, as in W&B's schema. The rules are those of W&B's current ``sweeps`` engine (``hyperband_stopping.py``), which
reads band ``b`` as the ``b``-th value since fixing the off-by-one of wandb/wandb#1237.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Collection, Iterable, Mapping, Sequence

from mlflow_sweep.trials import is_number

if TYPE_CHECKING:
    from mlflow_sweep.config import Metric
    from mlflow_sweep.trials import Trial

logger = logging.getLogger(__name__)

_MIN_ITER_BANDS = 100  # W&B's count of min_iter bands; far beyond any real run
_LAST_BAND = 1e15  # stop listing min_iter bands here, long before floats overflow


@dataclass(frozen=True)
class _Settings:
    """A checked ``early_terminate`` block: the bands, eta and strictness."""

    bands: tuple[int, ...]
    eta: float
    strict: bool


def bands(early_terminate: Mapping[str, Any]) -> list[int]:
    """The iterations at which a trial may be stopped, in increasing order.

    Args:
        early_terminate: the normalized ``early_terminate`` block (``type: hyperband``).
    """
    return list(_settings(early_terminate).bands)


def cuts(early_terminate: Mapping[str, Any], metric: Metric,
         histories: Mapping[int, Sequence[float]]) -> dict[int, float]:
    """Each reached band's cut, in the metric's own units: band -> cut.

    Args:
        early_terminate: the normalized ``early_terminate`` block.
        metric: the sweep's metric; only ``goal`` is used.
        histories: every trial's metric values in logging order, by trial index.
    """
    settings = _settings(early_terminate)
    sign = _sign(metric)
    signed = _cuts(settings, [_clean(h, sign) for h in histories.values()])
    return {band: sign * cut for band, cut in signed.items()}


def stop_runs(early_terminate: Mapping[str, Any], metric: Metric,
              histories: Mapping[int, Sequence[float]], running: Collection[int]) -> dict[int, int]:
    """The running trials below the cut: trial index -> the band (iteration) that stops it.

    Args:
        early_terminate: the normalized ``early_terminate`` block.
        metric: the sweep's metric; only ``goal`` is used.
        histories: every trial's metric values in logging order, by trial index; include
            all trials of the sweep (finished, failed, stopped, other agents' running ones).
        running: indices of the trials still running; only these can be stopped.
    """
    settings = _settings(early_terminate)
    sign = _sign(metric)
    clean = {index: _clean(values, sign) for index, values in histories.items()}
    band_cuts = _cuts(settings, clean.values())
    stops: dict[int, int] = {}
    for index in sorted(running):
        band = _stopping_band(settings, clean.get(index, []), band_cuts)
        if band is not None:
            stops[index] = band
    logger.debug("hyperband cuts %s; stopping %s", band_cuts, stops)
    return stops


def stopping_band(early_terminate: Mapping[str, Any], metric: Metric, trials: Iterable[Trial],
                  index: int, history: Sequence[float]) -> int | None:
    """The band at which running trial ``index`` falls below the cut, or None to let it go on.

    Args:
        early_terminate: the normalized ``early_terminate`` block.
        metric: the sweep's metric; only ``goal`` is used.
        trials: the sweep's trials as the ledger knows them; those with a ``history`` (ended
            trials of a sweep with ``early_terminate``) set the cut, except ``index`` itself.
        index: the trial being judged.
        history: its metric values so far, in logging order.
    """
    pool: dict[int, Sequence[float]] = {t.index: t.history for t in trials
                                         if t.history is not None and t.index != index}
    pool[index] = history
    return stop_runs(early_terminate, metric, pool, {index}).get(index)


def _stopping_band(settings: _Settings, history: list[float], band_cuts: Mapping[int, float]) -> int | None:
    """The band at which this (sign-adjusted) history is below the cut, or None."""
    band = _last_band(settings.bands, len(history))
    if band is None:
        return None
    value = history[band - 1] if settings.strict else min(history)
    return band if value > band_cuts[band] else None


def _last_band(all_bands: Sequence[int], length: int) -> int | None:
    """The largest band a history of this length has reached, or None."""
    reached = [band for band in all_bands if band <= length]
    return reached[-1] if reached else None


def _cuts(settings: _Settings, histories: Iterable[list[float]]) -> dict[int, float]:
    """Band -> cut over sign-adjusted histories (lower is better), for bands someone reached."""
    pool = list(histories)
    longest = max((len(h) for h in pool), default=0)
    result: dict[int, float] = {}
    for band in settings.bands:
        if band > longest:
            break
        values = sorted(h[band - 1] for h in pool if len(h) >= band)
        result[band] = values[int(len(values) / settings.eta)]
    return result


def _clean(values: Sequence[Any], sign: int) -> list[float]:
    """Finite numbers only (NaN, ±inf and non-numbers dropped), multiplied by ``sign`` so lower is better."""
    return [sign * float(v) for v in values if is_number(v)]


def _sign(metric: Metric) -> int:
    """+1 when lower is better, -1 when higher is better."""
    return 1 if metric.goal == "minimize" else -1


def _settings(early_terminate: Mapping[str, Any]) -> _Settings:
    """The bands, eta and strictness of a checked block."""
    eta = early_terminate["eta"]
    return _Settings(bands=_band_list(early_terminate, eta), eta=eta, strict=bool(early_terminate["strict"]))


def _band_list(early_terminate: Mapping[str, Any], eta: float) -> tuple[int, ...]:
    """Bands from ``max_iter`` and ``s``, else from ``min_iter``, sorted and distinct."""
    if "max_iter" in early_terminate:
        found = _divided(early_terminate["max_iter"], eta, int(early_terminate["s"]))
    else:
        found = _multiplied(early_terminate["min_iter"], eta)
    found = [band for band in found if band >= 1]
    if not found:
        logger.debug("early_terminate %s has no band: nothing will be stopped", dict(early_terminate))
    return tuple(sorted(set(found)))


def _divided(max_iter: float, eta: float, s: int) -> list[int]:
    """``max_iter / eta**k`` for k = 1..s, rounded down, while at least 1."""
    found, band = [], float(max_iter)
    for _ in range(s):
        band /= eta  # repeated division, as W&B, so rounding matches theirs
        if band < 1:
            break
        found.append(int(band))
    return found


def _multiplied(min_iter: float, eta: float) -> list[int]:
    """``min_iter * eta**k`` for W&B's first 100 k, rounded down."""
    found, band = [], float(min_iter)
    for _ in range(_MIN_ITER_BANDS):
        if band > _LAST_BAND:
            break
        found.append(int(band))
        band *= eta
    return found
