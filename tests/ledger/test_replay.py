"""replay() is pure: events in, SweepState out, with the format's rules and clear refusals."""
from __future__ import annotations

import pytest

from mlflow_sweep.errors import LedgerError
from mlflow_sweep.ledger import FORMAT_VERSION, Conflict, SweepState, replay
from mlflow_sweep.replay import ConfigVersion
from mlflow_sweep.trials import Trial, TrialState

HEAD = {"event": "sweep", "v": 2, "time": 0.0, "header": {"config": {}, "seed": 1, "sweep_id": "s"}}


def claim(i: int, point: int | None = None, agent: str = "a", t: float = 1.0) -> dict:
    return {"event": "claim", "trial": i, "params": {"x": i}, "point": point, "agent": agent, "time": t}


def end(i: int, state: str = "FINISHED", metric: float | None = 1.0, t: float = 2.0, **extra) -> dict:
    return {"event": "end", "trial": i, "state": state, "metric": metric, "stopped_at": None, "time": t, **extra}


def dead(i: int, t: float = 3.0) -> dict:
    return {"event": "dead", "trial": i, "last_beat": 0.5, "time": t}


def test_a_header_alone_is_an_empty_sweep() -> None:
    assert replay([HEAD]) == SweepState(HEAD["header"], (), 2, configs=(ConfigVersion(1, {}),))


def test_events_build_trials_in_index_order() -> None:
    state = replay([HEAD, claim(0, 5), {"event": "start", "trial": 0, "run_id": "r0", "time": 1.5},
                    claim(1, 6, "b"), end(0, metric=0.25, stopped_at=2)])
    assert state.trials == (
        Trial(index=0, params={"x": 0}, state=TrialState.FINISHED, metric=0.25, point=5, run_id="r0",
              agent_id="a", started=1.0, ended=2.0, stopped_at=2),
        Trial(index=1, params={"x": 1}, point=6, agent_id="b", started=1.0),
    )


def test_first_terminal_event_wins() -> None:
    state = replay([HEAD, claim(0), claim(1), end(0, "KILLED", None), dead(0), dead(1), end(1, metric=9.0)])
    assert [(t.state, t.dead, t.metric, t.ended) for t in state.trials] == \
        [(TrialState.KILLED, False, None, 2.0), (TrialState.FAILED, True, None, 3.0)]


def test_history_round_trips_as_a_tuple() -> None:
    state = replay([HEAD, claim(0), claim(1), end(0, history=[3, 2.5, 1.0]), end(1)])
    assert [t.history for t in state.trials] == [(3.0, 2.5, 1.0), None]


def test_start_after_death_still_records_the_run() -> None:
    state = replay([HEAD, claim(0), dead(0), {"event": "start", "trial": 0, "run_id": "late", "time": 4.0}])
    assert (state.trials[0].state, state.trials[0].run_id) == (TrialState.FAILED, "late")


def test_a_claim_of_a_taken_or_skipped_index_is_a_conflict_and_the_first_claim_wins() -> None:
    events = [HEAD, claim(0, 5, "a"), claim(1, 6, "a"), claim(0, 7, "b"), claim(5, 8, "c"), claim(2, 9, "b"), end(0)]
    state = replay(events)
    assert (replay(events) == state, [(t.index, t.point, t.agent_id, t.state) for t in state.trials], state.conflicts) == \
        (True, [(0, 5, "a", TrialState.FINISHED), (1, 6, "a", TrialState.RUNNING), (2, 9, "b", TrialState.RUNNING)],
         (Conflict(0, "b", 3), Conflict(5, "c", 4)))


def test_a_v1_header_replays() -> None:
    state = replay([{**HEAD, "v": 1}, claim(0)])
    assert (state.version, state.count()) == (1, 1)


def test_unknown_event_kinds_are_skipped() -> None:
    assert replay([HEAD, {"event": "note", "time": 1.0, "text": "hi"}, claim(0)]).count() == 1


def test_state_helpers() -> None:
    state = replay([HEAD, *(claim(i) for i in range(5)), end(0), end(1, "FAILED", None), end(2, "KILLED"), dead(3)])
    assert (state.count(), state.count(TrialState.FAILED), state.count(TrialState.FAILED, TrialState.KILLED),
            [t.index for t in state.running()], [t.index for t in state.finished()],
            [t.index for t in state.terminal()]) == (5, 2, 3, [4], [0], [0, 1, 2, 3])


@pytest.mark.parametrize(("events", "message"), [
    ([], "no sweep header"),
    ([claim(0)], "event 1: the first event must be the sweep header, but got 'claim'"),
    ([HEAD, HEAD], "event 2: a second sweep header"),
    ([{**HEAD, "v": FORMAT_VERSION + 1}], f"format v{FORMAT_VERSION + 1} is newer than this mlflow-sweep reads .*upgrade"),
    ([HEAD, end(0)], "event 2: trial 0 was never claimed"),
    ([HEAD, claim(0), end(0, "RUNNING")], "must carry a terminal state"),
    ([HEAD, claim(0), end(0, "DONE")], "bad 'end' event \\(ValueError: 'DONE' is not a valid TrialState\\)"),
    ([HEAD, {"event": "claim", "trial": 0, "time": 1.0}], "bad 'claim' event \\(KeyError: 'params'\\)"),
    ([HEAD, {**claim(0), "trial": True}], "'trial' must be a non-negative integer, but got True"),
    ([HEAD, ["not", "an", "object"]], "event 2: an event must be a JSON object"),
], ids=["empty", "no-header", "two-headers", "newer", "unclaimed",
        "running-end", "unknown-state", "missing-key", "bool-index", "not-object"])
def test_refusals(events: list, message: str) -> None:
    with pytest.raises(LedgerError, match=message):
        replay(events)
