"""Lock choice and lock failures: filesystem detection, the override, timeouts, mixed modes, stale markers."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mlflow_sweep import locking as locking_module
from mlflow_sweep.errors import LedgerError
from mlflow_sweep.ledger import Ledger
from mlflow_sweep.locking import filesystem_type, resolve_lock_mode
from mlflow_sweep.trials import Proposal

pytestmark = pytest.mark.timeout(30)

MOUNTINFO = """\
22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
30 22 0:26 / /proc rw,nosuid - proc proc rw
41 22 0:40 / /shared rw,relatime shared:20 - nfs4 fs1:/export rw,vers=4.2
42 41 0:41 / /shared/local\\040scratch rw - tmpfs tmpfs rw
43 22 0:42 / /lus rw - lustre 10.0.0.1@tcp:/lus rw,flock
44 22 0:43 / /sharedother rw - xfs /dev/vdb rw
"""
PROC_MOUNTS = "/dev/vda1 / ext4 rw 0 0\nserver:/home /home nfs rw,vers=3 0 0\n"


def take(state):
    return Proposal({"n": len(state.trials)})


@pytest.mark.parametrize(("path", "expected"), [
    ("/", "ext4"), ("/home/me", "ext4"), ("/shared", "nfs4"), ("/shared/runs/x", "nfs4"),
    ("/shared/local scratch/x", "tmpfs"), ("/sharedother/x", "xfs"), ("/lus/proj", "lustre"),
])
def test_filesystem_type_takes_the_longest_mount_point(path: str, expected: str) -> None:
    assert filesystem_type(path, MOUNTINFO) == expected


def test_filesystem_type_reads_proc_mounts_too() -> None:
    assert (filesystem_type("/home/me/sweeps", PROC_MOUNTS), filesystem_type("/tmp", PROC_MOUNTS)) == ("nfs", "ext4")


def test_filesystem_type_of_this_machine(tmp_path: Path) -> None:
    assert filesystem_type(tmp_path) is not None or not os.path.exists("/proc/self/mountinfo")


@pytest.mark.parametrize(("fstype", "env", "requested", "expected"), [
    ("ext4", None, None, "hard"), ("nfs4", None, None, "soft"), ("lustre", None, None, "soft"),
    ("gpfs", None, None, "soft"), ("nfs4", "hard", None, "hard"), ("ext4", "soft", None, "soft"),
    ("ext4", " SOFT ", None, "soft"), ("nfs", "auto", None, "soft"), ("ext4", "soft", "hard", "hard"),
    ("nfs", "hard", "auto", "soft"), (None, None, None, "hard"),
])
def test_lock_mode_choice(monkeypatch: pytest.MonkeyPatch, fstype: str | None, env: str | None,
                          requested: str | None, expected: str) -> None:
    monkeypatch.setattr(locking_module, "filesystem_type", lambda path: fstype)
    if env is None:
        monkeypatch.delenv("MLFLOW_SWEEP_LOCK_MODE", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_SWEEP_LOCK_MODE", env)
    assert resolve_lock_mode("/anywhere", requested) == expected


def test_a_bad_lock_mode_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLFLOW_SWEEP_LOCK_MODE", "flock")
    with pytest.raises(LedgerError, match="MLFLOW_SWEEP_LOCK_MODE must be one of hard, soft, auto, but got 'flock'"):
        Ledger(tmp_path)


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_lock_timeout_message(ledger_dir: Path, mode: str) -> None:
    holder, waiter = Ledger(ledger_dir, lock_mode=mode), Ledger(ledger_dir, lock_mode=mode, lock_timeout=0.2)
    with holder.locked(), pytest.raises(LedgerError) as info:
        waiter.claim(take, "w")
    expected = (f"sweep in {ledger_dir}: could not lock the ledger ({ledger_dir / 'ledger.jsonl.lock'}) within "
                f"0.2 s; another agent may be stuck (see 'mlflow sweep status')")
    assert (str(info.value).startswith(expected), ("held by pid" in str(info.value)) == (mode == "soft"),
            waiter.state().count()) == (True, True, 0), str(info.value)


def test_the_hard_lock_file_stays_and_the_soft_marker_goes(ledger_dir: Path) -> None:
    Ledger(ledger_dir, lock_mode="hard").claim(take, "a")
    kept = (ledger_dir / "ledger.jsonl.lock").exists()
    (ledger_dir / "ledger.jsonl.lock").unlink()
    Ledger(ledger_dir, lock_mode="soft").claim(take, "a")
    assert (kept, (ledger_dir / "ledger.jsonl.lock").exists()) == (True, False)


def test_a_hard_agent_refuses_a_soft_marker(ledger_dir: Path) -> None:
    (ledger_dir / "ledger.jsonl.lock").write_text("4242\nnode7\n")
    with pytest.raises(LedgerError, match="holds a soft-lock marker.*same MLFLOW_SWEEP_LOCK_MODE"):
        Ledger(ledger_dir, lock_mode="hard").claim(take, "a")
    assert Ledger(ledger_dir).state().count() == 0


def test_a_soft_agent_explains_an_empty_lock_file(ledger_dir: Path) -> None:
    (ledger_dir / "ledger.jsonl.lock").touch()  # what a hard-mode agent leaves behind
    with pytest.raises(LedgerError, match="the lock file is empty.*same MLFLOW_SWEEP_LOCK_MODE"):
        Ledger(ledger_dir, lock_mode="soft", lock_timeout=0.2).claim(take, "a")


def test_another_hosts_marker_is_broken_only_when_old(ledger_dir: Path) -> None:
    marker = ledger_dir / "ledger.jsonl.lock"
    marker.write_text("999\nfaraway-host\n")
    with pytest.raises(LedgerError, match="held by pid 999 on faraway-host"):
        Ledger(ledger_dir, lock_mode="soft", lock_timeout=0.3).claim(take, "a")
    old = time.time() - 3600
    os.utime(marker, (old, old))
    trial = Ledger(ledger_dir, lock_mode="soft", lock_timeout=10, stale_lock_after=30).claim(take, "a")
    assert (trial.index, marker.exists()) == (0, False)


def test_a_broken_soft_lock_writes_nothing(ledger_dir: Path) -> None:
    ledger = Ledger(ledger_dir, lock_mode="soft")
    before = ledger.path.read_bytes()
    with ledger.locked():
        (ledger_dir / "ledger.jsonl.lock").write_text("999\nfaraway-host\n")  # someone took it over
        with pytest.raises(LedgerError, match="soft lock was broken by another agent"):
            ledger.claim(take, "a")
    assert ledger.path.read_bytes() == before
