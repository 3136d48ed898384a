"""Real worker processes on one ledger: exact claims, no duplicates, no overshoot, no trace of a killed writer."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_sweep.ledger import Ledger, lock_poll, replay
from mlflow_sweep.trials import TrialState

from tests.ledger.ledger_workers import Pool, claimed, codes, log_events, outputs, races, wait_for

VERIFY = Path(__file__).resolve().parents[2] / "scripts" / "verify_ledger.py"


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
@pytest.mark.parametrize("lock", ["enosys", "enolck", "granted"])
def test_grid_is_exact_whatever_the_claim_lock_does(pool: Pool, lock: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_TEST_LOCK", lock)
    n, points = 4, 14
    pool.spawn(n, -1, "grid", points)
    pool.go()
    results = pool.finish()
    state = Ledger(pool.directory).state()
    assert (codes(results), claimed(results), sorted(t.point for t in state.trials), state.conflicts) == \
        ([0] * n, list(range(points)), list(range(points)), ()), outputs(results)


@pytest.mark.timeout(90)
def test_a_claim_lock_held_forever_costs_time_only(pool: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    pool.hold_lock()
    monkeypatch.setenv("LEDGER_TEST_LOCK_TIMEOUT", "0.2")
    n, points = 3, 9
    workers = pool.spawn(n, -1, "grid", points)
    pool.go()
    results = pool.finish(workers)
    state = Ledger(pool.directory, lock=False).state()
    assert (codes(results), claimed(results), sorted(t.point for t in state.trials)) == \
        ([0] * n, list(range(points)), list(range(points))), outputs(results)


@pytest.mark.timeout(90)
def test_the_claim_lock_orders_agents_on_one_host(pool: Pool) -> None:
    n, m = 4, 8
    pool.spawn(n, m, "any")
    pool.go()
    results = pool.finish()
    assert (codes(results), claimed(results), races(results)) == ([0] * n, list(range(n * m)), 0), outputs(results)


@pytest.mark.timeout(90)
def test_waiters_look_for_the_lock_rarely_only_in_a_long_queue() -> None:
    """Behind a slow holder (a GP fit, nothing published) a waiter keeps looking every 0.1 s;
    in a queue where hundreds of events pass during its wait, once a second."""
    assert [lock_poll(t, 0) for t in (0, 3, 6, 9, 50)] == [0.002, 0.016, 0.1, 0.1, 0.1]
    assert [lock_poll(50, n) for n in (5, 20, 50, 100, 500)] == [0.1, 0.2, 0.5, 1.0, 1.0]
    assert lock_poll(2, 500) == 0.008  # a waiter looks often at first, whatever the queue


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
    fresh = replay(log_events(pool.directory))
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
    [beat] = [a["beat"] for a in ledger.agents() if a["agent"] == "holder0"]
    # The reapers' clocks are driven: a minute of silence is not yet death, a second more is.
    fresh = Ledger(pool.directory, clock=lambda: beat + 59).reap(timeout=60)
    reaped = Ledger(pool.directory, clock=lambda: beat + 61).reap(timeout=60)
    finishers = pool.spawn(2, -1, "grid", 3, prefix="finisher")
    results = pool.finish(finishers)
    state = ledger.state()
    alive = sorted(t.point for t in state.trials if not t.dead)
    assert (killed, [t.index for t in running], fresh, [(t.index, t.state, t.dead) for t in reaped],
            codes(results), alive, state.trials[0].state) == \
        (-signal.SIGKILL, [0], [], [(0, TrialState.FAILED, True)], [0, 0], [0, 1, 2],
         TrialState.FAILED), outputs(results)


@pytest.mark.timeout(90)
def test_a_writer_killed_while_publishing_leaves_nothing_to_repair(pool: Pool) -> None:
    ledger = Ledger(pool.directory)
    [writer] = pool.spawn(1, -1, "any", prefix="killed")  # claims, starts and ends trials until killed
    pool.go()
    wait_for(lambda: ledger.state().count() >= 20)
    writer.send_signal(signal.SIGKILL)
    killed = writer.wait(30)
    before = ledger.state().count()
    results = pool.finish(pool.spawn(3, 4, "any", prefix="after"))
    state = Ledger(pool.directory).state()
    fresh = replay(log_events(pool.directory))
    assert (killed, codes(results), claimed(results), state.count(), state == fresh, state.conflicts) == \
        (-signal.SIGKILL, [0] * 3, list(range(before, before + 12)), before + 12, True, ()), outputs(results)


@pytest.mark.timeout(90)
def test_verify_ledger_script_finds_each_trial_once(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(VERIFY), "local", str(tmp_path), "--procs", "4",
                           "--iterations", "15"], capture_output=True, text=True, timeout=80)
    assert (proc.returncode, "60 claims by 4 processes on 1 host(s): each trial exactly once" in proc.stdout) == \
        (0, True), proc.stdout + proc.stderr


@pytest.mark.timeout(90)
def test_verify_ledger_script_catches_a_duplicate(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(VERIFY), "local", str(tmp_path), "--procs", "2", "--iterations", "3"],
                   capture_output=True, timeout=80, check=True)
    claims = sorted((tmp_path / "claims").iterdir())
    claims[1].write_text(json.dumps(json.loads(claims[1].read_text()) + [[0, 0]]))  # a second owner of trial 0
    proc = subprocess.run([sys.executable, str(VERIFY), "check", str(tmp_path)], capture_output=True, text=True,
                          timeout=80)
    assert (proc.returncode, "trial 0 claimed by" in proc.stdout) == (1, True), proc.stdout + proc.stderr
