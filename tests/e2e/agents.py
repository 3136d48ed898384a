"""Helpers for end-to-end tests: write a sweep file, init it, run real agent processes."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from tests.conftest import Store  # noqa: F401  (type only)


def init_sweep(store: Store, config: dict[str, Any], name: str = "sweep.yaml") -> str:
    """Write ``config`` as YAML in the store's directory, run ``init`` (in process), return the sweep ID."""
    path = store.root / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = store.main("init", str(path), check=True)
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("Sweep initialized with ID: "), proc.stdout
    return last.rsplit(" ", 1)[1]


def start_agent(store: Store, sweep_id: str, *extra: str, env: dict[str, str] | None = None,
                log: Path | None = None) -> subprocess.Popen:
    """Start ``python -m mlflow_sweep run`` as a background process with output to a log file."""
    out = open(log or store.root / f"agent-{time.monotonic_ns()}.log", "wb")
    return subprocess.Popen([sys.executable, "-m", "mlflow_sweep", "run", "--sweep-id", sweep_id, *extra],
                            cwd=store.root, env=env or store.env, stdout=out, stderr=subprocess.STDOUT)


@contextlib.contextmanager
def agents(store: Store, sweep_id: str, n: int, *extra: str, env: dict[str, str] | None = None
           ) -> Iterator[list[subprocess.Popen]]:
    """N agents in parallel, reaped (and their trials' process groups killed) in ``finally``."""
    procs = [start_agent(store, sweep_id, *extra, env=env, log=store.root / f"agent-{i}.log")
             for i in range(n)]
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


FORKED_AGENTS = Path(__file__).resolve().parent / "forked_agents.py"


def forked_agents(store: Store, sweep_id: str, n: int, timeout: float) -> tuple[list[int], str]:
    """Run ``n`` real agents forked from one warm Python (one ``import mlflow`` for all) to their end.

    Returns their exit codes and their logs. Everything is killed if they outlive ``timeout``.
    """
    out = store.root / "forked"
    out.mkdir()
    (out / "plan.json").write_text(json.dumps([{"sweep_id": sweep_id, "agents": n}]))
    driver = subprocess.Popen([sys.executable, str(FORKED_AGENTS), str(out / "plan.json"), str(out), "--hosts", "1"],
                              cwd=store.root, env=store.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        text = driver.communicate(timeout=timeout)[0].decode(errors="replace")
    finally:
        kill_group(driver.pid)  # the agents, were they left behind (each trial has its own group)
        driver.wait()
    text += "".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in sorted(out.glob("*.log")))
    records = [json.loads(line) for p in out.glob("*.jsonl") for line in p.read_text().splitlines()]
    assert (driver.returncode, len(records)) == (0, 1), text
    return records[0]["codes"], text


def wait_all(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    """Exit codes of all processes, waiting at most ``timeout`` seconds in total."""
    deadline = time.monotonic() + timeout
    return [proc.wait(timeout=max(0.1, deadline - time.monotonic())) for proc in procs]


def logs(store: Store) -> str:
    """Every agent log in the store's directory, for assertion messages."""
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in sorted(store.root.glob("agent-*.log")))


def child_runs(store: Store, sweep_id: str) -> list:
    """The sweep's child runs, through MlflowClient."""
    client = store.client()
    parent = client.get_run(sweep_id)
    return client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.`mlflow.parentRunId` = '{sweep_id}'", max_results=5000)


def ledger_events(store: Store, sweep_id: str) -> list[dict]:
    """The sweep's ledger events (the ledger directory is recorded as a tag on the parent run)."""
    ledger_dir = Path(store.client().get_run(sweep_id).data.tags["sweep.ledger_dir"])
    lines = (ledger_dir / "ledger.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()] + \
        [json.loads(p.read_text()) for p in sorted((ledger_dir / "events").glob("*.json"))]


def poll(condition: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Wait until ``condition()`` is truthy and return it; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def kill_group(pid: int) -> None:
    """SIGKILL a process group if it still exists (orphaned trial commands)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
