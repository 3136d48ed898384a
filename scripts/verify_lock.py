#!/usr/bin/env python3
"""Check that the ledger lock excludes across processes and hosts on a (shared) filesystem.

Every worker takes the ledger's own lock (mlflow_sweep.ledger.Ledger.locked, with the same lock
mode choice as agents) ITERATIONS times. While holding it, it appends a begin stamp to a shared
log, increments a shared counter by read-modify-write, sleeps HOLD seconds, and appends an end
stamp. ``check`` then proves mutual exclusion from the file alone, without trusting clocks:

- in log order every begin is followed by the end of the same hold (any interleaving is an
  overlap), and no line is torn or lost;
- the counter equals the number of holds (a lost update means two holders at once);
- within each host, the holds' wall-clock intervals do not overlap.

Usage, on one machine::

    python scripts/verify_lock.py local DIR --procs 8 --iterations 50 [--mode hard|soft|auto]

across hosts (e.g. SLURM, DIR on the shared filesystem, a fresh DIR per run)::

    srun -N 4 -n 16 python scripts/verify_lock.py worker DIR --iterations 50 --barrier 16
    python scripts/verify_lock.py check DIR --expect 800

Exit status 0 when no overlap was found, 1 otherwise. ``--mode none`` takes no lock at all, to
show that the check does catch overlaps.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

LOG, COUNTER = "verify-lock.log", "verify-lock.counter"


def _append(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)  # opened under the lock (NFS)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _bump(path: Path) -> None:
    count = int(path.read_text() or 0) if path.exists() else 0
    path.write_text(str(count + 1))


def _wait_barrier(directory: Path, who: str, parties: int) -> None:
    ready = directory / "verify-lock.ready"
    ready.mkdir(exist_ok=True)
    (ready / who).touch()
    deadline = time.monotonic() + 300
    while len(list(ready.iterdir())) < parties:
        if time.monotonic() > deadline:
            sys.exit(f"barrier: only {len(list(ready.iterdir()))} of {parties} workers arrived")
        time.sleep(0.01)


def worker(directory: Path, iterations: int, hold: float, mode: str | None, barrier: int) -> None:
    """Take the lock ``iterations`` times, stamping each hold."""
    from mlflow_sweep.ledger import Ledger

    directory.mkdir(parents=True, exist_ok=True)
    who = f"{socket.gethostname()}:{os.getpid()}"
    ledger = None if mode == "none" else Ledger(directory, lock_mode=mode, lock_timeout=300)
    if barrier:
        _wait_barrier(directory, who, barrier)
    for k in range(iterations):
        with ledger.locked() if ledger else nullcontext():
            _append(directory / LOG, f"B {who} {k} {time.time():.6f}\n")
            _bump(directory / COUNTER)
            time.sleep(hold)
            _append(directory / LOG, f"E {who} {k} {time.time():.6f}\n")


def _pair_problems(lines: list[str]) -> tuple[list[tuple[str, float, float]], list[str]]:
    """Holds as (who, begin, end) from the log, and every place the log shows an overlap."""
    holds, problems, open_hold = [], [], None
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if len(fields) != 4 or fields[0] not in "BE":
            problems.append(f"line {number}: torn or interleaved line {line!r}")
            open_hold = None
        elif fields[0] == "B":
            if open_hold:
                problems.append(f"line {number}: overlap: {fields[1]} began while {open_hold[0]} held the lock")
            open_hold = (fields[1], fields[2], float(fields[3]))
        elif not open_hold or open_hold[:2] != (fields[1], fields[2]):
            problems.append(f"line {number}: overlap: {fields[1]} ended a hold that was not the open one")
            open_hold = None
        else:
            holds.append((open_hold[0], open_hold[2], float(fields[3])))
            open_hold = None
    return holds, problems


def _time_problems(holds: list[tuple[str, float, float]]) -> list[str]:
    """Wall-clock overlaps between holds on the same host (clocks across hosts may differ)."""
    problems, by_host = [], {}
    for who, begin, end in holds:
        by_host.setdefault(who.rsplit(":", 1)[0], []).append((begin, end, who))
    for host, spans in by_host.items():
        spans.sort()
        for (_, end, who), (begin, _, other) in zip(spans, spans[1:]):
            if begin < end:
                problems.append(f"{host}: {other} began {end - begin:.6f} s before {who} ended")
    return problems


def check(directory: Path, expect: int | None) -> int:
    """Print the verdict on DIR's stamps; 0 when no overlap was found."""
    lines = (directory / LOG).read_text().splitlines() if (directory / LOG).exists() else []
    holds, problems = _pair_problems(lines)
    problems += _time_problems(holds)
    counter = int((directory / COUNTER).read_text() or 0) if (directory / COUNTER).exists() else 0
    if counter != len(holds):
        problems.append(f"overlap: the counter says {counter} holds, the log {len(holds)} (lost updates)")
    if expect is not None and len(holds) != expect:
        problems.append(f"expected {expect} holds, found {len(holds)}")
    for problem in problems[:20]:
        print(problem)
    hosts = len({who.rsplit(':', 1)[0] for who, _, _ in holds})
    print(f"{len(holds)} holds by {len({w for w, _, _ in holds})} processes on {hosts} host(s): "
          + ("no overlap" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


def local(directory: Path, procs: int, iterations: int, hold: float, mode: str | None) -> int:
    """Run ``procs`` workers on this machine, then check."""
    directory.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, __file__, "worker", str(directory), "--iterations", str(iterations),
            "--hold", str(hold), "--barrier", str(procs), *(["--mode", mode] if mode else [])]
    workers = [subprocess.Popen(argv) for _ in range(procs)]
    try:
        failed = [code for code in (w.wait() for w in workers) if code != 0]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    if failed:
        print(f"{len(failed)} worker(s) failed: exit codes {failed}")
        return 1
    return check(directory, procs * iterations)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("local", "worker", "check"):
        sub = commands.add_parser(name)
        sub.add_argument("directory", type=Path)
        if name != "check":
            sub.add_argument("--iterations", type=int, default=50)
            sub.add_argument("--hold", type=float, default=0.002, help="seconds to hold the lock")
            sub.add_argument("--mode", choices=("auto", "hard", "soft", "none"),
                             help="lock mode (default: as agents choose, from $MLFLOW_SWEEP_LOCK_MODE)")
    commands.choices["local"].add_argument("--procs", type=int, default=4)
    commands.choices["worker"].add_argument("--barrier", type=int, default=0,
                                            help="wait until this many workers have started")
    commands.choices["check"].add_argument("--expect", type=int, help="the number of holds expected")
    args = parser.parse_args(argv)
    if args.command == "worker":
        worker(args.directory, args.iterations, args.hold, args.mode, args.barrier)
        return 0
    if args.command == "local":
        return local(args.directory, args.procs, args.iterations, args.hold, args.mode)
    return check(args.directory, args.expect)


if __name__ == "__main__":
    sys.exit(main())
