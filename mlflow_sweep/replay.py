"""The ledger's events and their pure replay: events in, the sweep's state out.

Events (every event has "event" and "time", Unix seconds from the writer's clock)::

    {"event": "sweep", "v": 3, "time": t, "header": {"config": {...}, "seed": 7, "sweep_id": "...", "priors": [...]}}
    {"event": "claim", "trial": 0, "params": {...}, "point": 3, "agent": "node1-4242-a1b2c3", "time": t}
    {"event": "start", "trial": 0, "run_id": "0a1b...", "time": t}
    {"event": "end", "trial": 0, "state": "FINISHED", "metric": 0.93, "stopped_at": null, "time": t}
    {"event": "dead", "trial": 0, "last_beat": t0, "time": t}

An "end" event of a sweep with ``early_terminate`` also carries "history": every value the trial
logged under the metric, in logging order, which hyperband's cuts pool across trials. One of a
sweep with several objectives (``metrics:``) carries "metrics": each objective's counted value by
name, ``{"loss": 0.12, "latency_ms": 31.0}``, an objective without a value left out ("metric" is null).

The header's "priors" (format 3; absent when the sweep has none) are the prior runs the sweep was
created with, each as ``{"run_id": ..., "params": {...}, "metric": 0.41}`` (plus "metrics" for a
sweep with several objectives, "history" for one with ``early_terminate``): the params already
converted to the declared types and the value counted as for a trial, so the sweep never depends
on those runs staying as they were.

Lifecycle events, written by the lifecycle commands::

    {"event": "control", "state": "paused", "by": "alice@login01", "time": t}
    {"event": "run_cap", "run_cap": 20, "by": "alice@login01", "time": t}
    {"event": "requeue", "trials": [3, 7], "reason": "retry", "time": t}
    {"event": "enqueue", "points": [{"lr": 0.01}, {"lr": 0.1, "opt": "adam"}], "by": "alice@login01", "time": t}
    {"event": "config", "version": 2, "config": {...}, "by": "alice@login01", "time": t}

"control" records what the user asked (running, paused, stopped, cancelled; the last one
counts); "run_cap" replaces the config's run_cap (the last one counts); "requeue" hands the
points of ended trials out again (``mlflow sweep retry``). An "end" event with
``"requeue": "interrupted"`` ends a trial whose agent got a signal and requeues it in the same
event. A trial is requeued once (the first wins); a claim that re-issues its point carries
``"retry_of": 3``.

"enqueue" adds points to run before any new one (``mlflow sweep enqueue``); they are numbered
0, 1, 2, ... across the sweep in log order, and the claim that runs point k carries
``"enqueued": k``. "config" is a new version of the sweep's config (``mlflow sweep update
--config``), checked before it was written; versions are numbered by their order in the log (the
header's config is version 1; "version" repeats the number for people reading the files), and a
claim decided under version n > 1 carries ``"config_version": n``. A new version whose run_cap
differs from the previous version's replaces an ``update --run-cap``; one with the same run_cap
keeps it.

Rules of the replay: the first event is the only "sweep" header; claims number the trials 0, 1,
2, ... in log order, and a claim whose number is not the next one was decided on a stale view
(two writers of the old single-file format on a network filesystem): it is dropped and kept in
``SweepState.conflicts``, and the first claim in log order keeps the trial; the first "end" or
"dead" of a trial wins and later ones are ignored (losing that race is normal); unknown event
kinds are skipped, which leaves room for additions. Metrics may be NaN or Infinity, spelled as
Python's json module does. A header with a larger format version "v" than this one is refused:
format 3 added prior runs, "enqueue" and "config", which an older reader would run wrongly.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping

from mlflow_sweep.errors import LedgerError
from mlflow_sweep.trials import Controls, Enqueued, SweepPhase, Trial, TrialState, is_count

FORMAT_VERSION = 3


@dataclass(frozen=True)
class Conflict:
    """A claim that lost a race: it named a trial number that an earlier claim in the log already had."""

    trial: int
    agent: str | None
    event: int  # its position in the log (0 is the header)


@dataclass(frozen=True)
class ConfigVersion:
    """One version of the sweep's config: its number (1 is the one the sweep was created with), the
    normalized config, who set it and when."""

    number: int
    config: Mapping[str, Any]
    by: str | None = None
    time: float | None = None


@dataclass(frozen=True)
class SweepState:
    """What the ledger says about a sweep: its header payload, every trial in index order, conflicts."""

    header: Mapping[str, Any]
    trials: tuple[Trial, ...] = ()
    version: int = FORMAT_VERSION
    conflicts: tuple[Conflict, ...] = ()
    controls: Controls = Controls()
    applied: int = field(default=0, compare=False)
    """How many events of the log this state folds in: the number of the next event to read."""
    configs: tuple[ConfigVersion, ...] = ()
    """Every version of the config, oldest first; the last one is in effect (``controls.version``)."""

    @property
    def config(self) -> Mapping[str, Any]:
        """The normalized config in effect (the last version)."""
        return self.configs[-1].config if self.configs else self.header["config"]

    def count(self, *states: TrialState) -> int:
        """Number of trials in any of ``states`` (all trials when none are given)."""
        if not states:
            return len(self.trials)
        return sum(1 for trial in self.trials if trial.state in states)

    def running(self) -> tuple[Trial, ...]:
        """Trials still RUNNING."""
        return tuple(t for t in self.trials if t.state is TrialState.RUNNING)

    def finished(self) -> tuple[Trial, ...]:
        """Trials that ended FINISHED (the command exited 0)."""
        return tuple(t for t in self.trials if t.state is TrialState.FINISHED)

    def terminal(self) -> tuple[Trial, ...]:
        """Trials in any terminal state (FINISHED, FAILED, KILLED, or reaped as dead)."""
        return tuple(t for t in self.trials if t.state.is_terminal)


class BadEvent(ValueError):
    """An event that does not fit the ledger so far; the reader adds where it is."""


def _index(event: Mapping[str, Any]) -> int:
    index = event["trial"]
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise BadEvent(f"'trial' must be a non-negative integer, but got {index!r}")
    return index


def _updated(trial: Trial, **changes: Any) -> Trial:
    """``dataclasses.replace`` without its introspection, which was a third of a cold read's time."""
    new = object.__new__(Trial)
    new.__dict__.update(trial.__dict__, **changes)
    return new


class Fold:
    """A left fold over events, one handler per event kind; ``apply`` one at a time, ``snapshot`` any time."""

    def __init__(self) -> None:
        self.header: dict[str, Any] | None = None
        self.version = FORMAT_VERSION
        self.trials: list[Trial] = []
        self.conflicts: list[Conflict] = []
        self.controls = Controls()
        self.configs: list[ConfigVersion] = []
        self.applied = 0
        self._snapshot: SweepState | None = None

    def apply(self, event: Mapping[str, Any]) -> None:
        """Fold one event in; raises ``BadEvent`` when it cannot be applied."""
        if not isinstance(event, dict) and not isinstance(event, Mapping):  # dict first: the ABC check is slow
            raise BadEvent(f"an event must be a JSON object, but got {event!r}")
        kind = event.get("event")
        if self.header is None and kind != "sweep":
            raise BadEvent(f"the first event must be the sweep header, but got {kind!r}")
        handler = _HANDLERS.get(kind)
        if handler is not None:  # else an event kind added later: skip it (module docstring)
            try:
                handler(self, event)
            except BadEvent:
                raise
            except (KeyError, TypeError, ValueError) as exc:
                raise BadEvent(f"bad {kind!r} event ({type(exc).__name__}: {exc})") from None
        self.applied += 1
        self._snapshot = None

    def snapshot(self) -> SweepState:
        """The state so far; the same object until the next event."""
        if self.header is None:
            raise BadEvent("the ledger has no sweep header")
        if self._snapshot is None:
            self._snapshot = SweepState(self.header, tuple(self.trials), self.version, tuple(self.conflicts),
                                        self.controls, self.applied, tuple(self.configs))
        return self._snapshot

    def _trial(self, event: Mapping[str, Any]) -> Trial:
        index = _index(event)
        if index >= len(self.trials):
            raise BadEvent(f"trial {index} was never claimed")
        return self.trials[index]

    def _on_sweep(self, event: Mapping[str, Any]) -> None:
        if self.header is not None:
            raise BadEvent("a second sweep header")
        version = int(event["v"])
        if version > FORMAT_VERSION:
            raise BadEvent(f"ledger format v{version} is newer than this mlflow-sweep reads "
                            f"(v{FORMAT_VERSION}); upgrade mlflow-sweep")
        self.header, self.version = dict(event["header"]), version
        self.configs = [ConfigVersion(1, self.header["config"], None, self.header.get("created"))]
        priors = self.header.get("priors") or ()
        self.controls = replace(self.controls, priors=tuple(_prior(i - len(priors), p) for i, p in enumerate(priors)))

    def _on_claim(self, event: Mapping[str, Any]) -> None:
        index = _index(event)
        if index != len(self.trials):  # decided on a stale view: the first claim keeps the trial
            self.conflicts.append(Conflict(index, event.get("agent"), self.applied))
            return
        retry_of, enqueued = event.get("retry_of"), event.get("enqueued")
        self.trials.append(Trial(index=index, params=dict(event["params"]), point=event.get("point"),
                                 agent_id=event.get("agent"), started=float(event["time"]),
                                 retry_of=None if retry_of is None else int(retry_of),
                                 version=int(event.get("config_version", 1)),
                                 enqueued=None if enqueued is None else int(enqueued)))

    def _on_start(self, event: Mapping[str, Any]) -> None:
        trial = self._trial(event)
        self.trials[trial.index] = _updated(trial, run_id=str(event["run_id"]))

    def _on_end(self, event: Mapping[str, Any]) -> None:
        trial, state = self._trial(event), TrialState(event["state"])
        if not state.is_terminal:
            raise BadEvent(f"an end event must carry a terminal state, but got {state.value!r}")
        if trial.state.is_terminal:
            return  # first terminal event wins
        metric, history, requeue = event.get("metric"), event.get("history"), event.get("requeue")
        metrics = event.get("metrics")
        self.trials[trial.index] = _updated(
            trial, state=state, metric=None if metric is None else float(metric),
            metrics=None if metrics is None else {str(k): float(v) for k, v in metrics.items()},
            ended=float(event["time"]), stopped_at=event.get("stopped_at"),
            history=None if history is None else tuple(float(v) for v in history),
            requeued=None if requeue is None else str(requeue))

    def _on_dead(self, event: Mapping[str, Any]) -> None:
        trial = self._trial(event)
        if not trial.state.is_terminal:
            self.trials[trial.index] = _updated(trial, state=TrialState.FAILED, dead=True,
                                               ended=float(event["time"]))


    def _on_control(self, event: Mapping[str, Any]) -> None:
        state = SweepPhase(event["state"])
        if state is SweepPhase.DONE:
            raise BadEvent("a control event cannot ask for 'done', which only the trials decide")
        self.controls = replace(self.controls, state=state)

    def _on_run_cap(self, event: Mapping[str, Any]) -> None:
        run_cap = event["run_cap"]
        if not is_count(run_cap):
            raise BadEvent(f"'run_cap' must be an integer of at least 1, but got {run_cap!r}")
        self.controls = replace(self.controls, run_cap=run_cap)

    def _on_requeue(self, event: Mapping[str, Any]) -> None:
        reason = str(event["reason"])
        for index in event["trials"]:
            trial = self._trial({"trial": index})
            if trial.state.is_terminal and trial.requeued is None:  # the first requeue of an ended trial wins
                self.trials[trial.index] = _updated(trial, requeued=reason)


    def _on_enqueue(self, event: Mapping[str, Any]) -> None:
        have = self.controls.enqueued
        points = [Enqueued(len(have) + i, dict(point)) for i, point in enumerate(event["points"])]
        self.controls = replace(self.controls, enqueued=(*have, *points))

    def _on_config(self, event: Mapping[str, Any]) -> None:
        config, previous = dict(event["config"]), self.configs[-1].config
        if not isinstance(config.get("parameters"), dict):
            raise BadEvent("a config event must hold a config with parameters")
        number = len(self.configs) + 1
        self.configs.append(ConfigVersion(number, config, event.get("by"), float(event["time"])))
        # a run_cap changed in the file replaces 'update --run-cap'; the same run_cap keeps it
        run_cap = None if config.get("run_cap") != previous.get("run_cap") else self.controls.run_cap
        self.controls = replace(self.controls, version=number, run_cap=run_cap)


def _prior(index: int, record: Mapping[str, Any]) -> Trial:
    """A prior run from the header, as a finished trial with a negative index."""
    metric, metrics, history = record.get("metric"), record.get("metrics"), record.get("history")
    return Trial(index=index, params=dict(record["params"]), state=TrialState.FINISHED,
                 metric=None if metric is None else float(metric), run_id=str(record["run_id"]),
                 history=None if history is None else tuple(float(v) for v in history), prior=True,
                 metrics=None if metrics is None else {str(k): float(v) for k, v in metrics.items()})


_HANDLERS: dict[Any, Callable[[Fold, Mapping[str, Any]], None]] = {
    "sweep": Fold._on_sweep, "claim": Fold._on_claim, "start": Fold._on_start,
    "end": Fold._on_end, "dead": Fold._on_dead,
    "control": Fold._on_control, "run_cap": Fold._on_run_cap, "requeue": Fold._on_requeue,
    "enqueue": Fold._on_enqueue, "config": Fold._on_config,
}
LIFECYCLE_EVENTS = frozenset({"control", "run_cap", "requeue", "enqueue", "config"})


def replay(events: Iterable[Mapping[str, Any]]) -> SweepState:
    """Fold ledger events, header first, into the sweep's state.

    Args:
        events: decoded ledger events in log order.
    """
    fold = Fold()
    for number, event in enumerate(events, 1):
        try:
            fold.apply(event)
        except BadEvent as exc:
            raise LedgerError(f"ledger event {number}: {exc}") from None
    try:
        return fold.snapshot()
    except BadEvent as exc:
        raise LedgerError(str(exc)) from None
