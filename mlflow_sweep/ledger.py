"""The sweep ledger: an append-only JSON Lines event log guarded by a lock file (SPEC §4).

A ledger directory holds::

    ledger.jsonl         the event log, one JSON object per line, only ever appended to
    ledger.jsonl.lock    the lock file; hard mode keeps it forever, soft mode creates it per hold
    agents/<id>.json     each agent's last heartbeat, rewritten atomically without the lock

Event format v1 (every event has "event" and "time", Unix seconds from the writer's clock)::

    {"event": "sweep", "v": 1, "time": t, "header": {"config": {...}, "seed": 7, "sweep_id": "..."}}
    {"event": "claim", "trial": 0, "params": {...}, "point": 3, "agent": "node1-4242", "time": t}
    {"event": "start", "trial": 0, "run_id": "0a1b...", "time": t}
    {"event": "end", "trial": 0, "state": "FINISHED", "metric": 0.93, "stopped_at": null, "time": t}
    {"event": "dead", "trial": 0, "last_beat": t0, "time": t}

Lifecycle events (SPEC §4b, issue 10), additive within v1::

    {"event": "control", "state": "paused", "by": "alice@login01", "time": t}
    {"event": "run_cap", "run_cap": 20, "by": "alice@login01", "time": t}
    {"event": "requeue", "trial": 3, "reason": "interrupted", "time": t}

"control" records what the user asked (running, paused, stopped, cancelled; the last one
counts). "run_cap" replaces the config's run_cap (the last one counts). "requeue" hands the
point of an ended trial out again (reason ``interrupted``: its agent got a signal; ``retry``:
``mlflow sweep retry``); the first requeue of a trial wins. A claim that re-issues such a point
carries ``"retry_of": 3``.

An "end" event of a sweep with ``early_terminate`` also carries "history": every value the trial
logged under the metric, in logging order, which hyperband's cuts pool (issue 6); other end
events leave the key out.

Rules: the first line is the only "sweep" header; claims number the trials 0, 1, 2, ... in file
order; the first "end" or "dead" of a trial wins and later ones are ignored (losing that race is
normal); unknown event kinds are skipped (room for additions within v1); a header with a larger
"v" is refused. Metrics may be NaN or Infinity, spelled as Python's json module does.

Writes happen only under the lock: refresh, truncate a torn tail, then one ``os.write`` of a whole
line on an ``O_APPEND`` descriptor opened after locking (so NFS clients see the current size),
then ``os.fsync``. Reads take no lock, parse only bytes added since the last read, and ignore a
last line without its newline (a writer killed mid-write). A bad complete line is corruption:
readers raise ``LedgerError`` with the line number and never rewrite the file.

Lock choice (issue 4): which lock guards the ledger, and why, is in ``mlflow_sweep.locking``.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

from mlflow_sweep.errors import LedgerError
from mlflow_sweep.locking import (
    LOCK_MODE_ENV, SOFT_LOCK_STALE_AFTER, acquire, check_marker, check_still_held, make_lock, resolve_lock_mode,
)
from mlflow_sweep.trials import DONE, Controls, Proposal, SweepControl, Trial, TrialState

if TYPE_CHECKING:
    from mlflow_sweep.trials import _Done

FORMAT_VERSION = 1
LEDGER_NAME = "ledger.jsonl"
_CORRUPT_HINT = "the file was left as it is; repair or delete that line by hand (keep a copy) and run again"
_AGENT_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@:+-]*")
_now: Callable[[], float] = time.time  # event clock; the asset generator swaps in a fixed one
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepState:
    """What the ledger says about a sweep: its header payload and every trial, in index order."""

    header: Mapping[str, Any]
    trials: tuple[Trial, ...] = ()
    version: int = FORMAT_VERSION
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
    """An event that does not fit the ledger so far; the reader adds the file and line."""


def _index(event: Mapping[str, Any]) -> int:
    index = event["trial"]
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise _BadEvent(f"'trial' must be a non-negative integer, but got {index!r}")
    return index


class _Replay:
    """A left fold over events; ``apply`` one at a time, ``snapshot`` whenever needed."""

    def __init__(self) -> None:
        self.header: dict[str, Any] | None = None
        self.version = FORMAT_VERSION
        self.trials: list[Trial] = []
        self.controls = Controls()
        self._snapshot: SweepState | None = None

    def apply(self, event: Mapping[str, Any]) -> None:
        """Fold one event in; raises ``_BadEvent`` when it cannot be applied."""
        if not isinstance(event, Mapping):
            raise _BadEvent(f"an event must be a JSON object, but got {event!r}")
        kind = event.get("event")
        if self.header is None and kind != "sweep":
            raise _BadEvent(f"the first event must be the sweep header, but got {kind!r}")
        handler = _HANDLERS.get(kind)
        if handler is None:
            return  # an event kind added later within v1: skip it (see module docstring)
        try:
            handler(self, event)
        except _BadEvent:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise _BadEvent(f"bad {kind!r} event ({type(exc).__name__}: {exc})") from None
        self._snapshot = None

    def snapshot(self) -> SweepState:
        """The state so far; the same object until the next event."""
        if self.header is None:
            raise _BadEvent("the ledger has no sweep header")
        if self._snapshot is None:
            self._snapshot = SweepState(self.header, tuple(self.trials), self.version, self.controls)
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
        if index != len(self.trials):
            raise _BadEvent(f"claims trial {index}, but the next index is {len(self.trials)} (two writers "
                            f"without a common lock? every agent must use the same {LOCK_MODE_ENV})")
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
        metric, history = event.get("metric"), event.get("history")
        self.trials[trial.index] = replace(
            trial, state=state, metric=None if metric is None else float(metric),
            ended=float(event["time"]), stopped_at=event.get("stopped_at"),
            history=None if history is None else tuple(float(v) for v in history))

    def _on_dead(self, event: Mapping[str, Any]) -> None:
        trial = self._trial(event)
        if not trial.state.is_terminal:
            self.trials[trial.index] = replace(trial, state=TrialState.FAILED, dead=True,
                                               ended=float(event["time"]))


    def _on_control(self, event: Mapping[str, Any]) -> None:
        self.controls = replace(self.controls, state=SweepControl(event["state"]))

    def _on_run_cap(self, event: Mapping[str, Any]) -> None:
        run_cap = event["run_cap"]
        if isinstance(run_cap, bool) or not isinstance(run_cap, int) or run_cap < 1:
            raise _BadEvent(f"'run_cap' must be an integer of at least 1, but got {run_cap!r}")
        self.controls = replace(self.controls, run_cap=run_cap)

    def _on_requeue(self, event: Mapping[str, Any]) -> None:
        trial, reason = self._trial(event), str(event["reason"])
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
        events: decoded ledger events in file order.
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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_file(path: Path, data: bytes, *, exclusive: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC), 0o644)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the data itself was synced
    finally:
        os.close(fd)


class Ledger:
    """One sweep's ledger directory: lock-free reads, locked appends, heartbeats, reaping."""

    def __init__(self, directory: str | os.PathLike[str], *, lock_timeout: float = 60.0,
                 lock_mode: str | None = None, stale_lock_after: float = SOFT_LOCK_STALE_AFTER) -> None:
        """Open the ledger in ``directory`` (the file need not exist yet; see ``create``).

        Args:
            directory: the ledger directory, shared by every agent of the sweep.
            lock_timeout: seconds to wait for the lock before raising LedgerError.
            lock_mode: ``hard`` (flock), ``soft`` (exclusive-create marker) or ``auto``;
                None reads $MLFLOW_SWEEP_LOCK_MODE, defaulting to ``auto``.
            stale_lock_after: soft mode only: age in seconds after which another host's
                marker is broken.
        """
        self.directory = Path(directory).absolute()
        self.path = self.directory / LEDGER_NAME
        self.lock_path = self.directory / f"{LEDGER_NAME}.lock"
        self.lock_mode = resolve_lock_mode(self.directory, lock_mode)
        self.lock_timeout = lock_timeout
        self._lock = make_lock(self.lock_path, self.lock_mode, stale_lock_after)
        self._mutex = threading.RLock()  # the file lock is shared by this object's threads
        self._reset()

    def __repr__(self) -> str:
        return f"Ledger({str(self.directory)!r}, lock_mode={self.lock_mode!r})"

    @classmethod
    def create(cls, directory: str | os.PathLike[str], header: Mapping[str, Any], *,
               lock_timeout: float = 60.0, lock_mode: str | None = None) -> Ledger:
        """Start a new ledger whose first line is the sweep header; LedgerError if one exists.

        Args:
            directory: the ledger directory (created if missing).
            header: the header payload, e.g. {"config": ..., "seed": ..., "sweep_id": ...}.
            lock_timeout: as for ``Ledger``.
            lock_mode: as for ``Ledger``.
        """
        Path(directory).mkdir(parents=True, exist_ok=True)
        ledger = cls(directory, lock_timeout=lock_timeout, lock_mode=lock_mode)
        line = _encode({"event": "sweep", "v": FORMAT_VERSION, "time": _now(), "header": dict(header)})
        ledger._publish(line)
        return ledger

    def state(self) -> SweepState:
        """The sweep's current state, reading (without the lock) only what was appended since last time."""
        with self._mutex:
            self._read_new()
            return self._snapshot()

    def claim(self, decide: Callable[[SweepState], Proposal | _Done], agent_id: str) -> Trial | None:
        """Under the lock: refresh, ask ``decide`` for the next trial, record it; None when DONE.

        Args:
            decide: given the fresh state, returns a Proposal or DONE; runs under the lock,
                so it must be quick (no MLflow calls).
            agent_id: the claiming agent, as in its heartbeat file.
        """
        self._agent_path(agent_id)  # reap matches claims to heartbeat files by this id
        with self._transaction() as state:
            proposal = decide(state)
            if proposal is DONE:
                return None
            if not isinstance(proposal, Proposal):
                raise TypeError(f"decide must return a Proposal or DONE, but got {proposal!r}")
            index = len(state.trials)
            event = {"event": "claim", "trial": index, "params": dict(proposal.params),
                     "point": proposal.point, "agent": agent_id, "time": _now()}
            if proposal.retry_of is not None:
                event["retry_of"] = proposal.retry_of
            state = self._append(event)
            return state.trials[index]

    def start(self, index: int, run_id: str) -> None:
        """Record the MLflow child run of trial ``index``.

        Args:
            index: the trial index returned by ``claim``.
            run_id: the child run's id.
        """
        with self._transaction() as state:
            self._check_index(state, index)
            self._append({"event": "start", "trial": index, "run_id": run_id, "time": _now()})

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
            requeue: a reason to hand the trial's point out again (``interrupted``), written in
                the same lock hold as the end, so no agent sees one without the other.
        """
        state = TrialState(state)
        if not state.is_terminal:
            raise ValueError(f"state must be terminal, but got {state.value!r}")
        with self._transaction() as current:
            if self._check_index(current, index).state.is_terminal:
                return False  # first terminal event wins; losing to the reaper is tolerated
            event = {"event": "end", "trial": index, "state": state.value, "metric": metric,
                     "stopped_at": stopped_at, "time": _now()}
            if history is not None:
                event["history"] = [float(v) for v in history]
            self._append(event)
            if requeue is not None:
                self._append({"event": "requeue", "trial": index, "reason": requeue, "time": _now()})
            return True

    def record(self, decide: Callable[[SweepState], Sequence[Mapping[str, Any]]]) -> SweepState:
        """Under the lock: refresh, ask ``decide`` for lifecycle events, append them; return the new state.

        Args:
            decide: given the fresh state, returns the events to append (kinds ``control``,
                ``run_cap``, ``requeue``; "time" is added); runs under the lock, so it must be
                quick. An empty list writes nothing.
        """
        with self._transaction() as state:
            for event in decide(state):
                if event.get("event") not in LIFECYCLE_EVENTS:
                    raise ValueError(f"record appends only {sorted(LIFECYCLE_EVENTS)} events, but got {event!r}")
                state = self._append({**event, "time": _now()})
            return state

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

        Args:
            timeout: seconds since the agent's last heartbeat (or, with none, the claim).
        """
        if not self._stale(self.state(), timeout):
            return []  # the common case costs one incremental read and no lock
        with self._transaction() as state:
            stale = self._stale(state, timeout)
            for trial, last in stale:
                state = self._append({"event": "dead", "trial": trial.index, "last_beat": last,
                                      "time": _now()})
            return [state.trials[trial.index] for trial, _ in stale]

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the ledger's lock (for tools such as scripts/verify_lock.py; the methods lock themselves)."""
        with self._mutex:
            acquire(self._lock, self.lock_mode, self.lock_timeout)
            try:
                check_marker(self._lock, self.lock_mode)
                yield
            finally:
                self._lock.release()

    # -- reading -------------------------------------------------------------------------------

    def _reset(self) -> None:
        self._fold, self._offset, self._line, self._tail = _Replay(), 0, 0, 0
        self._identity: tuple[int, int] | None = None

    def _snapshot(self) -> SweepState:
        try:
            return self._fold.snapshot()
        except _BadEvent as exc:
            raise LedgerError(f"{self.path}: {exc}") from None

    def _read_new(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise LedgerError(f"{self.path}: no ledger here (was the sweep initialized with "
                              f"'mlflow sweep init'?)") from None
        except OSError as exc:
            raise LedgerError(f"{self.path}: cannot read the ledger ({exc.strerror or exc})") from exc
        try:
            data = self._read_from(fd)
        finally:
            os.close(fd)
        self._parse(data)

    def _read_from(self, fd: int) -> bytes:
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != self._identity or info.st_size < self._offset:
            self._reset()  # a replaced or shrunken file: start over rather than misread
            self._identity = (info.st_dev, info.st_ino)
        chunks, offset = [], self._offset
        while chunk := os.pread(fd, 1 << 20, offset):
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)

    def _parse(self, data: bytes) -> None:
        end = data.rfind(b"\n") + 1
        self._tail = len(data) - end  # a line without its newline: a writer died mid-write
        position = 0
        while position < end:
            stop = data.index(b"\n", position) + 1
            if data[position:stop].strip():
                self._apply(data[position:stop], self._line + 1)
            self._line, self._offset = self._line + 1, self._offset + stop - position
            position = stop

    def _apply(self, line: bytes, number: int) -> None:
        """Fold one line in; a bad one raises with its number and is not consumed, so it raises again."""
        try:
            self._fold.apply(json.loads(line))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            reason = f"not a JSON line ({getattr(exc, 'msg', None) or exc})"
        except _BadEvent as exc:
            reason = str(exc)
        else:
            return
        raise LedgerError(f"{self.path}:{number}: {reason}; {_CORRUPT_HINT}")

    # -- writing -------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[SweepState]:
        if self._identity is None:
            self._read_new()  # report a missing ledger before locking creates its directory
        with self.locked():
            self._read_new()
            yield self._snapshot()

    def _append(self, event: Mapping[str, Any]) -> SweepState:
        line = _encode(event)  # before touching the file: an unencodable event writes nothing
        if self._tail:
            self._repair_tail()
        check_still_held(self._lock, self.lock_mode)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                _write_all(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise LedgerError(f"{self.path}: could not append to the ledger ({exc.strerror or exc})") from exc
        self._read_new()
        return self._snapshot()

    def _repair_tail(self) -> None:
        log.warning("%s: dropping %d bytes of a line left unfinished by a killed writer", self.path, self._tail)
        try:
            os.truncate(self.path, self._offset)
        except OSError as exc:
            raise LedgerError(f"{self.path}: could not drop an unfinished last line "
                              f"({exc.strerror or exc})") from exc
        self._tail = 0

    def _publish(self, line: bytes) -> None:
        """Create the file holding ``line`` at once, without the lock: no agent can use it before it exists."""
        tmp = self.path.with_name(f".{LEDGER_NAME}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            _write_file(tmp, line, exclusive=False)
            try:
                os.link(tmp, self.path)  # atomic and exclusive, also on NFS: readers see all or nothing
            except FileExistsError:
                raise
            except OSError:  # no hard links here (some SMB/FUSE mounts): exclusive create instead
                _write_file(self.path, line, exclusive=True)
        except FileExistsError:
            raise LedgerError(f"{self.path}: a ledger already exists here (one sweep per directory)") from None
        except OSError as exc:
            raise LedgerError(f"{self.path}: could not create the ledger ({exc.strerror or exc})") from exc
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_directory(self.directory)

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
        if not agent_id or not _AGENT_ID.fullmatch(agent_id):
            return None
        beat = (self._read_agent(self._agent_path(agent_id)) or {}).get("beat")
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
