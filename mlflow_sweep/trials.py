"""Shared vocabulary: trial states, the trial record, a sampler's proposal and DONE."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping, Sequence


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
    value under ``metric.summary`` (SPEC §3), or None when it logged none. ``point`` is the
    grid point index for grid sweeps. ``dead`` marks a trial reaped because its agent
    went silent (SPEC §4); ``stopped_at`` is the hyperband iteration that stopped it.
    ``metrics`` holds the counted value of each objective of a sweep with several (``metrics:``),
    by name, an objective the trial logged no value for left out; ``metric`` is then None.
    ``history`` is every value the trial logged under ``metric.name``, in logging order; the
    ledger keeps it only for sweeps with ``early_terminate`` (hyperband cuts, issue 6).
    ``requeued`` says why the trial's point was handed out again (``interrupted``: its agent got
    SIGINT/SIGTERM; ``retry``: ``mlflow sweep retry``); such a trial does not count toward
    run_cap (SPEC §4b). ``retry_of`` is the index of the trial whose point this one runs again.
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

    def values(self, names: Sequence[str]) -> tuple[float | None, ...]:
        """The trial's counted value of each objective named, None where it has none.

        A sweep with one objective keeps its value in ``metric``; one with several in ``metrics``.

        Args:
            names: the objectives' names, in the config's order.
        """
        if self.metrics is None:
            return (self.metric,) if len(names) == 1 else (None,) * len(names)
        return tuple(self.metrics.get(name) for name in names)


@dataclass(frozen=True)
class Proposal:
    """What a sampler hands out: the next trial's parameters and, for grid, its point index.

    ``retry_of`` is set by ``policy`` (never by a sampler) when the proposal re-issues the point
    of a requeued trial.
    """

    params: Mapping[str, Any] = field(default_factory=dict)
    point: int | None = None
    retry_of: int | None = None


class SweepControl(str, Enum):
    """What the user last asked of the sweep (SPEC §4b); ``running`` until a command says otherwise."""

    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Controls:
    """The sweep's lifecycle settings from the ledger: the requested state and a run_cap override.

    ``run_cap`` is the value set by ``mlflow sweep update --run-cap``; None keeps the config's.
    """

    state: SweepControl = SweepControl.RUNNING
    run_cap: int | None = None


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
