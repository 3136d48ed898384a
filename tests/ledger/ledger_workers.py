"""Ledger test helpers: real worker processes on a real ledger directory, and their clean-up.

Workers run ``sys.executable -c WORKER``, open the ledger from its path, wait for a barrier file,
act, and print a JSON list of what they claimed.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest

HEADER = {"config": {"method": "grid", "parameters": {"x": {"values": [0, 1, 2]}}}, "seed": 7,
          "sweep_id": "ledger-test"}

WORKER = r"""
import errno, json, os, sys, time
from pathlib import Path
import mlflow_sweep.ledger
from mlflow_sweep.ledger import Ledger
from mlflow_sweep.trials import DONE, Proposal, TrialState

directory, agent, count, barrier, kind, arg = sys.argv[1:7]
count, arg = int(count), int(arg)
lock = os.environ.get("LEDGER_TEST_LOCK", "")  # what the claim lock does in this worker
if lock in ("enosys", "enolck"):  # flock refused, as on Lustre without -o flock or NFS without lockd
    import fcntl
    code = getattr(errno, lock.upper())
    def refuse(fd, operation):
        raise OSError(code, os.strerror(code))
    fcntl.flock = refuse
elif lock == "granted":  # a lock that never excludes, as flock across sshfs clients
    class Granted:
        def acquire(self, timeout=None, poll_interval=None):
            return self
        def release(self):
            pass
    mlflow_sweep.ledger._file_lock = lambda path: Granted()

def grid(state):  # points 0..arg-1; a point is free unless a trial that did not die holds it
    taken = {t.point for t in state.trials if not t.dead}
    free = [p for p in range(arg) if p not in taken]
    return Proposal({"x": free[0]}, point=free[0]) if free else DONE

def cap(state):
    return DONE if state.count() >= arg else Proposal({"agent": agent})

def anything(state):
    return Proposal({"agent": agent, "n": len(state.trials)})

decide = {"grid": grid, "cap": cap, "any": anything, "hold": grid}[kind]
ledger = Ledger(directory, timeout=60, lock=lock != "off",
                lock_timeout=float(os.environ.get("LEDGER_TEST_LOCK_TIMEOUT", "30")))
deadline = time.monotonic() + 60
while not Path(barrier).exists():
    if time.monotonic() > deadline:
        sys.exit(3)
    time.sleep(0.002)
claimed = []
while count < 0 or len(claimed) < count:
    trial = ledger.claim(decide, agent).trial
    if trial is None:
        break
    claimed.append(trial.index)
    if kind == "hold":  # keep a RUNNING trial until killed, after one heartbeat
        ledger.heartbeat(agent, {"pid": 0})
        Path(directory, f"ready-{agent}").touch()
        time.sleep(600)
    ledger.start(trial.index, f"run-{trial.index}")
    ledger.complete(trial.index, TrialState.FINISHED, float(trial.index))
print("races", ledger.races_lost)
print(json.dumps(claimed))
"""

HOLDER = r"""
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
open(sys.argv[2], "w").close()
time.sleep(600)
"""


@dataclass
class Pool:
    """Worker processes on one ledger directory, all released by one barrier file."""

    directory: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def barrier(self) -> Path:
        return self.directory / "go"

    def spawn(self, n: int, count: int, kind: str, arg: int = 0, prefix: str = "w") -> list[subprocess.Popen]:
        """Start ``n`` workers that each claim ``count`` trials (-1: until DONE) with decide ``kind``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        new = [subprocess.Popen(
            [sys.executable, "-c", WORKER, str(self.directory), f"{prefix}{i}", str(count),
             str(self.barrier), kind, str(arg)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(n)]
        self.procs.extend(new)
        return new

    def hold_lock(self) -> subprocess.Popen:
        """Start a process that takes the ledger's claim lock and never lets it go; return once it holds it."""
        ready = self.directory / "lock-held"
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(self.directory / "ledger.lock"), str(ready)])
        self.procs.append(holder)
        wait_for(ready.exists)
        return holder

    def go(self) -> None:
        self.barrier.touch()

    def finish(self, procs: list[subprocess.Popen] | None = None, timeout: float = 60) -> list[tuple[int, str, str]]:
        """Wait for the workers; (exit code, stdout, stderr) each."""
        return [(p.wait(timeout), *p.communicate()) for p in (procs or self.procs)]


def log_events(directory: Path) -> list[dict]:
    """Every event of the ledger in ``directory``, in log order, read straight from the files."""
    lines = (directory / "ledger.jsonl").read_bytes().split(b"\n")[:-1]
    files = sorted(p for p in (directory / "events").glob("*.json"))
    return [json.loads(line) for line in lines] + [json.loads(p.read_bytes()) for p in files]


def claimed(results: list[tuple[int, str, str]]) -> list[int]:
    """All trial indices the workers printed, sorted."""
    return sorted(i for code, out, _ in results if code == 0 for i in json.loads(out.strip().splitlines()[-1]))


def races(results: list[tuple[int, str, str]]) -> int:
    """Races the workers lost in all: publications another worker had beaten."""
    return sum(int(line.split()[1]) for _, out, _ in results for line in out.splitlines() if line.startswith("races "))


def codes(results: list[tuple[int, str, str]]) -> list[int]:
    return [code for code, _, _ in results]


def outputs(results: list[tuple[int, str, str]]) -> str:
    return "\n".join(f"exit {code}\n{out}\n{err}" for code, out, err in results)


@contextmanager
def cleanup_processes(pool: Pool) -> Iterator[Pool]:
    """Yield ``pool``; on the way out SIGKILL and reap every worker still running."""
    try:
        yield pool
    finally:
        for proc in pool.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.communicate()


def wait_for(condition: Callable[[], object], timeout: float = 30.0, interval: float = 0.01) -> object:
    """Poll until ``condition()`` is truthy and return it; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(interval)
    return result
