"""The ledger's lock: which kind to use on this filesystem, taking it, and refusing a broken or mixed one.

Lock choice (issue 4): ``flock`` is not reliable across hosts on network filesystems, so on the
types in ``NETWORK_FILESYSTEMS`` (found from /proc/self/mountinfo) the ledger uses filelock's
``SoftFileLock``: an exclusively created marker holding pid, host and process start time. A marker
whose process is gone from this host is broken at once; one from another host is broken once it is
older than ``stale_lock_after`` seconds (default 30; a hold lasts milliseconds), so hosts' clocks
must agree to within that. Elsewhere it uses ``FileLock`` (flock). ``MLFLOW_SWEEP_LOCK_MODE`` =
``hard``, ``soft`` or ``auto`` (default) overrides; every agent of a sweep must use the same mode.
"""
from __future__ import annotations

import errno
import os
import re
import warnings
from pathlib import Path
from typing import Iterator

import filelock

from mlflow_sweep.errors import LedgerError

LOCK_MODE_ENV = "MLFLOW_SWEEP_LOCK_MODE"
LOCK_MODES = ("hard", "soft", "auto")
SOFT_LOCK_STALE_AFTER = 30.0
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "lustre", "gpfs", "cifs", "smb3", "smbfs", "beegfs", "ceph", "fuse.ceph-fuse",
    "glusterfs", "fuse.glusterfs", "afs", "9p", "panfs", "pvfs2", "orangefs", "wekafs", "gfs2",
    "ocfs2", "fuse.sshfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.rclone", "fuse.juicefs", "fuse.mfs",
    "fuse.lizardfs", "quobyte", "fuse.quobyte", "vboxsf",
})


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mount_table(text: str) -> Iterator[tuple[str, str]]:
    """(mount point, fs type) pairs from /proc/self/mountinfo or /proc/mounts text."""
    for line in text.splitlines():
        left, dash, right = line.partition(" - ")
        fields = left.split()
        if dash and len(fields) >= 5 and right.split():
            yield _unescape(fields[4]), right.split()[0]
        elif not dash and len(fields) >= 3:
            yield _unescape(fields[1]), fields[2]


def filesystem_type(path: str | os.PathLike[str], mounts: str | None = None) -> str | None:
    """The type of the filesystem holding ``path`` (longest mount-point prefix), or None if unknown.

    Args:
        path: a file or directory; need not exist yet.
        mounts: mount table text to use instead of /proc/self/mountinfo (for tests).
    """
    if mounts is None:
        mounts = next((Path(p).read_text() for p in ("/proc/self/mountinfo", "/proc/mounts")
                       if os.access(p, os.R_OK)), "")
    target, best, found = os.path.realpath(path), -1, None
    for point, fstype in _mount_table(mounts):
        inside = point == "/" or target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= best:  # later entries shadow earlier ones on the same point
            best, found = len(point), fstype
    return found


def resolve_lock_mode(directory: str | os.PathLike[str], requested: str | None = None) -> str:
    """``hard`` or ``soft``: the requested mode, else $MLFLOW_SWEEP_LOCK_MODE, else by filesystem.

    Args:
        directory: the ledger directory.
        requested: ``hard``, ``soft``, ``auto`` or None (use the environment).
    """
    mode = (requested or os.environ.get(LOCK_MODE_ENV) or "auto").strip().lower()
    if mode not in LOCK_MODES:
        raise LedgerError(f"{LOCK_MODE_ENV} must be one of {', '.join(LOCK_MODES)}, but got {mode!r}")
    if mode != "auto":
        return mode
    return "soft" if filesystem_type(directory) in NETWORK_FILESYSTEMS else "hard"


def make_lock(path: Path, mode: str, stale_after: float) -> filelock.BaseFileLock:
    if mode == "hard":
        # No silent soft fallback: a mixed lock protocol would exclude nobody.
        return filelock.FileLock(path, thread_local=False, poll_interval=0.005, fallback_to_soft=False)
    with warnings.catch_warnings():  # the age-based expiry it warns about is our documented choice
        warnings.simplefilter("ignore", filelock.SoftFileLockLifetimeWarning)
        return filelock.SoftFileLock(path, thread_local=False, poll_interval=0.02, lifetime=stale_after)


def _marker(lock_path: Path) -> str | None:
    try:
        return lock_path.read_text(errors="replace")
    except OSError:
        return None


def acquire(lock: filelock.BaseFileLock, mode: str, timeout: float) -> None:
    lock_path = Path(lock.lock_file)
    try:
        lock.acquire(timeout=timeout)
    except filelock.Timeout:
        raise LedgerError(_timeout_message(lock_path, mode, timeout)) from None
    except OSError as exc:
        unsupported = exc.errno in (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP)
        hint = f" (try {LOCK_MODE_ENV}=soft)" if mode == "hard" and unsupported else ""
        raise LedgerError(f"sweep in {lock_path.parent}: could not lock the ledger "
                          f"({lock_path}): {exc.strerror or exc}{hint}") from exc


def _timeout_message(lock_path: Path, mode: str, timeout: float) -> str:
    message = (f"sweep in {lock_path.parent}: could not lock the ledger ({lock_path}) within "
               f"{timeout:g} s; another agent may be stuck (see 'mlflow sweep status')")
    if mode != "soft":
        return message
    marker = _marker(lock_path)
    if marker == "":
        return (f"{message}; the lock file is empty, as a hard-mode (flock) agent leaves it: every "
                f"agent must use the same {LOCK_MODE_ENV}")
    holder = (marker or "").split("\n")
    return message + (f"; it is held by pid {holder[0]} on {holder[1]}" if len(holder) > 2 else "")


def check_marker(lock: filelock.BaseFileLock, mode: str) -> None:
    """Refuse a hard lock on a soft-mode marker: the two protocols would not exclude each other."""
    if mode == "hard" and _marker(Path(lock.lock_file)):
        raise LedgerError(f"{lock.lock_file} holds a soft-lock marker, so some agent uses soft mode: "
                          f"every agent must use the same {LOCK_MODE_ENV} (delete the file if no "
                          f"agent is running)")


def check_still_held(lock: filelock.BaseFileLock, mode: str) -> None:
    # An age-based break (another host's marker older than stale_lock_after) could have
    # handed the lock on while we were stalled; then writing would interleave with the new holder.
    if mode == "soft" and not lock.is_lock_held_by_us:
        raise LedgerError(f"{lock.lock_file}: this agent's soft lock was broken by another agent "
                          f"(held longer than the stale bound?); nothing was written")
