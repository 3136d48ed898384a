"""The mount table: filesystem detection, and refusing mounts that would show heartbeats too old."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlflow_sweep.errors import LedgerError
from mlflow_sweep.mounts import check_mount, filesystem_type, mount_of, nfs_attribute_cache

pytestmark = pytest.mark.timeout(30)

MOUNTINFO = """\
22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
30 22 0:26 / /proc rw,nosuid - proc proc rw
41 22 0:40 / /shared rw,relatime shared:20 - nfs4 fs1:/export rw,vers=4.2,rsize=1048576
42 41 0:41 / /shared/local\\040scratch rw - tmpfs tmpfs rw
43 22 0:42 / /lus rw - lustre 10.0.0.1@tcp:/lus rw,flock
44 22 0:43 / /sharedother rw - xfs /dev/vdb rw
45 22 0:44 / /fastnfs rw - nfs fs2:/x rw,vers=3,actimeo=3
46 22 0:45 / /slownfs rw - nfs fs2:/y rw,vers=3,acregmax=30,acdirmax=300
47 22 0:46 / /noac rw - nfs fs2:/z rw,noac
48 22 0:47 / /smb rw - cifs //srv/share rw,cache=loose
49 22 0:48 / /smbok rw - cifs //srv/share rw,cache=strict
50 22 0:49 / /sshfs rw,nosuid,nodev,relatime - fuse.sshfs root@127.0.0.1:/export rw,user_id=0,group_id=0
"""
PROC_MOUNTS = "/dev/vda1 / ext4 rw 0 0\nserver:/home /home nfs rw,vers=3,actimeo=5 0 0\n"


@pytest.mark.parametrize(("path", "expected"), [
    ("/", "ext4"), ("/home/me", "ext4"), ("/shared", "nfs4"), ("/shared/runs/x", "nfs4"),
    ("/shared/local scratch/x", "tmpfs"), ("/sharedother/x", "xfs"), ("/lus/proj", "lustre"),
    ("/sshfs/ledgers", "fuse.sshfs"),
])
def test_filesystem_type_takes_the_longest_mount_point(path: str, expected: str) -> None:
    assert filesystem_type(path, MOUNTINFO) == expected


def test_mount_options_merge_mount_and_superblock_options() -> None:
    mount = mount_of("/shared/x", MOUNTINFO)
    assert (mount.point, mount.options["vers"], mount.options["relatime"], mount_of("/home/x", PROC_MOUNTS).options) == \
        ("/shared", "4.2", "", {"rw": "", "vers": "3", "actimeo": "5"})


def test_filesystem_type_of_this_machine(tmp_path: Path) -> None:
    assert filesystem_type(tmp_path) is not None or not os.path.exists("/proc/self/mountinfo")


@pytest.mark.parametrize(("options", "expected"), [
    ({}, (60.0, "acregmax (default)")), ({"actimeo": "3"}, (3.0, "actimeo")), ({"noac": ""}, (0.0, "noac")),
    ({"acregmax": "30", "acdirmax": "300"}, (300.0, "acdirmax")), ({"actimeo": "10", "acdirmax": "20"}, (20.0, "acdirmax")),
])
def test_nfs_attribute_cache_bound(options: dict, expected: tuple) -> None:
    assert nfs_attribute_cache(options) == expected


@pytest.mark.parametrize(("path", "timeout"), [
    ("/shared/l", 120), ("/fastnfs/l", 10), ("/noac/l", 2), ("/lus/l", 1), ("/smbok/l", 5), ("/sshfs/l", 5),
    ("/home/l", 30),
])
def test_safe_mounts_pass(path: str, timeout: float) -> None:
    check_mount(path, timeout, MOUNTINFO)


@pytest.mark.parametrize(("path", "timeout", "message"), [
    ("/shared/l", 60, r"nfs4 mount at /shared that keeps file attributes up to 60 s \(acregmax \(default\)\).*"
                      r"MLFLOW_SWEEP_HEARTBEAT_TIMEOUT=60 s.*mount with actimeo=15 or lower, or set "
                      r"MLFLOW_SWEEP_HEARTBEAT_TIMEOUT above 65"),
    ("/slownfs/l", 120, r"up to 300 s \(acdirmax\)"),
    ("/smb/l", 120, r"cifs mount at /smb mounted with cache=loose.*mount with cache=strict"),
])
def test_unsafe_mounts_are_refused_naming_the_option(path: str, timeout: float, message: str) -> None:
    with pytest.raises(LedgerError, match=message):
        check_mount(path, timeout, MOUNTINFO)

