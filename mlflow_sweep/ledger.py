"""The sweep ledger: one sweep's shared directory, where agents agree on every trial.

The events and their pure replay are in ``mlflow_sweep.replay``; their files in
``mlflow_sweep.journal``. This module is the only one that writes them: ``Ledger.commit`` reads
every event published so far, asks the caller what to do about that state, and publishes the
event it returns as the next one; when another agent published first it reads that event and asks
again. The replayed state is the only read cursor: it knows how many events it folded in, each read
starts there, and a read that fails folds in nothing, so no event is ever skipped.

The claim lock. Read → decide → publish runs under a file lock (``ledger.lock``, beside the log,
never deleted) so that a crowd of agents takes turns instead of racing for every event and
deciding again after each lost race (with ``bayes`` each decision is a model fit). The lock is an
optimization only: exactness comes from the exclusive publication of each event number. A lock
that cannot be taken (ENOLCK, ENOSYS, EPERM...), that is granted without excluding (flock on
sshfs across hosts), or that is held longer than ``lock_timeout`` (a stuck process) costs speed:
the agent goes on without it for a while, and the file server still decides every race.

Heartbeats live in ``agents/<agent id>.json`` (rewritten atomically, outside the log), so the log
grows with trials, not with time.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import random
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generic, Iterator, Mapping, Sequence, TypeVar

from mlflow_sweep.errors import LedgerError
from mlflow_sweep.journal import LEDGER_NAME, Journal, Record, discard, event_name
from mlflow_sweep.mounts import check_mount
from mlflow_sweep.replay import (FORMAT_VERSION, LIFECYCLE_EVENTS, BadEvent, Conflict, Fold, SweepState,
                                 replay)
from mlflow_sweep.trials import Proposal, Trial, TrialState

__all__ = ["Committed", "Conflict", "Decision", "FORMAT_VERSION", "Ledger", "SweepState", "replay"]

LOCK_NAME = "ledger.lock"
_AGENT_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@:+-]*")
log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Decision(Generic[T]):
    """What a ``commit`` callback decided for a state: a value for the caller, and the event to publish (or None)."""

    value: T
    event: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Committed(Generic[T]):
    """The outcome of a commit: the decision's value, the state after it, and the event as published (or None)."""

    value: T
    state: SweepState
    event: Mapping[str, Any] | None = None

    @property
    def trial(self) -> Trial | None:
        """The trial the published event is about (a claim, start, end or dead), as it stands now."""
        if self.event is None or "trial" not in self.event:
            return None
        return self.state.trials[self.event["trial"]]


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars from samplers
        return value.item()
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON serializable")


def _encode(event: Mapping[str, Any]) -> bytes:
    return (json.dumps(event, separators=(", ", ": "), default=_jsonable) + "\n").encode()


class _ClaimLock:
    """The file lock around read → decide → publish; when it cannot be had, the agent goes on without it."""

    RETRY_AFTER = 300.0
    """Seconds an agent goes without the lock after it failed or timed out, before trying it again."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path, self.timeout = path, timeout
        self._lock: Any = None
        self._skip_until = 0.0

    @contextlib.contextmanager
    def held(self, progress: Callable[[], int]) -> Iterator[bool]:
        """Hold the lock for the block when it can be had; yields whether it is held.

        Args:
            progress: how many events the ledger holds now. While it grows, the lock is busy,
                not stuck, and the wait goes on: only ``timeout`` seconds without a new event
                give up on the lock.
        """
        lock = self._acquire(progress)
        try:
            yield lock is not None
        finally:
            if lock is not None:
                try:
                    lock.release()
                except OSError as exc:  # the kernel drops a flock with its descriptor anyway
                    log.debug("%s: release failed (%s)", self.path, exc)

    def _acquire(self, progress: Callable[[], int]) -> Any:
        if time.monotonic() < self._skip_until or not self.path.parent.is_dir():  # filelock would create it
            return None
        import filelock

        try:
            self._lock = self._lock or _file_lock(self.path)
            first = seen = progress()
            deadline = time.monotonic() + self.timeout
            for tries in itertools.count():
                poll = min(lock_poll(tries, seen - first), self.timeout / 4)
                slice_ = min(max(4 * poll, 0.01), 1.0, self.timeout / 4, max(0.0, deadline - time.monotonic()))
                try:
                    self._lock.acquire(timeout=slice_, poll_interval=poll)
                    return self._lock
                except filelock.Timeout:
                    now = progress()  # a crowd taking turns publishes; a stuck holder does not
                    if now != seen:
                        seen, deadline = now, time.monotonic() + self.timeout
                    elif time.monotonic() >= deadline:
                        break
            why = f"held by another process for {self.timeout:g} s while nothing was published"
        except (OSError, NotImplementedError) as exc:  # ENOLCK, ENOSYS, EPERM, a read-only directory...
            why = f"cannot be taken here ({exc})"
        log.info("%s: the claim lock %s; going on without it for %g s (claims stay exact, only slower)",
                 self.path, why, self.RETRY_AFTER)
        self._skip_until = time.monotonic() + self.RETRY_AFTER
        return None


def lock_poll(tries: int, published: int) -> float:
    """Seconds between a waiter's looks for the claim lock, after ``tries`` slices of waiting while
    others published ``published`` events.

    Looks grow rarer: a crowd polling every few milliseconds takes the CPU its holder needs (64
    agents on 2 cores claimed 16 trials a second polling every 5 ms, 44 at 100 ms), and over a
    network filesystem every look opens the lock file, one round trip. The cap grows with the
    queue, as the events published during the wait measure it: 0.1 s behind a few waiters or one
    slow holder (a GP fit), up to 1 s in a queue of a hundred, whose many waiters still find the
    lock soon after it is free.
    """
    return min(0.002 * 2 ** min(tries, 10), max(0.1, min(1.0, 0.01 * published)))


def _file_lock(path: Path) -> Any:
    """A flock-based ``filelock.FileLock`` that never falls back to a lock file a dead holder would leave."""
    import filelock

    try:  # filelock 4 would otherwise switch to a soft lock where flock is missing, and delete the file
        return filelock.FileLock(path, preserve_lock_file=True)
    except TypeError:  # filelock 3: flock only, and the file is kept
        return filelock.FileLock(path)


class Ledger:
    """One sweep's ledger directory: the replayed state, commits under the claim lock, heartbeats, reaping."""

    def __init__(self, directory: str | os.PathLike[str], *, timeout: float = 60.0, lock: bool = True,
                 lock_timeout: float = 30.0, clock: Callable[[], float] = time.time) -> None:
        """Open the ledger in ``directory`` (nothing is read yet; see ``create`` for a new one).

        Args:
            directory: the ledger directory, shared by every agent of the sweep.
            timeout: seconds a transient filesystem error (ESTALE, EIO, ...) may last before it
                becomes a LedgerError.
            lock: take the claim lock around each commit (False: race for every event, for comparison).
            lock_timeout: seconds to wait for the claim lock before going on without it.
            clock: the time written into events and heartbeats and used to judge silence (Unix seconds).
        """
        self.directory = Path(directory).absolute()
        self.path = self.directory / LEDGER_NAME
        self.timeout = timeout
        self.clock = clock
        self.races_lost = 0
        """Events this object tried to publish after another agent had taken their number."""
        self._journal = Journal(self.directory, timeout)
        self._lock = _ClaimLock(self.directory / LOCK_NAME, lock_timeout) if lock else None
        self._mutex = threading.RLock()  # one fold, shared by this object's threads
        self._fold = Fold()
        self._tail: list[bytes] = []  # the events since the last checkpoint boundary, for the next checkpoint
        self._checked_mount: float | None = None

    def __repr__(self) -> str:
        return f"Ledger({str(self.directory)!r})"

    @classmethod
    def create(cls, directory: str | os.PathLike[str], header: Mapping[str, Any], **options: Any) -> Ledger:
        """Start a new ledger whose first event is the sweep header; LedgerError if one exists.

        Args:
            directory: the ledger directory (created if missing).
            header: the header payload, e.g. {"config": ..., "seed": ..., "sweep_id": ...}.
            options: as for ``Ledger``.
        """
        Path(directory).mkdir(parents=True, exist_ok=True)
        ledger = cls(directory, **options)
        Journal.create(ledger.directory, _encode({"event": "sweep", "v": FORMAT_VERSION, "time": ledger.clock(),
                                                   "header": dict(header)}))
        return ledger

    def state(self) -> SweepState:
        """The sweep's current state, reading only the events published since last time."""
        with self._mutex:
            self._catch_up()
            return self._snapshot()

    def commit(self, decide: Callable[[SweepState], Decision[T]]) -> Committed[T]:
        """Publish the lifecycle event ``decide`` chooses for the freshest state; return its value and the new state.

        Args:
            decide: given the state, returns a Decision whose event (kind ``control``, ``run_cap``,
                ``requeue``, ``enqueue`` or ``config``; "time" is added) is published, or None to write nothing. Called
                again whenever another agent published first, so it must be quick and free of
                side effects: what it found out goes in the Decision's value.
        """
        def make(state: SweepState, now: float) -> tuple[T, dict[str, Any] | None]:
            decision = decide(state)
            if decision.event is None:
                return decision.value, None
            if decision.event.get("event") not in LIFECYCLE_EVENTS:
                raise ValueError(f"commit publishes only {sorted(LIFECYCLE_EVENTS)} events, "
                                 f"but got {decision.event!r}")
            return decision.value, {**decision.event, "time": now}

        return self._commit(make)

    def claim(self, decide: Callable[[SweepState], T], agent_id: str) -> Committed[T]:
        """Ask ``decide`` about the freshest state and claim the trial when it returns a Proposal.

        The result's ``value`` is what ``decide`` returned for the state the claim was decided on,
        and ``trial`` the claimed trial (None when ``decide`` returned anything but a Proposal).
        ``decide`` is called again whenever another agent published first, so it must be quick and
        free of side effects (no MLflow calls).

        Args:
            decide: given the state, returns a Proposal to claim, or anything else to claim nothing.
            agent_id: the claiming agent, as in its heartbeat file.
        """
        self._agent_path(agent_id)  # reap matches claims to heartbeat files by this id

        def make(state: SweepState, now: float) -> tuple[T, dict[str, Any] | None]:
            proposal = decide(state)
            if not isinstance(proposal, Proposal):
                return proposal, None
            event = {"event": "claim", "trial": len(state.trials), "params": dict(proposal.params),
                     "point": proposal.point, "agent": agent_id, "time": now}
            if proposal.retry_of is not None:
                event["retry_of"] = proposal.retry_of
            if proposal.enqueued is not None:
                event["enqueued"] = proposal.enqueued
            if proposal.version != 1:
                event["config_version"] = proposal.version
            return proposal, event

        return self._commit(make)

    def start(self, index: int, run_id: str) -> None:
        """Record the MLflow child run of trial ``index``.

        Args:
            index: the trial index returned by ``claim``.
            run_id: the child run's id.
        """
        event = {"event": "start", "trial": index, "run_id": run_id, "time": self.clock()}
        self._append(event, lambda state: bool(self._check_index(state, index)))

    def complete(self, index: int, state: TrialState, metric: float | None, *,
                 stopped_at: int | None = None, history: Sequence[float] | None = None,
                 requeue: str | None = None, metrics: Mapping[str, float] | None = None) -> bool:
        """Record how trial ``index`` ended; False (nothing written) if it had already ended or was reaped.

        Args:
            index: the trial index returned by ``claim``.
            state: FINISHED, FAILED or KILLED.
            metric: the trial's metric value, or None when it logged none.
            stopped_at: the hyperband iteration that stopped the trial, if any.
            history: the trial's metric values in logging order, kept for hyperband's cuts;
                None (the default) leaves it out of the event.
            requeue: why the trial's point is handed out again (``interrupted``), in the same
                event, so no agent sees the trial ended but not requeued.
            metrics: each objective's counted value, for a sweep with several (``metrics:``);
                None (the default) leaves it out of the event.
        """
        ended = TrialState(state)
        if not ended.is_terminal:
            raise ValueError(f"state must be terminal, but got {ended.value!r}")

        event = {"event": "end", "trial": index, "state": ended.value, "metric": metric,
                 "stopped_at": stopped_at, "time": self.clock()}
        if history is not None:
            event["history"] = [float(v) for v in history]
        if requeue is not None:
            event["requeue"] = requeue
        if metrics is not None:
            event["metrics"] = {str(k): float(v) for k, v in metrics.items()}
        # the first terminal event wins; losing to the reaper is tolerated
        return self._append(event, lambda state: not self._check_index(state, index).state.is_terminal)

    def heartbeat(self, agent_id: str, info: Mapping[str, Any]) -> None:
        """Atomically rewrite agents/<agent_id>.json with ``info`` plus the agent id and the time.

        A failed write raises OSError as is: a missed beat is worth retrying, not stopping for.

        Args:
            agent_id: the beating agent.
            info: anything status should show, e.g. {"host": ..., "pid": ...}.
        """
        path = self._agent_path(agent_id)
        record = {**info, "agent": agent_id, "beat": self.clock()}
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

        Only trials claimed more than ``timeout`` s ago can be stale, so a sweep of short trials
        reads no heartbeat file at all. The first call also refuses a mount that could show
        heartbeats older than ``timeout`` allows (``mlflow_sweep.mounts.check_mount``).

        Args:
            timeout: seconds since the agent's last heartbeat (or, with none, the claim).
        """
        if self._checked_mount != timeout:
            check_mount(self.directory, timeout)
            self._checked_mount = timeout
        reaped = []
        for trial, last in self._stale(self.state(), timeout):  # usually none: one read, no write
            event = {"event": "dead", "trial": trial.index, "last_beat": last, "time": self.clock()}
            # unless it ended meanwhile, or another agent reaped it first
            if self._append(event, lambda state, index=trial.index: not state.trials[index].state.is_terminal):
                reaped.append(self.state().trials[trial.index])
        return reaped

    def export(self, path: str | os.PathLike[str]) -> Path:
        """Write every event, in log order, as one JSON-lines file (a copy that ``replay`` reads whole).

        Args:
            path: the file to write (its directory must exist).
        """
        records = Journal(self.directory, self.timeout).read(0)
        Path(path).write_bytes(b"".join(record.data for record in records))
        return Path(path)

    # -- reading and writing -------------------------------------------------------------------

    def _snapshot(self) -> SweepState:
        try:
            return self._fold.snapshot()
        except BadEvent as exc:
            raise LedgerError(f"{self.path}: {exc}") from None

    def _progress(self) -> int:
        """The events published so far, read while waiting for the claim lock (less to read once it is held)."""
        self._catch_up()
        return self._fold.applied

    def _catch_up(self) -> None:
        """Fold in the events published since the last read; a read that fails folds in nothing."""
        self._fold_in(self._journal.read(self._fold.applied))

    def _fold_in(self, records: Sequence[Record]) -> None:
        """Apply ``records`` in order; a bad one starts the fold over, so it is reported at every read."""
        for record in records:
            try:
                self._fold.apply(record.event)
            except BadEvent as exc:
                self._fold, self._tail = Fold(), []
                raise LedgerError(f"{record.where}: {exc}") from None
            self._keep_for_checkpoint(record)

    def _keep_for_checkpoint(self, record: Record) -> None:
        """Collect events read one by one; once a checkpoint's block of them is whole, publish the checkpoint."""
        size = self._journal.checkpoint_events
        offset = record.number % size
        if record.checkpointed or offset != len(self._tail):  # already checkpointed, or joined mid-block
            self._tail = []
            return
        self._tail.append(record.data)
        if len(self._tail) == size:
            end = record.number + 1
            if not self._journal.has_checkpoint(end):
                self._journal.write_checkpoint(end, self._tail)
            self._tail = []

    def _append(self, event: Mapping[str, Any], valid: Callable[[SweepState], bool]) -> bool:
        """Publish ``event``, whose bytes do not depend on the state, if ``valid(state)``; whether it was.

        Its file is written and synced before the claim lock is taken, so the lock is held only
        for the read and the link.
        """
        data = _encode(event)
        temp = self._journal.prepare(data)
        try:
            committed = self._commit(lambda state, now: (None, event if valid(state) else None), (data, temp))
        finally:
            discard(temp)
        return committed.event is not None

    def _commit(self, make: Callable[[SweepState, float], tuple[T, Mapping[str, Any] | None]],
                prepared: tuple[bytes, Path] | None = None) -> Committed[T]:
        """Publish the event ``make(state, now)`` returns as the next one, deciding again after every lost race.

        Read, decide and link happen under the claim lock; the directory is synced after it is
        released (other agents already see the new event). ``prepared`` is an event's bytes and
        the temporary file already holding them.
        """
        now = self.clock()
        with self._mutex:
            with self._lock.held(self._progress) if self._lock else contextlib.nullcontext():
                committed = self._decide_and_link(make, now, prepared)
            if committed.event is not None:
                self._journal.sync()
            return committed

    def _decide_and_link(self, make: Callable[[SweepState, float], tuple[T, Mapping[str, Any] | None]], now: float,
                         prepared: tuple[bytes, Path] | None) -> Committed[T]:
        for lost in itertools.count(1):
            self._catch_up()
            state = self._snapshot()
            value, event = make(state, now)
            if event is None:
                return Committed(value, state)
            data = _encode(event)  # before touching the files: an unencodable event writes nothing
            temp = prepared[1] if prepared and prepared[0] == data else self._journal.prepare(data)
            number = self._fold.applied
            try:
                won = self._journal.link(number, temp, data)
            finally:
                if not prepared or temp != prepared[1]:
                    discard(temp)
            if won:
                written = json.loads(data)
                self._fold_in([Record(number, str(self._journal.events / event_name(number)), data, written)])
                return Committed(value, self._snapshot(), written)
            self.races_lost += 1
            log.debug("%s: another agent published event %d first; deciding again", self.directory, number)
            # spread a herd of agents that all lost to the same winner (a job array starting)
            time.sleep(random.uniform(0, min(0.1, 0.001 * 2 ** min(lost, 10))))
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

        A heartbeat file caught mid-replace by a caching network client reads short or empty:
        that is no evidence of silence, so its trial is judged at the next reap.
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
        now = self.clock()
        old = [t for t in state.running() if now - (t.started or 0.0) > timeout]  # a younger one cannot be stale
        beats = {agent: self._last_beat(agent) for agent in {t.agent_id for t in old}}
        stale = []
        for trial in old:
            last = max(beats[trial.agent_id] or 0.0, trial.started or 0.0)
            if now - last > timeout:
                stale.append((trial, last))
        return stale
