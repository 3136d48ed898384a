"""Real agent processes forked from one warm Python: agents on a list of sweeps, one sweep after another.

It imports mlflow once and forks each agent from that process (real processes with their own
PIDs and their own store connections, running ``cli.main(["run", ...])``), so an agent costs a
fork instead of a 3-second ``import mlflow``::

    python tests/e2e/forked_agents.py plan.json OUT [--hosts N]

plan.json holds a JSON list of repetitions ``{"sweep_id": ..., "agents": 3, "kill": false}``. Before each
repetition every host waits at a barrier (files in OUT/barrier) so that all agents of all hosts
start together; the multi-host test runs one driver per host inside ``tests/netfs_hosts.sh host``,
the store-load test one on this machine (``--hosts 1``). With ``"kill": true`` the first agent is
SIGKILLed as soon as it has started a trial. Each agent's output goes to OUT/<rep>-<host>-<i>.log;
one JSON line per repetition goes to OUT/<host>.jsonl with the agents' exit codes.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

TIMEOUT = 300.0


def _barrier(directory: Path, rep: int, host: str, parties: int) -> None:
    """Wait until every host has reached repetition ``rep``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{rep}-{host}").touch()
    deadline = time.monotonic() + TIMEOUT
    while len(list(directory.glob(f"{rep}-*"))) < parties:
        if time.monotonic() > deadline:
            sys.exit(f"{host}: barrier {rep}: the other hosts did not arrive within {TIMEOUT:g} s")
        time.sleep(0.005)


def _fork_agent(sweep_id: str, log: Path) -> int:
    """Fork one agent process running ``mlflow sweep run --sweep-id SWEEP_ID``; return its PID."""
    pid = os.fork()
    if pid:
        return pid
    code = 70
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        from mlflow_sweep import cli

        code = cli.main(["run", "--sweep-id", sweep_id])
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _kill_when_running(pid: int, log: Path) -> bool:
    """SIGKILL the agent ``pid`` as soon as its log shows a trial started; False if it never did."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if b"(run " in log.read_bytes():
            os.kill(pid, signal.SIGKILL)
            return True
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            return False
        time.sleep(0.01)
    return False


def _wait(pids: list[int]) -> list[int]:
    """Exit codes (negative: killed by that signal) of the agents, in order."""
    return [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]


def run(plan: list[dict], out: Path, hosts: int) -> None:
    """Play every repetition of ``plan`` on this host."""
    import mlflow  # noqa: F401  once here, inherited by every forked agent
    from mlflow_sweep import agent_loop, cli, tracking  # noqa: F401

    host = socket.gethostname()
    for rep, step in enumerate(plan):
        _barrier(out / "barrier", rep, host, hosts)
        started = time.monotonic()
        logs = [out / f"{rep}-{host}-{i}.log" for i in range(step["agents"])]
        pids = [_fork_agent(step["sweep_id"], log) for log in logs]
        killed = _kill_when_running(pids[0], logs[0]) if step.get("kill") else None
        record = {"rep": rep, "host": host, "sweep_id": step["sweep_id"], "codes": _wait(pids),
                  "killed": killed, "seconds": round(time.monotonic() - started, 2)}
        with open(out / f"{host}.jsonl", "a") as results:
            results.write(json.dumps(record) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("plan", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--hosts", type=int, default=2)
    args = parser.parse_args()
    run(json.loads(args.plan.read_text()), args.out, args.hosts)


if __name__ == "__main__":
    main()
