"""Real worker processes on one ledger, in both lock modes: exact claims, no duplicates, no overshoot."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_sweep.errors import LedgerError
from mlflow_sweep.ledger import Ledger, replay
from mlflow_sweep.trials import DONE, Proposal, TrialState

from tests.ledger.ledger_workers import Pool, claimed, codes, outputs, wait_for

VERIFY_LOCK = Path(__file__).resolve().parents[2] / "scripts" / "verify_lock.py"


def grid(points: int):
    """The grid-like decide the workers use: the first point no live trial holds."""
    def decide(state):
        taken = {t.point for t in state.trials if not t.dead}
        free = [p for p in range(points) if p not in taken]
        return Proposal({"x": free[0]}, point=free[0]) if free else DONE
    return decide


@pytest.mark.timeout(90)
def test_workers_claim_every_index_once(pool: Pool) -> None:
    n, m = 4, 6
    pool.spawn(n, m, "any")
    pool.go()
    results = pool.finish()
    state = Ledger(pool.directory).state()
    assert (codes(results), claimed(results), state.count(TrialState.FINISHED)) == \
        ([0] * n, list(range(n * m)), n * m), outputs(results)


@pytest.mark.timeout(90)
def test_grid_hands_out_each_point_once(pool: Pool) -> None:
    n, points = 4, 14
    pool.spawn(n, -1, "grid", points)
    pool.go()
    results = pool.finish()
    state = Ledger(pool.directory).state()
    assert (codes(results), claimed(results), sorted(t.point for t in state.trials)) == \
        ([0] * n, list(range(points)), list(range(points))), outputs(results)


@pytest.mark.timeout(90)
def test_cap_is_never_overshot(pool: Pool) -> None:
    n, cap = 5, 13
    pool.spawn(n, -1, "cap", cap)
    pool.go()
    results = pool.finish()
    assert (codes(results), claimed(results), Ledger(pool.directory).state().count()) == \
        ([0] * n, list(range(cap)), cap), outputs(results)


@pytest.mark.timeout(90)
def test_incremental_state_matches_a_fresh_replay(pool: Pool) -> None:
    reader = Ledger(pool.directory)
    before = reader.state()
    pool.spawn(3, 5, "any")
    pool.go()
    results = pool.finish()
    lines = pool.directory.joinpath("ledger.jsonl").read_text().splitlines()
    fresh = replay(json.loads(line) for line in lines)
    assert (codes(results), before.count(), reader.state(), reader.state().count()) == \
        ([0] * 3, 0, fresh, 15), outputs(results)


@pytest.mark.timeout(90)
def test_sigkilled_trial_holder_is_reaped_and_its_point_reissued(pool: Pool) -> None:
    ledger = Ledger(pool.directory)
    [holder] = pool.spawn(1, 1, "hold", 3, prefix="holder")
    pool.go()
    wait_for(pool.directory.joinpath("ready-holder0").exists)
    holder.send_signal(signal.SIGKILL)
    killed = holder.wait(30)
    running = ledger.state().running()
    fresh = ledger.reap(timeout=60)  # a short negative wait: the holder beat a moment ago
    reaped = wait_for(lambda: ledger.reap(timeout=0.2))
    finishers = pool.spawn(2, -1, "grid", 3, prefix="finisher")
    results = pool.finish(finishers)
    state = ledger.state()
    alive = sorted(t.point for t in state.trials if not t.dead)
    assert (killed, [t.index for t in running], fresh, [(t.index, t.state, t.dead) for t in reaped],
            codes(results), alive, state.trials[0].state) == \
        (-signal.SIGKILL, [0], [], [(0, TrialState.FAILED, True)], [0, 0], [0, 1, 2],
         TrialState.FAILED), outputs(results)


@pytest.mark.timeout(90)
def test_sigkilled_lock_holder_does_not_block_the_others(pool: Pool) -> None:
    [holder] = pool.spawn(1, 0, "lockhold", prefix="holder")
    pool.go()
    wait_for(pool.directory.joinpath("ready-holder0").exists)
    with pytest.raises(LedgerError, match="could not lock the ledger"):
        Ledger(pool.directory, lock_timeout=0.3).claim(grid(3), "blocked")  # short negative wait
    holder.send_signal(signal.SIGKILL)
    killed = holder.wait(30)
    trial = Ledger(pool.directory, lock_timeout=30).claim(grid(3), "after")
    assert (killed, trial.index, trial.point, Ledger(pool.directory).state().count()) == \
        (-signal.SIGKILL, 0, 0, 1)


@pytest.mark.timeout(90)
def test_verify_lock_script_finds_no_overlap(tmp_path: Path, lock_mode: str) -> None:
    proc = subprocess.run([sys.executable, str(VERIFY_LOCK), "local", str(tmp_path), "--procs", "4",
                           "--iterations", "15", "--mode", lock_mode],
                          capture_output=True, text=True, timeout=80)
    assert (proc.returncode, "no overlap" in proc.stdout) == (0, True), proc.stdout + proc.stderr


@pytest.mark.timeout(90)
def test_verify_lock_script_catches_a_missing_lock(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(VERIFY_LOCK), "local", str(tmp_path), "--procs", "4",
                           "--iterations", "10", "--hold", "0.01", "--mode", "none"],
                          capture_output=True, text=True, timeout=80)
    assert (proc.returncode, "overlap" in proc.stdout) == (1, True), proc.stdout + proc.stderr
