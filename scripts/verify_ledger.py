#!/usr/bin/env python3
"""Check that agents on one machine or on many hosts claim every ledger trial exactly once.

Every worker opens the ledger in DIR (creating it if needed) and claims trials, ITERATIONS of
them, as fast as it can, with a decide that looks at the whole history (as the agent's does);
for each claim it records the trial index and the number of trials it saw in its own file
(``claims/<host>:<pid>``). ``check`` then proves, from those files and the ledger alone:

- the trials claimed are exactly 0..N-1, each by one worker, as the ledger says;
- each claim was decided on the complete history before it (it saw exactly ``index`` trials);
- the ledger replays without a conflict.

Usage, on one machine::

    python scripts/verify_ledger.py local DIR --procs 8 --iterations 50

across hosts (e.g. SLURM, DIR on the shared filesystem, a fresh DIR per run)::

    srun -N 4 -n 16 python scripts/verify_ledger.py worker DIR --iterations 50 --barrier 16
    python scripts/verify_ledger.py check DIR --expect 800

Exit status 0 when every check holds, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

CLAIMS = "claims"
HEADER = {"config": {}, "seed": 0, "sweep_id": "verify-ledger"}


def _wait_barrier(directory: Path, who: str, parties: int) -> None:
    ready = directory / "verify.ready"
    ready.mkdir(exist_ok=True)
    (ready / who).touch()
    deadline = time.monotonic() + 300
    while len(list(ready.iterdir())) < parties:
        if time.monotonic() > deadline:
            sys.exit(f"barrier: only {len(list(ready.iterdir()))} of {parties} workers arrived")
        time.sleep(0.01)


def _open(directory: Path):
    from mlflow_sweep.errors import LedgerError
    from mlflow_sweep.ledger import Ledger

    try:
        return Ledger.create(directory, HEADER, timeout=300)
    except LedgerError:
        return Ledger(directory, timeout=300)  # another worker created it first


def worker(directory: Path, iterations: int, barrier: int) -> None:
    """Claim ``iterations`` trials, recording (index, trials seen when deciding) for each."""
    from mlflow_sweep.trials import Proposal

    directory.mkdir(parents=True, exist_ok=True)
    who = f"{socket.gethostname()}:{os.getpid()}"
    ledger = _open(directory)
    if barrier:
        _wait_barrier(directory, who, barrier)
    seen: list[int] = []

    def decide(state):
        seen.append(len(state.trials))
        return Proposal({"who": who, "seen": len(state.trials)})

    (directory / CLAIMS).mkdir(exist_ok=True)
    records = []
    for _ in range(iterations):
        trial = ledger.claim(decide, who.replace(":", "-")).trial
        records.append([trial.index, seen[-1]])
    (directory / CLAIMS / who).write_text(json.dumps(records))


def check(directory: Path, expect: int | None) -> int:
    """Print the verdict on DIR; 0 when every trial was claimed exactly once, on a complete history."""
    from mlflow_sweep.ledger import Ledger

    problems, owners = [], {}
    for path in sorted((directory / CLAIMS).glob("*")) if (directory / CLAIMS).exists() else []:
        for index, seen in json.loads(path.read_text()):
            if index in owners:
                problems.append(f"trial {index} claimed by {owners[index]} and by {path.name}")
            owners[index] = path.name
            if seen != index:
                problems.append(f"{path.name} claimed trial {index} having seen {seen} trials")
    state = Ledger(directory).state()
    if sorted(owners) != list(range(len(owners))) or len(owners) != state.count():
        problems.append(f"claimed {len(owners)} trials, the ledger holds {state.count()}")
    if state.conflicts:
        problems.append(f"the ledger holds {len(state.conflicts)} conflicting claims")
    if expect is not None and len(owners) != expect:
        problems.append(f"expected {expect} claims, found {len(owners)}")
    for problem in problems[:20]:
        print(problem)
    hosts = len({name.rsplit(":", 1)[0] for name in owners.values()})
    print(f"{len(owners)} claims by {len(set(owners.values()))} processes on {hosts} host(s): "
          + ("each trial exactly once" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


def local(directory: Path, procs: int, iterations: int) -> int:
    """Run ``procs`` workers on this machine, then check."""
    directory.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, __file__, "worker", str(directory), "--iterations", str(iterations),
            "--barrier", str(procs)]
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
    commands.choices["local"].add_argument("--procs", type=int, default=4)
    commands.choices["worker"].add_argument("--barrier", type=int, default=0,
                                            help="wait until this many workers have started")
    commands.choices["check"].add_argument("--expect", type=int, help="the number of claims expected")
    args = parser.parse_args(argv)
    if args.command == "worker":
        worker(args.directory, args.iterations, args.barrier)
        return 0
    if args.command == "local":
        return local(args.directory, args.procs, args.iterations)
    return check(args.directory, args.expect)


if __name__ == "__main__":
    sys.exit(main())
