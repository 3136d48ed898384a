"""Shared vocabulary: trial states, the trial record, a sampler's proposal and DONE, the sweep's
phase, and what counts as a number and as a count."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping, Sequence

from mlflow_sweep.errors import UsageError


def is_number(value: Any) -> bool:
    """True for a real, finite number; a bool is not one.

    The one rule for a metric value, a numeric bound and an analysed parameter: NaN and ±inf are
    no value (a diverged trial's ``inf`` loss neither reaches a target nor counts as an iteration
    of hyperband), as in W&B's sweeps engine, whose ``is_number`` and ``filter_invalid`` drop both.
    """
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def is_count(value: Any) -> bool:
    """True for a whole number of at least 1 (a bool is not one): run_cap, ``--count``, ``--max-failures``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_count(value: Any, name: str) -> int:
    """``value`` when it is a count (``is_count``), else a UsageError that names it.

    Args:
        value: what the user gave.
        name: how the user wrote its name (``--count``, ``count``, ``run_cap``).
    """
    if not is_count(value):
        raise UsageError(f"{name} must be a whole number of at least 1, but got {value!r}")
    return value


class TrialState(str, Enum):
    """Where a trial is in its life; the terminal ones match MLflow run statuses."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    @property
    def is_terminal(self) -> bool:
        return self is not TrialState.RUNNING


@dataclass(frozen=True)
class Trial:
    """One trial of a sweep as the ledger knows it.

    ``params`` uses flat dotted names (``outer.inner``). ``metric`` is the trial's single
    value under ``metric.summary``, or None when it logged none. ``point`` is the
    grid point index for grid sweeps. ``dead`` marks a trial reaped because its agent
    went silent; ``stopped_at`` is the hyperband iteration that stopped it.
    ``metrics`` holds the counted value of each objective of a sweep with several (``metrics:``),
    by name, an objective the trial logged no value for left out; ``metric`` is then None.
    ``history`` is every value the trial logged under ``metric.name``, in logging order; the
    ledger keeps it only for sweeps with ``early_terminate`` (it sets hyperband's cuts).
    ``requeued`` says why the trial's point was handed out again (``interrupted``: its agent got
    SIGINT/SIGTERM; ``retry``: ``mlflow sweep retry``); such a trial does not count toward
    run_cap. ``retry_of`` is the index of the trial whose point this one runs again.
    ``version`` is the config version the trial was claimed under (1: the config the sweep was
    created with; ``mlflow sweep update --config`` adds one), ``enqueued`` the number of the
    enqueued point it runs (``mlflow sweep enqueue``), if any.

    A *prior run* (``prior``) is an MLflow run the sweep was started from (``--prior-run``): history
    for the search, never run, never counted toward run_cap. Prior runs have negative indices
    (-n .. -1, in the order the sweep recorded them), so they sort before the sweep's own trials
    and never share an index with one.
    """

    index: int
    params: Mapping[str, Any]
    state: TrialState = TrialState.RUNNING
    metric: float | None = None
    point: int | None = None
    run_id: str | None = None
    agent_id: str | None = None
    started: float | None = None
    ended: float | None = None
    dead: bool = False
    stopped_at: int | None = None
    history: tuple[float, ...] | None = None
    requeued: str | None = None
    retry_of: int | None = None
    metrics: Mapping[str, float] | None = None
    version: int = 1
    enqueued: int | None = None
    prior: bool = False

    def values(self, names: Sequence[str]) -> tuple[float | None, ...]:
        """The trial's counted value of each objective named, None where it has none.

        A sweep with one objective keeps its value in ``metric``; one with several in ``metrics``.

        Args:
            names: the objectives' names, in the config's order.
        """
        if self.metrics is None:
            return (self.metric,) if len(names) == 1 else (None,) * len(names)
        return tuple(self.metrics.get(name) for name in names)


def trial_label(trial: Trial) -> str:
    """How people see a trial: ``#3``, or ``prior run 1a2b3c4d`` for a prior run."""
    if trial.prior:
        return f"prior run {trial.run_id}"
    return f"#{trial.index}"


@dataclass(frozen=True)
class Proposal:
    """What a sampler hands out: the next trial's parameters and, for grid, its point index.

    ``retry_of`` is set by ``policy`` (never by a sampler) when the proposal re-issues the point
    of a requeued trial, ``enqueued`` when it runs an enqueued point, ``version`` to the config
    version it was decided under.
    """

    params: Mapping[str, Any] = field(default_factory=dict)
    point: int | None = None
    retry_of: int | None = None
    enqueued: int | None = None
    version: int = 1


class SweepPhase(str, Enum):
    """Where a sweep is in its life, as ``status``, ``list`` and the parent run's ``sweep.state`` tag show it.

    ``running``, ``paused``, ``stopped`` and ``cancelled`` are what the user last asked (the
    ledger's control events hold them, and ``Controls.state`` is never ``done``); ``done`` is
    derived from the trials: run_cap or the metric target reached, or the grid exhausted.
    ``str()`` and f-strings give the value, the word users read.
    """

    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    CANCELLED = "cancelled"
    DONE = "done"

    def __str__(self) -> str:
        return self.value

    @property
    def runs_trials(self) -> bool:
        """True while agents may still run trials (a paused sweep waits for ``resume``)."""
        return self in (SweepPhase.RUNNING, SweepPhase.PAUSED)

    @property
    def parent_status(self) -> TrialState:
        """The parent run's MLflow status: RUNNING while the sweep runs trials, KILLED once cancelled,
        FINISHED once stopped or done."""
        if self.runs_trials:
            return TrialState.RUNNING
        return TrialState.KILLED if self is SweepPhase.CANCELLED else TrialState.FINISHED


@dataclass(frozen=True)
class Enqueued:
    """A point ``mlflow sweep enqueue`` asked for: run before any new point, in order, once.

    ``number`` counts enqueued points across the sweep (0, 1, 2, ...); ``params`` holds the values
    given, checked against the config in effect then (missing parameters are sampled when the
    point is claimed).
    """

    number: int
    params: Mapping[str, Any]


@dataclass(frozen=True)
class Controls:
    """What the ledger says steers the sweep, beside its trials: what the user asked after ``init``.

    ``state`` is the phase the last lifecycle command asked for (never ``done``). ``run_cap`` is
    the value set by ``mlflow sweep update --run-cap``; None keeps the config's. ``version`` is
    the config version in effect (1: the one the sweep was created with). ``enqueued`` is every
    point ever enqueued, in order (claimed or not); ``priors`` the prior runs the sweep was
    created with (``Trial.prior``).
    """

    state: SweepPhase = SweepPhase.RUNNING
    run_cap: int | None = None
    version: int = 1
    enqueued: tuple[Enqueued, ...] = ()
    priors: tuple[Trial, ...] = ()


class _Done:
    """The sampler's "nothing left to propose"; a value, not an exception."""

    _instance: _Done | None = None

    def __new__(cls) -> _Done:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DONE"

    def __bool__(self) -> bool:
        return False


DONE = _Done()
