"""The ledger's storage: an append-only log of JSON events on a shared filesystem.

A ledger directory holds::

    ledger.jsonl              the log's first events, one JSON object per line. A sweep made by this
                              version has only its header here; a format-v1 ledger (older versions)
                              holds its whole history. Never written after it is created.
    events/00000042.json      event 42 of the log (numbered on from ledger.jsonl's lines), one JSON
                              line; created once with link(), never changed, never deleted
    checkpoints/00001000.jsonl  a copy of events 500..999 (``Journal.checkpoint_events`` of them), one
                              per line: a cold reader opens one file instead of 500. Created once
                              with link() by whoever folded those events one by one;
                              a missing or damaged one is ignored, since the events stay the truth
    events/.tmp-*             a file being written; one left behind by a killed writer is ignored

Publishing event n: write the event to a temporary file, fsync it, ``link()`` it to
``events/<n>`` and fsync the directory. Creating a new name is decided by the file server, also
over NFS or sshfs, so of all writers that try to publish n exactly one succeeds; a writer tries n
only after it has read events 0..n-1, so whoever publishes n saw every event before it. A loser
(EEXIST, or EPERM as sshfs reports a lost race) reads the winner's event and decides again. An
event file appears whole or not at all, so there is no torn event and nothing to repair; a
client's stale cache can only hide the newest events from a reader, and a writer that missed one
loses the race for its number. Whether a failed ``link()`` published anyway (a lost reply,
retried by NFS) is decided by reading the event back and comparing bytes, as mail tools check
the link count of their lock files.

The journal keeps no cursor: ``read(start)`` returns what is there from ``start`` on, or raises
and returns nothing, so a failed read can never make a reader skip an event.

Errors a network filesystem returns in passing (ESTALE, EIO, ...) are retried with backoff; only
one that lasts ``timeout`` seconds becomes a ``LedgerError``.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import random
import secrets
import socket
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence, TypeVar

from mlflow_sweep.errors import LedgerError

LEDGER_NAME = "ledger.jsonl"
EVENTS_DIR = "events"
CHECKPOINTS_DIR = "checkpoints"
TRANSIENT = frozenset({errno.ESTALE, errno.EIO, errno.EAGAIN, errno.EINTR, errno.ETIMEDOUT, errno.EBUSY,
                       errno.ENOTCONN, errno.ECONNRESET, errno.ENOLCK})
NO_LINKS = frozenset({errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK})
_CORRUPT_HINT = ("the file was left as it is; mlflow-sweep never writes such a line, so keep a copy and "
                 "repair or delete that line by hand")
log = logging.getLogger(__name__)
T = TypeVar("T")


class Record(NamedTuple):
    """One event as read: its number in the log, where it was read, its bytes and its decoded value."""

    number: int
    where: str
    data: bytes
    event: Any
    checkpointed: bool = False
    """Read from a checkpoint (so there is no checkpoint to write for it)."""


def event_name(number: int) -> str:
    """The file name of event ``number`` in events/ (zero-padded so that ``ls`` shows log order)."""
    return f"{number:08d}.json"


def checkpoint_name(end: int) -> str:
    """The file name of the checkpoint that ends before event ``end``."""
    return f"{end:08d}.jsonl"


class _Backoff:
    """Jittered exponential sleeps until a deadline; ``wait`` returns False once it has passed."""

    def __init__(self, timeout: float) -> None:
        self.deadline = time.monotonic() + timeout
        self.delay = 0.002

    def wait(self) -> bool:
        if time.monotonic() >= self.deadline:
            return False
        time.sleep(min(self.delay * (0.5 + random.random()), max(0.0, self.deadline - time.monotonic())))
        self.delay = min(self.delay * 2, 0.5)
        return True


def _persistent(what: Path | str, doing: str, exc: OSError, timeout: float) -> LedgerError:
    return LedgerError(f"{what}: could not {doing} for {timeout:g} s ({exc.strerror or exc}); "
                       f"is the shared filesystem reachable from this host?")


def _retrying(what: Path | str, doing: str, timeout: float, action: Callable[[], T]) -> T:
    """``action()``, retried with backoff while it fails with a transient error."""
    backoff = _Backoff(timeout)
    while True:
        try:
            return action()
        except OSError as exc:
            if exc.errno not in TRANSIENT:
                raise
            log.debug("%s: %s failed (%s); retrying", what, doing, exc)
            if not backoff.wait():
                raise _persistent(what, doing, exc, timeout) from exc


def _read_whole(path: str | Path, *, to_end: bool = False) -> bytes | None:
    """The bytes of ``path`` read through a fresh descriptor, or None if it does not exist.

    A short read of a regular file is its end, so a small file (an event) costs one read call;
    ``to_end`` reads on until the file says so (a large file through a network client).
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        chunks = [os.read(fd, 1 << 16)]
        while chunks[-1] and (to_end or len(chunks[-1]) == 1 << 16):
            chunks.append(os.read(fd, 1 << 16))
        return b"".join(chunks)
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist), write ``data`` and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    """Make a new name in ``directory`` survive a crash of this machine (a local disk's concern)."""
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


def discard(path: Path) -> None:
    """Remove a temporary file; one left behind is ignored by readers."""
    try:
        os.unlink(path)
    except OSError as exc:  # a leftover temporary file is ignored by readers
        log.debug("%s: could not remove (%s)", path, exc)


def _temp_name(directory: Path) -> Path:
    host = "".join(c if c.isalnum() or c in "-_." else "_" for c in socket.gethostname())
    return directory / f".tmp-{host}-{os.getpid()}-{secrets.token_hex(4)}"


def decode_line(line: bytes, where: str) -> Any:
    """One JSON event from ``line``; LedgerError naming ``where`` when it is not JSON."""
    try:
        return json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = getattr(exc, "msg", None) or exc
        raise LedgerError(f"{where}: not a JSON line ({reason}); {_CORRUPT_HINT}") from None


class Journal:
    """The event log of one ledger directory: read from an event number on, publish event n, checkpoint."""

    checkpoint_events = 500
    """Events per checkpoint: a cold read of a 20,000-trial sweep (~60,000 events) opens ~120
    checkpoints and at most 499 events, instead of 60,000 files."""

    def __init__(self, directory: Path, timeout: float = 60.0) -> None:
        """Open the log in ``directory``; nothing is read until ``read``.

        Args:
            directory: the ledger directory.
            timeout: seconds a transient filesystem error may last before it becomes a LedgerError.
        """
        self.directory = directory
        self.path = directory / LEDGER_NAME
        self.events = directory / EVENTS_DIR
        self.checkpoints = directory / CHECKPOINTS_DIR
        self.timeout = timeout

    def read(self, start: int) -> list[Record]:
        """The events from number ``start`` on, as far as this client sees them; all of them or an error.

        ``start`` is 0 (a cold read: ledger.jsonl, then checkpoints where there are some, then
        single events) or the number of events a reader has already folded, which is past
        ledger.jsonl (then only events/ is read).

        Args:
            start: the number of the first event wanted.
        """
        if start == 0:
            records = self._read_prefix()
            known = self._listed_checkpoints()
        else:
            records, known = [], frozenset()
        number = start + len(records)
        while True:
            end = (number // self.checkpoint_events + 1) * self.checkpoint_events
            block = self._read_checkpoint(end) if end in known else None
            if block is not None:
                records.extend(block[number - (end - self.checkpoint_events):])
                number = end
                continue
            record = self._read_event(number)
            if record is None:
                return records
            records.append(record)
            number += 1

    def publish(self, number: int, data: bytes) -> bool:
        """Try to publish ``data`` (one JSON line) as event ``number``; False if another writer got it.

        The same as ``prepare``, ``link``, ``sync``, for callers that need no split.

        Args:
            number: the event's number: how many events the writer has read.
            data: the encoded event, ending with a newline.
        """
        temp = self.prepare(data)
        try:
            won = self.link(number, temp, data)
        finally:
            discard(temp)
        if won:
            self.sync()
        return won

    def prepare(self, data: bytes) -> Path:
        """A temporary file in events/ holding ``data``, fsynced, ready for ``link`` (remove it with ``discard``).

        Args:
            data: the encoded event, ending with a newline.
        """
        return self._write_temp(self.events, data)

    def link(self, number: int, temp: Path, data: bytes) -> bool:
        """Publish the prepared ``temp`` (holding ``data``) as event ``number``; False if another writer got it.

        The new name is visible to every reader at once; ``sync`` makes it survive a crash of this
        machine, and can wait until the writer no longer holds the claim lock.

        Args:
            number: the event's number: how many events the writer has read.
            temp: the file ``prepare`` wrote.
            data: its bytes.
        """
        return self._link(temp, self.events / event_name(number), data)

    def sync(self) -> None:
        """Make the events linked so far survive a crash of this machine (fsync of events/)."""
        _fsync_directory(self.events)

    def has_checkpoint(self, end: int) -> bool:
        """Whether the checkpoint ending at event ``end`` exists (as far as this client sees)."""
        return (self.checkpoints / checkpoint_name(end)).exists()

    def write_checkpoint(self, end: int, lines: Sequence[bytes]) -> None:
        """Publish the ``checkpoint_events`` events before event ``end`` (their exact bytes) as one file.

        Best effort: a failure is logged and forgotten, since readers fall back to the events.

        Args:
            end: the number after the last event, a multiple of ``checkpoint_events``.
            lines: the events' bytes, each one JSON line.
        """
        if end % self.checkpoint_events or len(lines) != self.checkpoint_events:
            raise ValueError(f"a checkpoint holds events {end - self.checkpoint_events}..{end - 1}, "
                             f"but got {len(lines)} events ending at {end}")
        try:
            self.checkpoints.mkdir(exist_ok=True)
            temp = self._write_temp(self.checkpoints, b"".join(lines))
            try:
                os.link(temp, self.checkpoints / checkpoint_name(end))
            finally:
                discard(temp)
        except (OSError, LedgerError) as exc:  # another reader was first (EEXIST), or no room: readers go on
            log.debug("%s: checkpoint %d not written (%s)", self.checkpoints, end, exc)

    @classmethod
    def create(cls, directory: Path, header: bytes) -> None:
        """Create ``ledger.jsonl`` holding ``header`` at once, and events/; LedgerError if a ledger exists.

        Args:
            directory: the ledger directory (it must exist).
            header: the encoded header event, ending with a newline.
        """
        path = directory / LEDGER_NAME
        temp = _temp_name(directory)
        try:
            _write_synced(temp, header)
            os.link(temp, path)  # exclusive, and readers see the whole header or nothing
            (directory / EVENTS_DIR).mkdir(exist_ok=True)
        except OSError as exc:
            if isinstance(exc, FileExistsError) or path.exists():  # sshfs reports a lost race as EPERM
                raise LedgerError(f"{path}: a ledger already exists here (one sweep per directory)") from None
            hint = (" (the ledger needs a filesystem with hard links: NFS, Lustre, GPFS, BeeGFS, CephFS, "
                    "sshfs or a local disk)") if exc.errno in NO_LINKS | {errno.EPERM} else ""
            raise LedgerError(f"{path}: could not create the ledger ({exc.strerror or exc}){hint}") from exc
        finally:
            temp.unlink(missing_ok=True)
        _fsync_directory(directory)

    # -- reading -------------------------------------------------------------------------------

    def _read_prefix(self) -> list[Record]:
        """ledger.jsonl's complete lines (a last line without its newline is a v1 writer killed mid-write)."""
        try:
            data = _retrying(self.path, "read the ledger", self.timeout, lambda: _read_whole(self.path, to_end=True))
        except OSError as exc:
            raise LedgerError(f"{self.path}: cannot read the ledger ({exc.strerror or exc})") from exc
        if data is None:
            raise LedgerError(f"{self.path}: no ledger here (was the sweep initialized with "
                              f"'mlflow sweep init'?)")
        lines = [line + b"\n" for line in data[:data.rfind(b"\n") + 1].split(b"\n")[:-1]]
        records = []
        for number, line in enumerate(lines, 1):
            if line.strip():
                where = f"{self.path}:{number}"
                records.append(Record(len(records), where, line, decode_line(line, where)))
        self._check_continuation(len(records))
        return records

    def _check_continuation(self, prefix: int) -> None:
        """Refuse a v1 ledger.jsonl that grew after events/ took over from its end."""
        if prefix > 1 and self._read_event(prefix - 1) is not None:
            raise LedgerError(
                f"{self.path}: an agent of an older mlflow-sweep (ledger format v1) appended to this "
                f"ledger after agents of this version continued it in {self.events}; stop the older "
                f"agents: every agent of a sweep must run the same mlflow-sweep version")

    def _listed_checkpoints(self) -> frozenset[int]:
        """The ends of the checkpoints in checkpoints/ (one directory read; none for an old ledger)."""
        try:
            names = _retrying(self.checkpoints, "list the checkpoints", self.timeout,
                              lambda: os.listdir(self.checkpoints))
        except FileNotFoundError:
            return frozenset()
        except OSError as exc:
            raise LedgerError(f"{self.checkpoints}: cannot list the checkpoints ({exc.strerror or exc})") from exc
        ends = (name[:-len(".jsonl")] for name in names if name.endswith(".jsonl") and not name.startswith("."))
        return frozenset(int(end) for end in ends if end.isdigit())

    def _read_checkpoint(self, end: int) -> list[Record] | None:
        """The events of checkpoint ``end``, or None when it is missing or damaged (then the events are read)."""
        path = f"{self.checkpoints}{os.sep}{checkpoint_name(end)}"
        try:
            data = _retrying(path, "read a checkpoint", self.timeout, lambda: _read_whole(path, to_end=True))
        except OSError as exc:
            raise LedgerError(f"{path}: cannot read the checkpoint ({exc.strerror or exc})") from exc
        lines = [] if data is None else data.split(b"\n")
        if len(lines) != self.checkpoint_events + 1 or lines[-1]:
            log.debug("%s: ignored (%s)", path, "missing" if data is None else "torn")
            return None
        try:  # one decode for the whole block: a cold read decodes thousands of events
            events = json.loads(b"[" + b",".join(lines[:-1]) + b"]")
        except ValueError:
            log.debug("%s: ignored (not JSON lines)", path)
            return None
        first = end - self.checkpoint_events
        return [Record(first + offset, f"{path}:{offset + 1}", line + b"\n", event, True)
                for offset, (line, event) in enumerate(zip(lines, events))]

    def _read_event(self, number: int) -> Record | None:
        """Event ``number`` decoded, or None if it is not published (yet, as far as this client sees)."""
        path = f"{self.events}{os.sep}{event_name(number)}"  # a str: a cold read may open many
        data = self._read_complete(path)
        return None if data is None else Record(number, path, data, decode_line(data, path))

    def _read_complete(self, path: str) -> bytes | None:
        """The bytes of a published event file, waiting out a short read; None if it does not exist."""
        backoff = None
        while True:
            try:
                data = _read_whole(path)
            except OSError as first:
                if first.errno not in TRANSIENT:
                    raise LedgerError(f"{path}: cannot read the ledger event ({first.strerror or first})") from first
                data = _retrying(path, "read an event", self.timeout, lambda: _read_whole(path))
            # A published event is whole; a short read is a client cache catching up.
            if data is None or (data.endswith(b"\n") and data.count(b"\n") == 1):
                return data
            backoff = backoff or _Backoff(min(self.timeout, 5.0))
            if not backoff.wait():
                return data

    # -- writing -------------------------------------------------------------------------------

    def _write_temp(self, directory: Path, data: bytes) -> Path:
        """A new temporary file in ``directory`` holding ``data``, fsynced, ready to be linked."""
        temp = _temp_name(directory)

        def write() -> None:
            temp.unlink(missing_ok=True)  # left by a failed attempt
            try:
                _write_synced(temp, data)
            except FileNotFoundError:  # a v1 ledger's first event of this version
                directory.mkdir(exist_ok=True)
                _write_synced(temp, data)

        try:
            _retrying(temp, "write a ledger file", self.timeout, write)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise LedgerError(f"{temp}: could not write a ledger file ({exc.strerror or exc})") from exc
        return temp

    def _link(self, temp: Path, target: Path, data: bytes) -> bool:
        """Link ``temp`` to ``target``; True if ``target`` now holds ``data``, False if it holds another event."""
        backoff = _Backoff(self.timeout)
        while True:
            try:
                os.link(temp, target)
                return True
            except OSError as exc:
                failure = exc
            existing = self._read_complete(str(target))
            if existing is not None:
                ours = existing == data  # equal: our link did happen (its reply was lost and retried)
                log.debug("%s: link() failed with %s; %s", target, errno.errorcode.get(failure.errno, failure.errno),
                          "the event is ours" if ours else "lost the race")
                return ours
            if failure.errno in NO_LINKS:
                raise LedgerError(f"{target}: cannot publish a ledger event: link() failed ({failure.strerror}); "
                                  f"the ledger needs a filesystem with hard links") from failure
            if failure.errno not in TRANSIENT | {errno.EEXIST, errno.EPERM}:
                raise LedgerError(f"{target}: cannot publish a ledger event "
                                  f"({failure.strerror or failure})") from failure
            # the name is taken but not visible to us yet, or the error was transient: try again
            if not backoff.wait():
                raise _persistent(target, "publish a ledger event", failure, self.timeout) from failure
