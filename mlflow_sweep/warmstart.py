"""Which MLflow runs a new sweep starts from (``--prior-run``, ``--prior-experiment``), and why others not.

``choose`` is pure: the runs as the tracking store gives them (``tracker.RunRecord``) in, the prior
runs to record in the ledger's header and the count of those left out, by reason, out. A run is
used when it finished, when every swept parameter is among its params and fits the search space
(MLflow's text read as the declared type: ``points.from_run``; a parameter it lacks takes its
``default:`` or single ``value:``), and, for a method that learns from values (``bayes``, Optuna's),
when it logged the metric (every objective of a sweep with ``metrics:``). Its value is counted as
a trial's is: ``metric.summary`` over every value it logged.

What the header keeps of a used run is its ID, its params as placed and its value (each
objective's, for a sweep with several; and, for a sweep with ``early_terminate``, the values it
logged, which hyperband's cuts pool): the sweep never reads the run again, so it does not depend
on the run staying as it was.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from mlflow_sweep import points
from mlflow_sweep.methods import METHODS
from mlflow_sweep.tracker import SWEEP_TAG

if TYPE_CHECKING:
    from mlflow_sweep.config import SweepConfig
    from mlflow_sweep.tracker import RunRecord

@dataclass(frozen=True)
class LeftOut:
    """Prior runs left out for one reason: how many, and the names involved (parameters, states)."""

    reason: str
    count: int
    names: tuple[str, ...] = ()

    def __str__(self) -> str:
        reason = self.reason.replace("{s}", "s" * (self.count != 1))
        return f"{self.count} {reason}" + (f" ({', '.join(self.names)})" if self.names else "")


@dataclass(frozen=True)
class PriorChoice:
    """The prior runs a sweep starts from (as the header records them) and those left out, by reason."""

    used: tuple[dict[str, Any], ...] = ()
    left_out: tuple[LeftOut, ...] = ()

    @property
    def looked_at(self) -> int:
        """How many distinct runs were considered."""
        return len(self.used) + sum(group.count for group in self.left_out)

    def summary(self) -> str:
        """``12 prior runs: 9 used, 2 outside the space (lr), 1 without val_loss``."""
        n = self.looked_at
        return ", ".join([f"{n} prior run{'s' * (n != 1)}: {len(self.used)} used", *map(str, self.left_out)])


def choose(config: SweepConfig, records: Sequence[RunRecord]) -> PriorChoice:
    """The prior runs to use from ``records`` (each run once, in the order given), and why the others are not.

    Args:
        config: the checked config of the new sweep.
        records: the runs, each with the history of the sweep's metric when it has one.
    """
    used: list[dict[str, Any]] = []
    reasons: dict[str, list[str | None]] = {}
    seen: set[str] = set()
    for record in records:
        if record.run_id in seen:
            continue
        seen.add(record.run_id)
        prior, why, name = _placed(config, record)
        if prior is not None:
            used.append(prior)
        else:
            reasons.setdefault(why, []).append(name)  # type: ignore[arg-type]
    left = [LeftOut(why, len(names), tuple(sorted({n for n in names if n}))) for why, names in reasons.items()]
    return PriorChoice(tuple(used), tuple(sorted(left, key=lambda g: _rank(g.reason))))


_SWEEP_RUN, _NOT_FINISHED, _OUTSIDE, _MISSING = ("sweep parent run{s}", "not finished", "outside the space",
                                                "missing a parameter")


def _without(config: SweepConfig) -> str:
    return f"without {config.metric.name}" if config.metric else "without a value of every objective"


def _placed(config: SweepConfig, record: RunRecord) -> tuple[dict[str, Any] | None, str, str | None]:
    """The header record of a usable run, or None with the reason and the name it is about."""
    if record.tags.get(SWEEP_TAG) == "True":
        return None, _SWEEP_RUN, None
    if record.status != "FINISHED":
        return None, _NOT_FINISHED, record.status
    placed = points.from_run(config, record.params)
    if placed.params is None:
        return None, _OUTSIDE if placed.why == "outside" else _MISSING, placed.name
    values = config.count(record.histories)
    missing = [m.name for m in config.objectives if m.name not in values]
    if missing and needs_values(config):
        return None, _without(config), None if config.metric else ", ".join(missing)
    prior: dict[str, Any] = {"run_id": record.run_id, "params": placed.params,
                             "metric": values.get(config.metric.name) if config.metric else None}
    if config.metrics:
        prior["metrics"] = values
    if config.early_terminate and config.metric:
        prior["history"] = [float(v) for v in record.histories.get(config.metric.name, ())]
    return prior, "", None


def needs_values(config: SweepConfig) -> bool:
    """Whether the method learns from values (so a prior run without them is no use to it)."""
    method = METHODS.get(config.method)
    return method is None or method.needs_metric


_ORDER = [_OUTSIDE, _MISSING, "without", _NOT_FINISHED, "sweep"]


def _rank(reason: str) -> int:
    return next(i for i, start in enumerate(_ORDER) if reason.startswith(start))
