"""The sweep ledger: an append-only log of JSON events and its pure replay (SPEC §4).

Storage (``mlflow_sweep.journal``): ``ledger.jsonl`` holds the first events (for a sweep made by
this version, only the header), ``events/<n>.json`` each later event, published without a lock by
an exclusive ``link()`` of its sequence number; ``agents/<id>.json`` holds each agent's last
heartbeat, rewritten atomically. The replay (``replay``, ``_Replay``) knows nothing of files.

Events (every event has "event" and "time", Unix seconds from the writer's clock)::

    {"event": "sweep", "v": 2, "time": t, "header": {"config": {...}, "seed": 7, "sweep_id": "..."}}
    {"event": "claim", "trial": 0, "params": {...}, "point": 3, "agent": "node1-4242-a1b2c3", "time": t}
    {"event": "start", "trial": 0, "run_id": "0a1b...", "time": t}
    {"event": "end", "trial": 0, "state": "FINISHED", "metric": 0.93, "stopped_at": null, "time": t}
    {"event": "dead", "trial": 0, "last_beat": t0, "time": t}

An "end" event of a sweep with ``early_terminate`` also carries "history": every value the trial
logged under the metric, in logging order, which hyperband's cuts pool (issue 6).

Lifecycle events (SPEC §4b, issue 10)::

    {"event": "control", "state": "paused", "by": "alice@login01", "time": t}
    {"event": "run_cap", "run_cap": 20, "by": "alice@login01", "time": t}
    {"event": "requeue", "trials": [3, 7], "reason": "retry", "time": t}

"control" records what the user asked (running, paused, stopped, cancelled; the last one
counts); "run_cap" replaces the config's run_cap (the last one counts); "requeue" hands the
points of ended trials out again (``mlflow sweep retry``). An "end" event with
``"requeue": "interrupted"`` ends a trial whose agent got a signal and requeues it in the same
event. A trial is requeued once (the first wins); a claim that re-issues its point carries
``"retry_of": 3``.

Format versions: v1 kept every event in ledger.jsonl, appended under a lock; v2 (this version)
writes the header there and every later event to events/. The events are the same; a v1 ledger
replays as it is and is continued in events/ (its file is never written again). A header with a
larger "v" is refused.

Rules of the replay: the first event is the only "sweep" header; claims number the trials 0, 1,
2, ... in log order, and a claim whose number is not the next one lost a race (two writers of v1
on a network filesystem) and is dropped and kept in ``SweepState.conflicts`` (the first claim in
log order keeps the trial, issue 11); the first "end" or "dead" of a trial wins and later ones are
ignored (losing that race is normal); unknown event kinds are skipped (room for additions). Metrics
may be NaN or Infinity, spelled as Python's json module does.
"""
from __future__ import annotations

import itertools
import json
import logging
import math
import os
import random
import re
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from mlflow_sweep.errors import LedgerError
from mlflow_sweep.journal import LEDGER_NAME, Journal
from mlflow_sweep.mounts import check_mount
from mlflow_sweep.trials import DONE, Controls, Proposal, SweepPhase, Trial, TrialState, is_count

if TYPE_CHECKING:
    from mlflow_sweep.trials import _Done

FORMAT_VERSION = 2
_AGENT_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@:+-]*")
_now: Callable[[], float] = time.time  # event clock; the asset generators swap in a fixed one
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Conflict:
    """A claim that lost a race: it named a trial number that an earlier claim in the log already had."""

    trial: int
    agent: str | None
    event: int  # its position in the log (0 is the header)


@dataclass(frozen=True)
class SweepState:
    """What the ledger says about a sweep: its header payload, every trial in index order, conflicts."""

    header: Mapping[str, Any]
    trials: tuple[Trial, ...] = ()
    version: int = FORMAT_VERSION
    conflicts: tuple[Conflict, ...] = ()
    controls: Controls = Controls()

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


class _BadEvent(ValueError):
    """An event that does not fit the ledger so far; the reader adds where it is."""


def _index(event: Mapping[str, Any]) -> int:
    index = event["trial"]
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise _BadEvent(f"'trial' must be a non-negative integer, but got {index!r}")
    return index


class _Replay:
    """A left fold over events, one handler per event kind; ``apply`` one at a time, ``snapshot`` any time."""

    def __init__(self) -> None:
        self.header: dict[str, Any] | None = None
        self.version = FORMAT_VERSION
        self.trials: list[Trial] = []
        self.conflicts: list[Conflict] = []
        self.controls = Controls()
        self.applied = 0
        self._snapshot: SweepState | None = None

    def apply(self, event: Mapping[str, Any]) -> None:
        """Fold one event in; raises ``_BadEvent`` when it cannot be applied."""
        if not isinstance(event, Mapping):
            raise _BadEvent(f"an event must be a JSON object, but got {event!r}")
        kind = event.get("event")
        if self.header is None and kind != "sweep":
            raise _BadEvent(f"the first event must be the sweep header, but got {kind!r}")
        handler = _HANDLERS.get(kind)
        if handler is not None:  # else an event kind added later: skip it (module docstring)
            try:
                handler(self, event)
            except _BadEvent:
                raise
            except (KeyError, TypeError, ValueError) as exc:
                raise _BadEvent(f"bad {kind!r} event ({type(exc).__name__}: {exc})") from None
        self.applied += 1
        self._snapshot = None

    def snapshot(self) -> SweepState:
        """The state so far; the same object until the next event."""
        if self.header is None:
            raise _BadEvent("the ledger has no sweep header")
        if self._snapshot is None:
            self._snapshot = SweepState(self.header, tuple(self.trials), self.version, tuple(self.conflicts),
                                        self.controls)
        return self._snapshot

    def _trial(self, event: Mapping[str, Any]) -> Trial:
        index = _index(event)
        if index >= len(self.trials):
            raise _BadEvent(f"trial {index} was never claimed")
        return self.trials[index]

    def _on_sweep(self, event: Mapping[str, Any]) -> None:
        if self.header is not None:
            raise _BadEvent("a second sweep header")
        version = int(event["v"])
        if version > FORMAT_VERSION:
            raise _BadEvent(f"ledger format v{version} is newer than this mlflow-sweep reads "
                            f"(v{FORMAT_VERSION}); upgrade mlflow-sweep")
        self.header, self.version = dict(event["header"]), version

    def _on_claim(self, event: Mapping[str, Any]) -> None:
        index = _index(event)
        if index != len(self.trials):  # decided on a stale view: the first claim keeps the trial
            self.conflicts.append(Conflict(index, event.get("agent"), self.applied))
            return
        retry_of = event.get("retry_of")
        self.trials.append(Trial(index=index, params=dict(event["params"]), point=event.get("point"),
                                 agent_id=event.get("agent"), started=float(event["time"]),
                                 retry_of=None if retry_of is None else int(retry_of)))

    def _on_start(self, event: Mapping[str, Any]) -> None:
        trial = self._trial(event)
        self.trials[trial.index] = replace(trial, run_id=str(event["run_id"]))

    def _on_end(self, event: Mapping[str, Any]) -> None:
        trial, state = self._trial(event), TrialState(event["state"])
        if not state.is_terminal:
            raise _BadEvent(f"an end event must carry a terminal state, but got {state.value!r}")
        if trial.state.is_terminal:
            return  # first terminal event wins
        metric, history, requeue = event.get("metric"), event.get("history"), event.get("requeue")
        self.trials[trial.index] = replace(
            trial, state=state, metric=None if metric is None else float(metric),
            ended=float(event["time"]), stopped_at=event.get("stopped_at"),
            history=None if history is None else tuple(float(v) for v in history),
            requeued=None if requeue is None else str(requeue))

    def _on_dead(self, event: Mapping[str, Any]) -> None:
        trial = self._trial(event)
        if not trial.state.is_terminal:
            self.trials[trial.index] = replace(trial, state=TrialState.FAILED, dead=True,
                                               ended=float(event["time"]))


    def _on_control(self, event: Mapping[str, Any]) -> None:
        state = SweepPhase(event["state"])
        if state is SweepPhase.DONE:
            raise _BadEvent("a control event cannot ask for 'done', which only the trials decide")
        self.controls = replace(self.controls, state=state)

    def _on_run_cap(self, event: Mapping[str, Any]) -> None:
        run_cap = event["run_cap"]
        if not is_count(run_cap):
            raise _BadEvent(f"'run_cap' must be an integer of at least 1, but got {run_cap!r}")
        self.controls = replace(self.controls, run_cap=run_cap)

    def _on_requeue(self, event: Mapping[str, Any]) -> None:
        reason = str(event["reason"])
        for index in event["trials"]:
            trial = self._trial({"trial": index})
            if trial.state.is_terminal and trial.requeued is None:  # the first requeue of an ended trial wins
                self.trials[trial.index] = replace(trial, requeued=reason)


_HANDLERS: dict[Any, Callable[[_Replay, Mapping[str, Any]], None]] = {
    "sweep": _Replay._on_sweep, "claim": _Replay._on_claim, "start": _Replay._on_start,
    "end": _Replay._on_end, "dead": _Replay._on_dead,
    "control": _Replay._on_control, "run_cap": _Replay._on_run_cap, "requeue": _Replay._on_requeue,
}
LIFECYCLE_EVENTS = frozenset({"control", "run_cap", "requeue"})


def replay(events: Iterable[Mapping[str, Any]]) -> SweepState:
    """Fold ledger events, header first, into the sweep's state (pure).

    Args:
        events: decoded ledger events in log order.
    """
    fold = _Replay()
    for number, event in enumerate(events, 1):
        try:
            fold.apply(event)
        except _BadEvent as exc:
            raise LedgerError(f"ledger event {number}: {exc}") from None
    try:
        return fold.snapshot()
    except _BadEvent as exc:
        raise LedgerError(str(exc)) from None


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars from samplers
        return value.item()
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON serializable")


def _encode(event: Mapping[str, Any]) -> bytes:
    return (json.dumps(event, separators=(", ", ": "), default=_jsonable) + "\n").encode()


class Ledger:
    """One sweep's ledger directory: incremental reads, lock-free appends, heartbeats, reaping."""

    def __init__(self, directory: str | os.PathLike[str], *, timeout: float = 60.0) -> None:
        """Open the ledger in ``directory`` (nothing is read yet; see ``create`` for a new one).

        Args:
            directory: the ledger directory, shared by every agent of the sweep.
            timeout: seconds a transient filesystem error (ESTALE, EIO, ...) may last before it
                becomes a LedgerError.
        """
        self.directory = Path(directory).absolute()
        self.path = self.directory / LEDGER_NAME
        self.timeout = timeout
        self._journal = Journal(self.directory, timeout)
        self._mutex = threading.RLock()  # one fold, shared by this object's threads
        self._fold = _Replay()
        self._checked_mount: float | None = None

    def __repr__(self) -> str:
        return f"Ledger({str(self.directory)!r})"

    @classmethod
    def create(cls, directory: str | os.PathLike[str], header: Mapping[str, Any], *, timeout: float = 60.0) -> Ledger:
        """Start a new ledger whose first event is the sweep header; LedgerError if one exists.

        Args:
            directory: the ledger directory (created if missing).
            header: the header payload, e.g. {"config": ..., "seed": ..., "sweep_id": ...}.
            timeout: as for ``Ledger``.
        """
        Path(directory).mkdir(parents=True, exist_ok=True)
        ledger = cls(directory, timeout=timeout)
        Journal.create(ledger.directory, _encode({"event": "sweep", "v": FORMAT_VERSION, "time": _now(),
                                                   "header": dict(header)}))
        return ledger

    def state(self) -> SweepState:
        """The sweep's current state, reading only the events published since last time."""
        with self._mutex:
            self._read_new()
            return self._snapshot()

    def claim(self, decide: Callable[[SweepState], Proposal | _Done], agent_id: str) -> Trial | None:
        """Ask ``decide`` for the next trial given every event so far, and record it; None when DONE.

        ``decide`` is called again whenever another agent published first, so it must be quick
        and free of side effects (no MLflow calls).

        Args:
            decide: given the fresh state, returns a Proposal or DONE.
            agent_id: the claiming agent, as in its heartbeat file.
        """
        self._agent_path(agent_id)  # reap matches claims to heartbeat files by this id

        def make(state: SweepState, now: float) -> dict[str, Any] | None:
            proposal = decide(state)
            if proposal is DONE:
                return None
            if not isinstance(proposal, Proposal):
                raise TypeError(f"decide must return a Proposal or DONE, but got {proposal!r}")
            event = {"event": "claim", "trial": len(state.trials), "params": dict(proposal.params),
                     "point": proposal.point, "agent": agent_id, "time": now}
            if proposal.retry_of is not None:
                event["retry_of"] = proposal.retry_of
            return event

        state, event = self._commit(make)
        return None if event is None else state.trials[event["trial"]]

    def start(self, index: int, run_id: str) -> None:
        """Record the MLflow child run of trial ``index``.

        Args:
            index: the trial index returned by ``claim``.
            run_id: the child run's id.
        """
        def make(state: SweepState, now: float) -> dict[str, Any]:
            self._check_index(state, index)
            return {"event": "start", "trial": index, "run_id": run_id, "time": now}

        self._commit(make)

    def complete(self, index: int, state: TrialState, metric: float | None, *,
                 stopped_at: int | None = None, history: Sequence[float] | None = None,
                 requeue: str | None = None) -> bool:
        """Record how trial ``index`` ended; False (nothing written) if it had already ended or was reaped.

        Args:
            index: the trial index returned by ``claim``.
            state: FINISHED, FAILED or KILLED.
            metric: the trial's metric value, or None when it logged none.
            stopped_at: the hyperband iteration that stopped the trial, if any.
            history: the trial's metric values in logging order, kept for hyperband's cuts;
                None (the default) leaves it out of the event.
            requeue: why the trial's point is handed out again (``interrupted``), in the same
                event, so no agent sees the trial ended but not requeued (SPEC §4b).
        """
        ended = TrialState(state)
        if not ended.is_terminal:
            raise ValueError(f"state must be terminal, but got {ended.value!r}")

        def make(current: SweepState, now: float) -> dict[str, Any] | None:
            if self._check_index(current, index).state.is_terminal:
                return None  # first terminal event wins; losing to the reaper is tolerated
            event = {"event": "end", "trial": index, "state": ended.value, "metric": metric,
                     "stopped_at": stopped_at, "time": now}
            if history is not None:
                event["history"] = [float(v) for v in history]
            if requeue is not None:
                event["requeue"] = requeue
            return event

        return self._commit(make)[1] is not None

    def record(self, decide: Callable[[SweepState], Mapping[str, Any] | None]) -> SweepState:
        """Publish the lifecycle event ``decide`` returns for the fresh state; return the state after it.

        Args:
            decide: given the fresh state, returns one event (kind ``control``, ``run_cap`` or
                ``requeue``; "time" is added) or None to write nothing. Called again whenever
                another agent published first, so it must be quick and free of side effects.
        """
        def make(state: SweepState, now: float) -> dict[str, Any] | None:
            event = decide(state)
            if event is None:
                return None
            if event.get("event") not in LIFECYCLE_EVENTS:
                raise ValueError(f"record publishes only {sorted(LIFECYCLE_EVENTS)} events, but got {event!r}")
            return {**event, "time": now}

        return self._commit(make)[0]

    def heartbeat(self, agent_id: str, info: Mapping[str, Any]) -> None:
        """Atomically rewrite agents/<agent_id>.json with ``info`` plus the agent id and the time.

        A failed write raises OSError as is: a missed beat is worth retrying, not stopping for.

        Args:
            agent_id: the beating agent.
            info: anything status should show, e.g. {"host": ..., "pid": ...}.
        """
        path = self._agent_path(agent_id)
        record = {**info, "agent": agent_id, "beat": _now()}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        path.parent.mkdir(exist_ok=True)
        tmp.write_text(json.dumps(record, default=_jsonable))
        os.replace(tmp, path)

    def agents(self) -> list[dict[str, Any]]:
        """Every agent's last heartbeat record, ordered by agent id; unreadable files are skipped."""
        records = (self._read_agent(p) for p in sorted((self.directory / "agents").glob("*.json"))
                   if not p.name.startswith("."))
        return [record for record in records if record is not None]

    def reap(self, timeout: float) -> list[Trial]:
        """Mark FAILED (dead) every RUNNING trial whose agent has been silent for ``timeout`` s; return them.

        The first call also refuses a mount that could show heartbeats older than ``timeout``
        allows (``mlflow_sweep.mounts.check_mount``).

        Args:
            timeout: seconds since the agent's last heartbeat (or, with none, the claim).
        """
        if self._checked_mount != timeout:
            check_mount(self.directory, timeout)
            self._checked_mount = timeout
        reaped = []
        for trial, last in self._stale(self.state(), timeout):  # usually none: one read, no write
            def make(state: SweepState, now: float, trial: Trial = trial, last: float = last) -> dict[str, Any] | None:
                if state.trials[trial.index].state.is_terminal:
                    return None  # it ended, or another agent reaped it first
                return {"event": "dead", "trial": trial.index, "last_beat": last, "time": now}

            state, event = self._commit(make)
            if event is not None:
                reaped.append(state.trials[trial.index])
        return reaped

    def export(self, path: str | os.PathLike[str]) -> Path:
        """Write every event, in log order, as one JSON-lines file (a copy that ``replay`` reads whole).

        Args:
            path: the file to write (its directory must exist).
        """
        events = Journal(self.directory, self.timeout).read_new()
        Path(path).write_bytes(b"".join(_encode(event) for _, event in events))
        return Path(path)

    # -- reading and writing -------------------------------------------------------------------

    def _snapshot(self) -> SweepState:
        try:
            return self._fold.snapshot()
        except _BadEvent as exc:
            raise LedgerError(f"{self.path}: {exc}") from None

    def _read_new(self) -> None:
        """Fold in the events published since the last read; a bad one raises with where it is, every time."""
        for where, event in self._journal.read_new():
            try:
                self._fold.apply(event)
            except _BadEvent as exc:
                self._journal.reset()
                self._fold = _Replay()
                raise LedgerError(f"{where}: {exc}") from None

    def _commit(self, make: Callable[[SweepState, float], dict[str, Any] | None]
                ) -> tuple[SweepState, dict[str, Any] | None]:
        """Publish ``make(state, now)`` as the next event, deciding again after every lost race.

        Returns the state with the event folded in, and the event as written (None if ``make``
        returned None: nothing to write). ``now`` is taken once, so an event that does not depend
        on the state (start, end) keeps its bytes, and its fsynced file, from one attempt to the next.
        """
        now = _now()
        with self._mutex:
            try:
                for lost in itertools.count():
                    if lost:  # spread a herd of agents that all lost to the same winner (a job array starting)
                        time.sleep(random.uniform(0, min(0.1, 0.001 * 2 ** lost)))
                    self._read_new()
                    event = make(self._snapshot(), now)
                    if event is None:
                        return self._snapshot(), None
                    data = _encode(event)  # before touching the file: an unencodable event writes nothing
                    if self._journal.publish(data):
                        written = json.loads(data)
                        self._fold.apply(written)
                        return self._snapshot(), written
                    log.debug("%s: another agent published first; deciding again", self.directory)
            finally:
                self._journal.discard()
        raise AssertionError("unreachable")

    @staticmethod
    def _check_index(state: SweepState, index: int) -> Trial:
        if not 0 <= index < len(state.trials):
            raise LedgerError(f"trial {index} is not in the ledger ({len(state.trials)} trials claimed)")
        return state.trials[index]

    # -- agents --------------------------------------------------------------------------------

    def _agent_path(self, agent_id: str) -> Path:
        if not _AGENT_ID.fullmatch(agent_id):
            raise LedgerError(f"agent id must be letters, digits and _.@:+-, but got {agent_id!r}")
        return self.directory / "agents" / f"{agent_id}.json"

    @staticmethod
    def _read_agent(path: Path) -> dict[str, Any] | None:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def _last_beat(self, agent_id: str | None) -> float | None:
        """The agent's last beat; None if it never beat; +inf if its file exists but cannot be read now.

        A heartbeat file caught mid-replace by a caching network client reads short or empty
        (issue 11): that is no evidence of silence, so its trial is judged at the next reap.
        """
        if not agent_id or not _AGENT_ID.fullmatch(agent_id):
            return None
        path = self._agent_path(agent_id)
        record = self._read_agent(path)
        if record is None:
            return math.inf if path.exists() else None
        beat = record.get("beat")
        return float(beat) if isinstance(beat, (int, float)) and math.isfinite(beat) else None

    def _stale(self, state: SweepState, timeout: float) -> list[tuple[Trial, float]]:
        running = state.running()
        beats = {agent: self._last_beat(agent) for agent in {t.agent_id for t in running}}
        now, stale = _now(), []
        for trial in running:
            last = max(beats[trial.agent_id] or 0.0, trial.started or 0.0)
            if now - last > timeout:
                stale.append((trial, last))
        return stale
