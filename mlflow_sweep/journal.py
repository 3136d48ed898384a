"""The ledger's storage: an append-only log of JSON events on a shared filesystem, with no lock and no clock.

A ledger directory holds::

    ledger.jsonl            the log's first events, one JSON object per line. A sweep made by this
                            version has only its header here; a format-v1 ledger (older versions)
                            holds its whole history. Never written after it is created.
    events/00000042.json    event 42 of the log (numbered on from ledger.jsonl's lines), one JSON
                            line; created once with link(), never changed, never deleted
    events/.tmp-*           an event being written; one left behind by a killed writer is ignored

Publishing event n (issue 11): write the event to a temporary file, fsync it, then ``link()`` it to
``events/<n>``. Creating a new name is decided by the file server, also over NFS or sshfs, so of
all writers that try to publish n exactly one succeeds, and a writer tries n only after it has read
events 0..n-1: whoever publishes n saw every event before it. A loser (EEXIST, or EPERM as sshfs
reports a lost race) reads the winner's event and decides again. An event file appears whole or
not at all, so there is no torn event and nothing to repair; a client's stale cache can only hide
the newest events from a reader, and a writer that missed one loses the race for its number.
Whether a failed ``link()`` published anyway (a lost reply, retried by NFS) is decided by reading
the event back and comparing bytes, as mail tools check the link count of their lock files.

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
from typing import Any, Callable, TypeVar

from mlflow_sweep.errors import LedgerError

LEDGER_NAME = "ledger.jsonl"
EVENTS_DIR = "events"
TRANSIENT = frozenset({errno.ESTALE, errno.EIO, errno.EAGAIN, errno.EINTR, errno.ETIMEDOUT, errno.EBUSY,
                       errno.ENOTCONN, errno.ECONNRESET, errno.ENOLCK})
NO_LINKS = frozenset({errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK})
_CORRUPT_HINT = ("the file was left as it is; mlflow-sweep never writes such a line, so keep a copy and "
                 "repair or delete that line by hand")
log = logging.getLogger(__name__)
T = TypeVar("T")


def event_name(number: int) -> str:
    """The file name of event ``number`` in events/ (zero-padded so that ``ls`` shows log order)."""
    return f"{number:08d}.json"


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


def _persistent(what: Path, doing: str, exc: OSError, timeout: float) -> LedgerError:
    return LedgerError(f"{what}: could not {doing} for {timeout:g} s ({exc.strerror or exc}); "
                       f"is the shared filesystem reachable from this host?")


def _retrying(what: Path, doing: str, timeout: float, action: Callable[[], T]) -> T:
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


def _read_whole(path: str | Path) -> bytes | None:
    """The bytes of ``path`` read through a fresh descriptor, or None if it does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        chunks = [os.read(fd, 1 << 16)]
        while len(chunks[-1]) == 1 << 16:  # a short read of a regular file is its end: one call per event
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


def _remove(path: Path) -> None:
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
    """The event log of one ledger directory: read what is new, publish the next event."""

    def __init__(self, directory: Path, timeout: float = 60.0) -> None:
        """Open the log in ``directory``; nothing is read until ``read_new``.

        Args:
            directory: the ledger directory.
            timeout: seconds a transient filesystem error may last before it becomes a LedgerError.
        """
        self.directory = directory
        self.path = directory / LEDGER_NAME
        self.events = directory / EVENTS_DIR
        self.timeout = timeout
        self.reset()

    def reset(self) -> None:
        """Forget what was read: the next ``read_new`` starts from the first event."""
        self.next: int | None = None  # the number of the next event to read (None: prefix not read yet)
        self._spare: tuple[bytes, Path] | None = None  # a lost event's fsynced file, for a retry of the same bytes

    def read_new(self) -> list[tuple[str, Any]]:
        """The events published since the last call, decoded, each with where it was read."""
        found = [] if self.next is not None else self._read_prefix()
        assert self.next is not None
        while (data := self._read_event(self.next)) is not None:
            found.append((self._event_path(self.next), data))
            self.next += 1
        return found

    def publish(self, data: bytes) -> bool:
        """Try to publish ``data`` (one JSON line) as the next event; False if another writer got that number.

        Args:
            data: the encoded event, ending with a newline.
        """
        assert self.next is not None, "read_new() first: a writer must have seen every earlier event"
        target = self.events / event_name(self.next)
        if self._spare is not None and self._spare[0] == data:
            temp, self._spare = self._spare[1], None  # the same event again: its file is written and synced
        else:
            self.discard()
            temp = self._write_temp(data)
        try:
            won = self._link(temp, target, data)
        except BaseException:
            _remove(temp)
            raise
        if won:
            self.next += 1
            _remove(temp)
        else:
            self._spare = (data, temp)
        return won

    def discard(self) -> None:
        """Remove the file kept from a lost attempt (the caller will not publish the same event again)."""
        if self._spare is not None:
            _remove(self._spare[1])
            self._spare = None

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

    def _read_prefix(self) -> list[tuple[str, Any]]:
        """ledger.jsonl's complete lines (a last line without its newline is a v1 writer killed mid-write)."""
        try:
            data = _retrying(self.path, "read the ledger", self.timeout, lambda: _read_whole(self.path))
        except OSError as exc:
            raise LedgerError(f"{self.path}: cannot read the ledger ({exc.strerror or exc})") from exc
        if data is None:
            raise LedgerError(f"{self.path}: no ledger here (was the sweep initialized with "
                              f"'mlflow sweep init'?)")
        lines = data[:data.rfind(b"\n") + 1].split(b"\n")[:-1]
        found = [(f"{self.path}:{number}", decode_line(line, f"{self.path}:{number}"))
                 for number, line in enumerate(lines, 1) if line.strip()]
        self.next = len(found)
        self._check_continuation()
        return found

    def _check_continuation(self) -> None:
        """Refuse a v1 ledger.jsonl that grew after events/ took over from its end."""
        if self.next is not None and self.next > 1 and self._read_event(self.next - 1) is not None:
            raise LedgerError(
                f"{self.path}: an agent of an older mlflow-sweep (ledger format v1) appended to this "
                f"ledger after agents of this version continued it in {self.events}; stop the older "
                f"agents: every agent of a sweep must run the same mlflow-sweep version")

    def _read_event(self, number: int) -> Any | None:
        """Event ``number`` decoded, or None if it is not published (yet, as far as this client sees)."""
        path = self._event_path(number)
        data = self._read_complete(path)
        return None if data is None else decode_line(data, path)

    def _event_path(self, number: int) -> str:
        return f"{self.events}{os.sep}{event_name(number)}"  # a str: a cold read opens thousands

    def _read_complete(self, path: str) -> bytes | None:
        """The bytes of a published event file, waiting out a short read; None if it does not exist."""
        backoff = None
        while True:
            try:
                data = _read_whole(path)
            except OSError as first:
                if first.errno not in TRANSIENT:
                    raise LedgerError(f"{path}: cannot read the ledger event ({first.strerror or first})") from first
                data = _retrying(Path(path), "read an event", self.timeout, lambda: _read_whole(path))
            # A published event is whole; a short read is a client cache catching up.
            if data is None or (data.endswith(b"\n") and data.count(b"\n") == 1):
                return data
            backoff = backoff or _Backoff(min(self.timeout, 5.0))
            if not backoff.wait():
                return data

    # -- writing -------------------------------------------------------------------------------

    def _write_temp(self, data: bytes) -> Path:
        """A new temporary file in events/ holding ``data``, fsynced, ready to be linked."""
        temp = _temp_name(self.events)

        def write() -> None:
            temp.unlink(missing_ok=True)  # left by a failed attempt
            try:
                _write_synced(temp, data)
            except FileNotFoundError:  # a v1 ledger's first event of this version
                self.events.mkdir(exist_ok=True)
                _write_synced(temp, data)

        try:
            _retrying(temp, "write an event", self.timeout, write)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise LedgerError(f"{temp}: could not write a ledger event ({exc.strerror or exc})") from exc
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
