"""Lifecycle events in the ledger: control, run_cap, requeue, and claims that re-run a point."""
from __future__ import annotations

from pathlib import Path

import pytest

from mlflow_sweep.errors import LedgerError
from mlflow_sweep.journal import Journal
from mlflow_sweep.ledger import Decision, Ledger, replay
from mlflow_sweep.trials import Controls, Proposal, SweepPhase, TrialState
from tests.ledger.test_replay import HEAD, claim, end

pytestmark = pytest.mark.timeout(30)


def control(state: str) -> dict:
    return {"event": "control", "state": state, "by": "me@here", "time": 5.0}


def requeue(*trials: int, reason: str = "retry") -> dict:
    return {"event": "requeue", "trials": list(trials), "reason": reason, "time": 6.0}


def test_the_last_control_and_run_cap_count() -> None:
    assert replay([HEAD]).controls == Controls()
    state = replay([HEAD, control("paused"), {"event": "run_cap", "run_cap": 4, "time": 1.0},
                    control("running"), control("stopped"), {"event": "run_cap", "run_cap": 7, "time": 2.0}])
    assert state.controls == Controls(SweepPhase.STOPPED, 7)


def test_an_interrupted_end_requeues_once_and_a_claim_carries_retry_of() -> None:
    state = replay([HEAD, claim(0), claim(1), claim(2), end(0, "KILLED", None, requeue="interrupted"),
                    end(1, "FAILED", None), requeue(0, 1, 2), {**claim(3), "retry_of": 0}])
    assert [(t.state, t.requeued, t.retry_of) for t in state.trials] == [
        (TrialState.KILLED, "interrupted", None),   # the first requeue wins
        (TrialState.FAILED, "retry", None),
        (TrialState.RUNNING, None, None),           # a running trial is not requeued
        (TrialState.RUNNING, None, 0)]


def test_a_requeue_on_an_end_that_lost_to_the_reaper_is_ignored() -> None:
    state = replay([HEAD, claim(0), {"event": "dead", "trial": 0, "last_beat": 0.5, "time": 3.0},
                    end(0, "KILLED", None, requeue="interrupted")])
    assert (state.trials[0].dead, state.trials[0].requeued) == (True, None)


@pytest.mark.parametrize(("events", "message"), [
    ([HEAD, control("finished")], "bad 'control' event \\(ValueError: 'finished' is not a valid SweepPhase\\)"),
    ([HEAD, control("done")], "a control event cannot ask for 'done'"),
    ([HEAD, {"event": "run_cap", "run_cap": 0, "time": 1.0}], "'run_cap' must be an integer of at least 1, but got 0"),
    ([HEAD, {"event": "run_cap", "run_cap": True, "time": 1.0}], "'run_cap' must be an integer of at least 1"),
    ([HEAD, requeue(0)], "trial 0 was never claimed"),
], ids=["unknown-control", "done-control", "zero-run-cap", "bool-run-cap", "unclaimed-requeue"])
def test_refusals(events: list, message: str) -> None:
    with pytest.raises(LedgerError, match=message):
        replay(events)


def written(ledger: Ledger) -> list[dict]:
    return [record.event for record in Journal(ledger.directory, 5.0).read(0)]


def test_commit_publishes_one_lifecycle_event_or_nothing(ledger_dir: Path) -> None:
    ledger = Ledger(ledger_dir)
    paused = ledger.commit(lambda s: Decision("asked", {"event": "control", "state": "paused", "by": "me"}))
    assert (paused.value, paused.state.controls.state, written(ledger)[-1]["time"] > 0) == \
        ("asked", SweepPhase.PAUSED, True)
    before = written(ledger)
    nothing = ledger.commit(lambda s: Decision(len(s.trials)))
    assert (nothing.value, nothing.event, nothing.state is ledger.state()) == (0, None, True)
    with pytest.raises(ValueError, match="commit publishes only"):
        ledger.commit(lambda s: Decision(None, {"event": "claim", "trial": 0, "params": {}}))
    assert written(ledger) == before


def test_an_interrupted_trial_ends_requeued_in_one_event_and_its_point_is_claimed_again(ledger_dir: Path) -> None:
    ledger = Ledger(ledger_dir)
    trial = ledger.claim(lambda s: Proposal({"x": 1}, point=0), "agent-a").trial
    assert ledger.complete(trial.index, TrialState.KILLED, None, requeue="interrupted")
    assert (written(ledger)[-1]["event"], written(ledger)[-1]["requeue"]) == ("end", "interrupted")
    again = ledger.claim(lambda s: Proposal({"x": 1}, point=0, retry_of=0), "agent-b").trial
    assert (again.index, again.retry_of, written(ledger)[-1]["retry_of"]) == (1, 0, 0)
    fresh = ledger.claim(lambda s: Proposal({"x": 2}, point=1), "agent-b").trial
    assert "retry_of" not in written(ledger)[-1] and fresh.retry_of is None
    assert [t.requeued for t in ledger.state().trials] == ["interrupted", None, None]
