"""The sweep's lifecycle end to end: real agent processes, the real CLI, a real sqlite store.

Trials that must still be running when a command lands wait for a release file, so no test
depends on how fast this machine is; every wait polls a condition with a generous timeout.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.agents import agents, child_runs, init_sweep, kill_group, ledger_events, logs, poll, start_agent, wait_all

pytestmark = [pytest.mark.e2e]

# A trial that runs until the test creates release-<trial> (or release-all).
HOLD = ('touch started-$MLFLOW_SWEEP_TRIAL; '
        'while [ ! -e release-$MLFLOW_SWEEP_TRIAL ] && [ ! -e release-all ]; do sleep 0.1; done')
RANDOM = {"method": "random", "parameters": {"x": {"min": 0.0, "max": 1.0}}}


def _started(store) -> set[int]:
    return {int(p.name.split("-", 1)[1]) for p in store.root.glob("started-*")}


def _after(events: list[dict], kind: str) -> list[dict]:
    """The events after the last lifecycle event of ``kind`` (e.g. the control event a command wrote)."""
    last = max(i for i, e in enumerate(events) if e["event"] == kind)
    return events[last + 1:]


def _ended(store, sweep_id: str) -> dict[int, str]:
    return {e["trial"]: e["state"] for e in ledger_events(store, sweep_id) if e["event"] == "end"}


def _parent(store, sweep_id: str) -> tuple[str, str]:
    run = store.client().get_run(sweep_id)
    return run.info.status, run.data.tags.get("sweep.state")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_stop_lets_running_trials_finish_claims_nothing_more_and_agents_exit_0(store):
    sweep_id = init_sweep(store, {**RANDOM, "run_cap": 50, "command": HOLD})
    with agents(store, sweep_id, 2) as procs:
        poll(lambda: len(_started(store)) == 2, timeout=120)
        stop = store.cli("stop", "--sweep-id", sweep_id, check=True)
        (store.root / "release-all").touch()
        codes = wait_all(procs, timeout=120)
    events = ledger_events(store, sweep_id)
    claimed_after = [e for e in _after(events, "control") if e["event"] == "claim"]
    runs = child_runs(store, sweep_id)
    assert (codes, claimed_after, Counter(r.info.status for r in runs)) == ([0, 0], [], Counter(FINISHED=2)), logs(store)
    assert "stopped: no new trial starts; running trials finish and agents exit (2 trials running now)" in stop.stdout
    assert logs(store).count("agent done: the sweep is stopped; ran 1 trial, 0 failed") == 2, logs(store)
    assert _parent(store, sweep_id) == ("FINISHED", "stopped")

    again = store.cli("run", "--sweep-id", sweep_id)
    assert (again.returncode, len(child_runs(store, sweep_id))) == (0, 2), again.stderr
    assert "agent done: the sweep is stopped; ran 0 trials" in again.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cancel_kills_running_trials_within_seconds_and_they_are_final(store):
    sweep_id = init_sweep(store, {**RANDOM, "run_cap": 50, "command": "touch started-$MLFLOW_SWEEP_TRIAL; sleep 300"})
    with agents(store, sweep_id, 2) as procs:
        poll(lambda: len(_started(store)) == 2, timeout=120)
        store.cli("cancel", "--sweep-id", sweep_id, check=True)
        cancelled = time.monotonic()
        poll(lambda: len(_ended(store, sweep_id)) == 2, timeout=60)
        took = time.monotonic() - cancelled
        codes = wait_all(procs, timeout=60)
    runs = child_runs(store, sweep_id)
    events = ledger_events(store, sweep_id)
    assert (codes, sorted(r.info.status for r in runs)) == ([0, 0], ["KILLED", "KILLED"]), logs(store)
    assert {r.data.tags.get("sweep.killed_by") for r in runs} == {"cancel"}
    # final: nothing requeued, nothing claimed after the two trials
    assert ([e for e in events if e["event"] == "claim"][2:], [e for e in events if "requeue" in e]) == ([], [])
    assert took < 30, f"cancel took {took:.1f} s to reach the running trials"  # seconds, on a loaded 2-core machine
    assert logs(store).count("agent done: the sweep is cancelled") == 2, logs(store)
    assert _parent(store, sweep_id) == ("KILLED", "cancelled")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_pause_holds_live_agents_and_resume_completes_run_cap_exactly(store):
    command = f'if [ "$MLFLOW_SWEEP_TRIAL" -lt 2 ]; then {HOLD}; fi'
    sweep_id = init_sweep(store, {**RANDOM, "run_cap": 5, "command": command})
    with agents(store, sweep_id, 2) as procs:
        poll(lambda: _started(store) == {0, 1}, timeout=120)
        store.cli("pause", "--sweep-id", sweep_id, check=True)
        (store.root / "release-all").touch()
        poll(lambda: len(_ended(store, sweep_id)) == 2, timeout=60)
        time.sleep(3)  # a short negative wait: nothing is claimed while paused, and the agents wait
        held = ([p.poll() for p in procs], len(child_runs(store, sweep_id)), _parent(store, sweep_id))
        status = store.cli("status", "--sweep-id", sweep_id, check=True).stdout
        store.cli("resume", "--sweep-id", sweep_id, check=True)
        codes = wait_all(procs, timeout=120)
    runs = child_runs(store, sweep_id)
    assert held == ([None, None], 2, ("RUNNING", "paused")), logs(store)
    assert "State: paused" in status
    assert (codes, sorted(int(r.data.tags["sweep.trial"]) for r in runs)) == ([0, 0], [0, 1, 2, 3, 4]), logs(store)
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert logs(store).count("waiting: the sweep is paused") == 2, logs(store)
    assert _parent(store, sweep_id) == ("FINISHED", "done")


GRID_HANG_FIRST = {
    "method": "grid",
    # The first trial hangs, so its agent is surely interrupted mid-trial; its re-run does not.
    "command": 'echo x=${x}; if [ "$MLFLOW_SWEEP_TRIAL" = 0 ]; then echo $$ > victim.pgid; sleep 300; fi',
    "parameters": {"x": {"values": [0, 1, 2, 3]}},
}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_sigtermed_grid_point_is_run_again_by_another_agent(store):
    sweep_id = init_sweep(store, GRID_HANG_FIRST)
    victim = start_agent(store, sweep_id, log=store.root / "agent-victim.log")
    try:
        poll(lambda: (store.root / "victim.pgid").exists(), timeout=120)
        with agents(store, sweep_id, 1) as [other]:
            # the other agent runs points 1-3, then waits: point 0 is held by the running trial
            poll(lambda: len(_ended(store, sweep_id)) == 3, timeout=120)
            assert other.poll() is None, logs(store)
            victim.send_signal(signal.SIGTERM)
            codes = [victim.wait(timeout=60), other.wait(timeout=120)]
    finally:
        victim.kill()
        victim.wait()
        kill_group(int((store.root / "victim.pgid").read_text()))
    runs = {int(r.data.tags["sweep.trial"]): r for r in child_runs(store, sweep_id)}
    finished = Counter(r.data.params["x"] for r in runs.values() if r.info.status == "FINISHED")
    requeues = [(e["trial"], e["requeue"]) for e in ledger_events(store, sweep_id) if e["event"] == "end" and "requeue" in e]
    assert (codes, finished, requeues) == ([128 + signal.SIGTERM, 0], Counter("0123"), [(0, "interrupted")]), logs(store)
    assert (runs[0].info.status, runs[0].data.tags["sweep.killed_by"]) == ("KILLED", "SIGTERM")
    assert (len(runs), runs[4].data.params["x"], runs[4].data.tags["sweep.retry_of"]) == (5, "0", "0")
    assert "trial 0 ended KILLED (its point is handed out again)" in logs(store)
    assert _parent(store, sweep_id) == ("FINISHED", "done")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_an_interrupted_random_trial_does_not_count_and_runs_again_with_its_exact_values(store):
    sweep_id = init_sweep(store, {**RANDOM, "run_cap": 2, "seed": 3,
                                  "command": 'echo x=${x}; [ "$MLFLOW_SWEEP_TRIAL" != 0 ] || sleep 300'})
    victim = start_agent(store, sweep_id, log=store.root / "agent-victim.log")
    try:
        poll(lambda: any(e["event"] == "start" for e in ledger_events(store, sweep_id)), timeout=120)
        victim.send_signal(signal.SIGINT)
        code = victim.wait(timeout=60)
    finally:
        victim.kill()
        victim.wait()
    proc = store.cli("run", "--sweep-id", sweep_id, timeout=200)
    runs = {int(r.data.tags["sweep.trial"]): r for r in child_runs(store, sweep_id)}
    assert (code, proc.returncode, sorted(runs)) == (128 + signal.SIGINT, 0, [0, 1, 2]), logs(store) + proc.stderr
    assert [runs[i].info.status for i in range(3)] == ["KILLED", "FINISHED", "FINISHED"]
    assert runs[1].data.params == runs[0].data.params and runs[1].data.tags["sweep.retry_of"] == "0"
    assert "sweep.retry_of" not in runs[2].data.tags and runs[2].data.params != runs[0].data.params
    assert runs[0].data.tags["sweep.killed_by"] == "SIGINT"


@pytest.mark.timeout(300)
def test_retry_turns_a_fixed_failure_into_a_finished_point_with_one_extra_trial(store):
    sweep_id = init_sweep(store, {"method": "grid", "command": 'echo ${x}; [ ${x} != 2 ] || [ -e fixed ]',
                                  "parameters": {"x": {"values": [1, 2, 3]}}})
    first = store.cli("run", "--sweep-id", sweep_id, timeout=200)
    before = _parent(store, sweep_id)
    (store.root / "fixed").touch()
    retry = store.cli("retry", "--sweep-id", sweep_id, check=True)
    reopened = _parent(store, sweep_id)
    second = store.cli("run", "--sweep-id", sweep_id, timeout=200)
    runs = {int(r.data.tags["sweep.trial"]): r for r in child_runs(store, sweep_id)}
    assert (first.returncode, second.returncode, sorted(runs)) == (0, 0, [0, 1, 2, 3]), first.stderr + second.stderr
    assert [(runs[i].data.params["x"], runs[i].info.status) for i in range(4)] == \
        [("1", "FINISHED"), ("2", "FAILED"), ("3", "FINISHED"), ("2", "FINISHED")]
    assert runs[3].data.tags["sweep.retry_of"] == "1"
    assert "1 failed trial (#1) will run again before new ones" in retry.stdout
    assert (before, reopened, _parent(store, sweep_id)) == \
        (("FINISHED", "done"), ("RUNNING", "running"), ("FINISHED", "done"))
    assert "no failed trials to retry" in store.cli("retry", "--sweep-id", sweep_id, check=True).stdout


@pytest.mark.timeout(300)
def test_update_run_cap_extends_a_done_sweep_by_exactly_the_difference(store):
    sweep_id = init_sweep(store, {**RANDOM, "run_cap": 2, "command": "echo ${x}"})
    store.cli("run", "--sweep-id", sweep_id, check=True, timeout=200)
    done = _parent(store, sweep_id)
    update = store.cli("update", "--sweep-id", sweep_id, "--run-cap", "5", check=True)
    reopened = _parent(store, sweep_id)
    proc = store.cli("run", "--sweep-id", sweep_id, check=True, timeout=200)
    trials = sorted(int(r.data.tags["sweep.trial"]) for r in child_runs(store, sweep_id))
    assert (done, reopened, _parent(store, sweep_id)) == \
        (("FINISHED", "done"), ("RUNNING", "running"), ("FINISHED", "done"))
    assert (trials, "run_cap 2 -> 5" in update.stdout) == ([0, 1, 2, 3, 4], True), update.stdout
    assert "agent done: run_cap 5 reached; ran 3 trials" in proc.stderr
    bad = store.cli("update", "--sweep-id", sweep_id, "--run-cap", "0")
    assert (bad.returncode, "--run-cap must be a whole number of at least 1" in bad.stderr) == (2, True)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_four_agents_racing_a_stop_claim_nothing_after_it(store):
    sweep_id = init_sweep(store, {**RANDOM, "run_cap": 100000, "command": "true"})
    with agents(store, sweep_id, 4) as procs:
        poll(lambda: sum(e["event"] == "claim" for e in ledger_events(store, sweep_id)) >= 12, timeout=180)
        store.cli("stop", "--sweep-id", sweep_id, check=True)
        codes = wait_all(procs, timeout=120)
    events = ledger_events(store, sweep_id)
    claims = [e["trial"] for e in events if e["event"] == "claim"]
    claimed_after = [e for e in _after(events, "control") if e["event"] == "claim"]
    ends = _ended(store, sweep_id)
    assert (codes, claimed_after) == ([0] * 4, []), logs(store)
    assert (sorted(ends), set(ends.values()), len(child_runs(store, sweep_id))) == \
        (claims, {"FINISHED"}, len(claims)), logs(store)


@pytest.mark.parametrize("command", [["stop"], ["pause"], ["resume"], ["cancel"], ["retry"],
                                     ["update", "--run-cap", "3"]], ids=lambda c: c[0])
def test_every_lifecycle_command_on_an_unknown_sweep_is_a_clear_error_that_writes_nothing(store, command):
    sweep_id = init_sweep(store, {**RANDOM, "run_cap": 2, "command": "echo ${x}"})
    ledger = Path(store.client().get_run(sweep_id).data.tags["sweep.ledger_dir"]) / "ledger.jsonl"
    before = (ledger.read_bytes(), _parent(store, sweep_id))
    proc = store.cli(*command, "--sweep-id", "0123456789abcdef")
    assert (proc.returncode, "Traceback" in proc.stderr) == (1, False), proc.stderr
    assert "no sweep with ID '0123456789abcdef'" in proc.stderr
    assert (ledger.read_bytes(), _parent(store, sweep_id)) == before
    runs = store.client().search_runs([store.client().get_run(sweep_id).info.experiment_id])
    assert [r.info.run_id for r in runs] == [sweep_id]


def test_the_python_functions_return_what_they_did(store):
    sweep_id = init_sweep(store, {**RANDOM, "run_cap": 2, "command": "echo ${x}"})
    code = ("import sys, mlflow_sweep as ms\n"
            "for r in (ms.pause(sys.argv[1]), ms.pause(sys.argv[1]), ms.resume(), ms.update(run_cap=4), ms.stop()):\n"
            "    print(r.state, r.changed, r.sweep_id == sys.argv[1])\n")
    proc = subprocess.run([sys.executable, "-c", code, sweep_id], cwd=store.root, env=store.env,
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.splitlines() == ["paused True True", "paused False True", "running True True",
                                        "running True True", "stopped True True"], proc.stderr


def _in_process_agent(tmp_path: Path, monkeypatch, control: str, runner=None):
    """An agent object on a real ledger in tmp_path (no MLflow), its sweep in ``control`` state."""
    from mlflow_sweep import agent_loop
    from mlflow_sweep.config import config_from_dict
    from mlflow_sweep.ledger import Decision, Ledger
    from mlflow_sweep.lifecycle import OpenSweep
    from mlflow_sweep.tracking import Sweep

    monkeypatch.setenv("MLFLOW_SWEEP_POLL_INTERVAL", "0.02")
    config = config_from_dict({**RANDOM, "run_cap": 3, "command": "true"}, "sweep.yaml")
    directory = tmp_path / "sweep"
    Ledger.create(directory, {"config": config.raw, "seed": 1, "sweep_id": "s"})
    Ledger(directory).commit(lambda state: Decision(None, {"event": "control", "state": control}))
    said: list[str] = []
    agent = agent_loop._Agent(OpenSweep(Sweep("s", "0", "n", "sqlite://", directory), Ledger(directory), config, 1),
                              runner=runner, say=said.append)  # type: ignore[arg-type]
    monkeypatch.setattr(agent, "say", said.append)
    return agent, said


@pytest.mark.timeout(60)
def test_a_cancel_that_lands_before_the_command_starts_still_ends_the_trial_killed(tmp_path, monkeypatch):
    """In process: the runner had no process to interrupt yet, but ends the trial at launch (stop is set)."""
    import shutil

    from mlflow_sweep.trials import TrialState

    class NotLaunchedYet:
        def interrupt(self) -> bool:
            return False

    agent, said = _in_process_agent(tmp_path, monkeypatch, "cancelled", NotLaunchedYet())
    try:
        with agent._watching(0, "run-0"):
            seen = agent.stop.wait(30)
    finally:
        shutil.rmtree(agent.scratch, ignore_errors=True)
    assert (seen, agent._outcome(143)) == (True, (TrialState.KILLED, None, {"sweep.killed_by": "cancel"}))
    assert said == ["the sweep was cancelled: stopping trial 0"]


@pytest.mark.timeout(60)
def test_a_paused_agent_only_reads_until_resume_then_claims(tmp_path, monkeypatch):
    """In process: while paused, the agent tries to claim once, then only reads the ledger every poll."""
    import shutil
    import threading

    from mlflow_sweep.ledger import Decision, Ledger

    agent, said = _in_process_agent(tmp_path, monkeypatch, "paused")
    directory = agent.ledger.directory
    holds: list[str] = []
    real_claim = agent.ledger.claim
    monkeypatch.setattr(agent.ledger, "claim",
                        lambda *a: (holds.append(threading.current_thread().name), real_claim(*a))[1])
    reads: list[int] = []
    real_state = agent.ledger.state
    monkeypatch.setattr(agent.ledger, "state", lambda: (reads.append(1), real_state())[1])
    claimed: list = []
    thread = threading.Thread(target=lambda: claimed.append(agent._claim()), name="agent")
    try:
        thread.start()
        poll(lambda: said, timeout=30)
        time.sleep(1.0)  # about 50 polls
        paused = (holds.count("agent"), thread.is_alive(), len(reads) >= 5)
        Ledger(directory).commit(lambda state: Decision(None, {"event": "control", "state": "running"}))
        thread.join(timeout=30)
    finally:
        shutil.rmtree(agent.scratch, ignore_errors=True)
    assert paused == (1, True, True)
    assert said == ["waiting: the sweep is paused (mlflow sweep resume goes on)"]
    assert (claimed[0].index, holds.count("agent")) == (0, 2)
