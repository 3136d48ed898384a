"""The mount table: which filesystem holds the ledger, and refusing mount options the ledger cannot live with.

The ledger's event log needs no lock and no clock (``mlflow_sweep.journal``): only that creating a
new name with ``link()`` is decided by the file server. Heartbeats are different: a reaper reads
another agent's heartbeat file, and a client that caches file attributes or data can show it an
old beat. If that cache can be older than the heartbeat timeout allows, a live agent's trial would
be reaped and its point run twice, which is corruption discovered late. ``check_mount`` refuses
such a mount at start, naming the option to change:

- NFS keeps attributes up to ``acregmax``/``acdirmax`` seconds (``actimeo`` sets both, default
  60; ``noac`` means none). A beat can then look up to that much older than it is, so the
  heartbeat timeout must exceed it plus one beat interval.
- CIFS/SMB with ``cache=loose`` (or ``cache=ro``) reads cached data without asking the server.

sshfs keeps its cache options out of the mount table; docs/cluster.md says which ones to avoid.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

from mlflow_sweep.errors import LedgerError
from mlflow_sweep.settings import HEARTBEAT_TIMEOUT

NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "lustre", "gpfs", "cifs", "smb3", "smbfs", "beegfs", "ceph", "fuse.ceph-fuse",
    "glusterfs", "fuse.glusterfs", "afs", "9p", "panfs", "pvfs2", "orangefs", "wekafs", "gfs2",
    "ocfs2", "fuse.sshfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.rclone", "fuse.juicefs", "fuse.mfs",
    "fuse.lizardfs", "quobyte", "fuse.quobyte", "vboxsf",
})
NFS_ATTRIBUTE_CACHE_DEFAULT = 60.0  # seconds: acregmax and acdirmax when the mount does not say


@dataclass(frozen=True)
class Mount:
    """One mount table entry: where it is mounted, the filesystem type and its options."""

    point: str
    fstype: str
    options: Mapping[str, str] = field(default_factory=dict)


def _unescape(field_text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field_text)


def _options(*texts: str) -> dict[str, str]:
    """``rw,vers=4.2,noac`` → {"rw": "", "vers": "4.2", "noac": ""}; later texts win."""
    options: dict[str, str] = {}
    for text in texts:
        for item in filter(None, text.split(",")):
            name, _, value = item.partition("=")
            options[name] = value
    return options


def _mount_table(text: str) -> Iterator[Mount]:
    """Mounts from /proc/self/mountinfo or /proc/mounts text."""
    for line in text.splitlines():
        left, dash, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if dash and len(fields) >= 6 and tail:
            yield Mount(_unescape(fields[4]), tail[0], _options(fields[5], tail[2] if len(tail) > 2 else ""))
        elif not dash and len(fields) >= 4:
            yield Mount(_unescape(fields[1]), fields[2], _options(fields[3]))


def _read_mounts() -> str:
    return next((Path(p).read_text() for p in ("/proc/self/mountinfo", "/proc/mounts")
                 if os.access(p, os.R_OK)), "")


def mount_of(path: str | os.PathLike[str], mounts: str | None = None) -> Mount | None:
    """The mount holding ``path`` (longest mount-point prefix), or None if unknown.

    Args:
        path: a file or directory; need not exist yet.
        mounts: mount table text to use instead of /proc/self/mountinfo (for tests).
    """
    target, best, found = os.path.realpath(path), -1, None
    for mount in _mount_table(_read_mounts() if mounts is None else mounts):
        point = mount.point
        inside = point == "/" or target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= best:  # later entries shadow earlier ones on the same point
            best, found = len(point), mount
    return found


def filesystem_type(path: str | os.PathLike[str], mounts: str | None = None) -> str | None:
    """The type of the filesystem holding ``path``, or None if unknown.

    Args:
        path: a file or directory; need not exist yet.
        mounts: mount table text to use instead of /proc/self/mountinfo (for tests).
    """
    mount = mount_of(path, mounts)
    return None if mount is None else mount.fstype


def _seconds(options: Mapping[str, str], name: str) -> float | None:
    try:
        return float(options[name])
    except (KeyError, ValueError):
        return None


def nfs_attribute_cache(options: Mapping[str, str]) -> tuple[float, str]:
    """How long an NFS client may keep a file's attributes, and the option that says so.

    Args:
        options: the mount's options.
    """
    if "noac" in options:
        return 0.0, "noac"
    shared = _seconds(options, "actimeo")
    bounds = []
    for name in ("acregmax", "acdirmax"):
        value = _seconds(options, name)
        if value is not None:
            bounds.append((value, name))
        elif shared is not None:
            bounds.append((shared, "actimeo"))
        else:
            bounds.append((NFS_ATTRIBUTE_CACHE_DEFAULT, f"{name} (default)"))
    return max(bounds)


def check_mount(path: str | os.PathLike[str], heartbeat_timeout: float, mounts: str | None = None) -> None:
    """Refuse a ledger directory whose mount can show heartbeats older than ``heartbeat_timeout`` allows.

    Args:
        path: the ledger directory.
        heartbeat_timeout: seconds of silence after which a trial is reaped.
        mounts: mount table text to use instead of /proc/self/mountinfo (for tests).
    """
    mount = mount_of(path, mounts)
    if mount is None:
        return
    where = f"the ledger directory {path} is on a {mount.fstype} mount at {mount.point}"
    if mount.fstype in ("nfs", "nfs4"):
        cache, option = nfs_attribute_cache(mount.options)
        needed = cache + min(5.0, heartbeat_timeout / 4)  # one beat interval on top of the cache
        if heartbeat_timeout <= needed:
            raise LedgerError(
                f"{where} that keeps file attributes up to {cache:g} s ({option}), so a live agent's "
                f"heartbeat can look older than {HEARTBEAT_TIMEOUT}={heartbeat_timeout:g} s and its "
                f"trial would be reaped: mount with actimeo={max(1, int(heartbeat_timeout / 4))} or lower, "
                f"or set {HEARTBEAT_TIMEOUT} above {needed:g}")
    if mount.fstype in ("cifs", "smb3") and mount.options.get("cache") in ("loose", "ro"):
        raise LedgerError(f"{where} mounted with cache={mount.options['cache']}, which reads cached data "
                          f"without asking the server (other agents' heartbeats would look stale): "
                          f"mount with cache=strict (the default)")
