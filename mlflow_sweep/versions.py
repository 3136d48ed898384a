"""A new version of a live sweep's config: what it changes, and what it may not change.

``mlflow sweep update --config FILE`` checks the file as ``init`` does (``config.load_config``),
then asks ``compare`` about the config in effect: the changes to show, or the reasons the new
version cannot apply. Pure: two checked configs in, words out.

What a new version may not change, and why:

- ``experiment_name`` and ``sweep_name``: the sweep is a parent run in an experiment; they name it.
- ``seed``: the draws so far came from it (a file without ``seed`` keeps the sweep's).
- the metric's ``name``, ``goal`` and ``summary`` (adding or removing the metric, too): every
  trial's value was counted by them and the ledger keeps that one value, so old trials would be
  compared with new ones on another scale. ``target`` and ``impute`` may change.
- ``early_terminate``: running agents judge their trials by the bands they started with.

A new config that is invalid for its method (a grid with an infinite parameter, ``bayes``
without a metric) is refused by the check every file gets, before ``compare``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from mlflow_sweep.errors import Problem

if TYPE_CHECKING:
    from mlflow_sweep.config import SweepConfig

_FIXED_METRIC = ("name", "goal", "summary")
_FREE_METRIC = ("target", "impute")


@dataclass(frozen=True)
class Comparison:
    """What a new config version changes (lines for people) and why it cannot apply (empty: it can)."""

    changes: tuple[str, ...]
    refused: tuple[Problem, ...]


def compare(old: SweepConfig, new: SweepConfig, seed: int) -> Comparison:
    """The changes from ``old`` (the version in effect) to ``new``, and the reasons it is refused.

    Args:
        old: the config in effect.
        new: the checked new config.
        seed: the sweep's seed (from its ledger).
    """
    refused = [*_names(old, new), *_seed(new, seed), *_metric(old.raw, new.raw)]
    if dict(old.early_terminate or {}) != dict(new.early_terminate or {}):
        refused.append(Problem("early_terminate", "cannot change: running agents judge their trials by the bands "
                               "they started with", _NEW_SWEEP))
    return Comparison(tuple(_changes(old, new)), tuple(refused))


_NEW_SWEEP = "start a new sweep from this one's runs instead: mlflow sweep init FILE --prior-experiment NAME"


def _names(old: SweepConfig, new: SweepConfig) -> list[Problem]:
    out = []
    if new.experiment_name != old.experiment_name:
        out.append(Problem("experiment_name", f"cannot change ({old.experiment_name!r} -> {new.experiment_name!r}): "
                                              f"the sweep and its runs are in experiment {old.experiment_name!r}"))
    if new.sweep_name != old.sweep_name:
        out.append(Problem("sweep_name", f"cannot change ({old.sweep_name!r} -> {new.sweep_name!r}): it names the "
                                         "sweep's parent run", "leave it as it was"))
    return out


def _seed(new: SweepConfig, seed: int) -> list[Problem]:
    if new.seed is None or new.seed == seed:
        return []
    return [Problem("seed", f"cannot change ({seed} -> {new.seed}): the sweep's draws so far came from seed {seed}",
                    f"leave seed out or keep {seed}")]


def _objectives(raw: Mapping[str, Any]) -> list[tuple]:
    """The metric (or metrics) as the values that counted every trial: name, goal, summary."""
    entries = [raw["metric"]] if raw.get("metric") else list(raw.get("metrics") or ())
    return [tuple(entry.get(k) for k in _FIXED_METRIC) for entry in entries]


def _metric(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Problem]:
    before, after = _objectives(old), _objectives(new)
    if before == after:
        return []
    key = "metrics" if "metrics" in new or "metrics" in old else "metric"
    return [Problem(key, f"cannot change ({_described(before)} -> {_described(after)}): every trial's value was "
                         "counted by its name, goal and summary, and old trials would be ranked with new ones on "
                         "another scale (target and impute may change)", _NEW_SWEEP)]


def _described(objectives: list[tuple]) -> str:
    return ", ".join(f"{name} ({goal}, summary {summary})" for name, goal, summary in objectives) or "none"


def _changes(old: SweepConfig, new: SweepConfig) -> list[str]:
    out = []
    for key in ("method", "run_cap", "command", "program", "description"):
        a, b = old.raw.get(key), new.raw.get(key)
        if a != b:
            out.append(f"{key}: {_shown(a)} -> {_shown(b)}")
    for key in _FREE_METRIC:
        a, b = (old.raw.get("metric") or {}).get(key), (new.raw.get("metric") or {}).get(key)
        if a != b:
            out.append(f"metric.{key}: {_shown(a)} -> {_shown(b)}")
    return out + _parameter_changes(old, new)


def _parameter_changes(old: SweepConfig, new: SweepConfig) -> list[str]:
    out = []
    for name, dist in new.parameters.items():
        before = old.parameters.get(name)
        if before is None:
            backfill = (f", {new.defaults[name]!r} for earlier runs" if name in new.defaults
                        else _single(dist) or ", earlier runs do not fit (no default:)")
            out.append(f"parameters.{name} added: {dist.describe()}{backfill}")
        elif before != dist or old.defaults.get(name) != new.defaults.get(name):
            out.append(f"parameters.{name}: {before.describe()} -> {dist.describe()}")
    out += [f"parameters.{name} removed" for name in old.parameters if name not in new.parameters]
    return out


def _single(dist: Any) -> str:
    values = dist.grid_values()
    return f", {values[0]!r} for earlier runs" if values is not None and len(values) == 1 else ""


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    return " ".join(str(part) for part in value) if isinstance(value, list) else str(value)
