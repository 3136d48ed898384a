"""The ledger on disk: creation, events, v1 files with torn tails, corruption, incremental reads, heartbeats, reaping."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.ledger.ledger_workers import HEADER, log_events
from mlflow_sweep.errors import LedgerError
from mlflow_sweep.journal import Journal, event_name
from mlflow_sweep.ledger import Conflict, Ledger, replay
from mlflow_sweep.trials import DONE, Proposal, TrialState

pytestmark = pytest.mark.timeout(30)


def take(state):
    """A decide that always proposes one more trial."""
    return Proposal({"n": len(state.trials)})


def files(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (relative name → bytes), heartbeats and the claim lock's file excluded."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file() and p.parent.name != "agents" and p.name != "ledger.lock"}


V1_HEADER = {"event": "sweep", "v": 1, "time": 1.0, "header": HEADER}


def v1_ledger(directory: Path, claims: int, tail: bytes = b"") -> Path:
    """A ledger as format v1 wrote it: every event in ledger.jsonl, maybe a torn last line."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [V1_HEADER] + [{"event": "claim", "trial": i, "params": {"n": i}, "point": None, "agent": "old",
                            "time": 2.0 + i} for i in range(claims)]
    (directory / "ledger.jsonl").write_bytes(b"".join(json.dumps(e).encode() + b"\n" for e in lines) + tail)
    return directory


def test_create_writes_only_the_header(ledger_dir: Path) -> None:
    ledger = Ledger(ledger_dir)
    [header] = log_events(ledger_dir)
    assert (header["event"], header["v"], header["header"], ledger.state().header, ledger.state().trials,
            sorted(files(ledger_dir)), list((ledger_dir / "events").iterdir())) == \
        ("sweep", 3, HEADER, HEADER, (), ["ledger.jsonl"], [])


def test_create_refuses_an_existing_ledger(ledger_dir: Path) -> None:
    before = (ledger_dir / "ledger.jsonl").read_bytes()
    with pytest.raises(LedgerError, match="already exists"):
        Ledger.create(ledger_dir, {"other": True})
    assert (ledger_dir / "ledger.jsonl").read_bytes() == before


def test_missing_ledger_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match=r"ledger.jsonl: no ledger here"):
        Ledger(tmp_path).state()


def test_claim_start_complete_round_trip(ledger_dir: Path) -> None:
    ledger = Ledger(ledger_dir)
    trial = ledger.claim(lambda s: Proposal({"lr": 0.1, "layers": 2}, point=4), "agent-1").trial
    ledger.start(trial.index, "run-a")
    first = ledger.complete(trial.index, TrialState.FINISHED, 0.25, stopped_at=3)
    second = ledger.complete(trial.index, TrialState.FAILED, None)
    done = ledger.claim(lambda s: DONE, "agent-1").trial
    [final] = ledger.state().trials
    assert (trial.index, trial.state, trial.point, trial.agent_id, first, second, done,
            final.state, final.metric, final.run_id, final.stopped_at, final.params,
            final.started <= final.ended) == \
        (0, TrialState.RUNNING, 4, "agent-1", True, False, None,
         TrialState.FINISHED, 0.25, "run-a", 3, {"lr": 0.1, "layers": 2}, True)


def test_unknown_trial_and_bad_proposals_write_nothing(ledger_dir: Path) -> None:
    ledger = Ledger(ledger_dir)
    before = files(ledger_dir)
    with pytest.raises(LedgerError, match="trial 5 is not in the ledger"):
        ledger.complete(5, TrialState.FINISHED, 1.0)
    not_a_proposal = ledger.claim(lambda s: {"x": 1}, "a")
    with pytest.raises(TypeError, match="not JSON serializable"):
        ledger.claim(lambda s: Proposal({"x": object()}), "a")
    with pytest.raises(ValueError, match="terminal"):
        ledger.complete(0, TrialState.RUNNING, None)
    assert (not_a_proposal.value, not_a_proposal.trial, files(ledger_dir) == before) == ({"x": 1}, None, True)


def test_numpy_scalars_are_stored_as_plain_numbers(ledger_dir: Path) -> None:
    np = pytest.importorskip("numpy")
    trial = Ledger(ledger_dir).claim(lambda s: Proposal({"x": np.int64(3), "y": np.float32(0.5)}), "a").trial
    assert (trial.params, type(trial.params["x"])) == ({"x": 3, "y": 0.5}, int)


def test_a_v1_torn_tail_is_ignored_and_the_file_never_written_again(tmp_path: Path) -> None:
    directory = v1_ledger(tmp_path / "v1", 2, tail=b'{"event": "claim", "trial": 2, "par')
    before = (directory / "ledger.jsonl").read_bytes()
    ledger = Ledger(directory)
    seen = ledger.state().count()
    trial = ledger.claim(take, "new").trial
    ledger.complete(trial.index, TrialState.FINISHED, 1.0)
    assert (seen, trial.index, Ledger(directory).state().count(), (directory / "ledger.jsonl").read_bytes() == before,
            sorted(p.name for p in (directory / "events").iterdir())) == \
        (2, 2, 3, True, [event_name(3), event_name(4)])


def test_a_v1_file_cut_anywhere_still_replays(tmp_path: Path) -> None:
    directory = v1_ledger(tmp_path / "v1", 3)
    data = (directory / "ledger.jsonl").read_bytes()
    header_end = data.index(b"\n") + 1
    counts = []
    for cut in range(header_end, len(data) + 1):
        (directory / "ledger.jsonl").write_bytes(data[:cut])
        counts.append(Ledger(directory).state().count())
    assert (counts[0], counts[-1], counts == sorted(counts)) == (0, 3, True)


def test_an_older_agent_writing_to_a_continued_v1_ledger_is_refused(tmp_path: Path) -> None:
    directory = v1_ledger(tmp_path / "v1", 2)
    Ledger(directory).claim(take, "new")  # event 3 goes to events/
    with open(directory / "ledger.jsonl", "ab") as f:  # an agent of the old version appends claim 2 again
        f.write(json.dumps({"event": "claim", "trial": 2, "params": {}, "agent": "old", "time": 9.0}).encode() + b"\n")
    with pytest.raises(LedgerError, match="older mlflow-sweep .* every agent of a sweep must run the same"):
        Ledger(directory).state()


def test_corrupt_middle_line_names_the_line_and_changes_nothing(tmp_path: Path) -> None:
    directory = v1_ledger(tmp_path / "v1", 3)
    path = directory / "ledger.jsonl"
    lines = path.read_bytes().split(b"\n")
    lines[2] = b'{"event": "claim", "trial": 1, "params": {"n": 1}, "agent": "a", "ti\x00me": oops}'
    path.write_bytes(b"\n".join(lines))
    damaged = files(directory)
    messages = []
    ledger = Ledger(directory)
    for action in (Ledger(directory).state, lambda: Ledger(directory).claim(take, "b"), ledger.state, ledger.state):
        with pytest.raises(LedgerError) as info:
            action()
        messages.append(str(info.value))
    assert (files(directory) == damaged, {m.split(": ", 1)[0] for m in messages},
            all("not a JSON line" in m and "by hand" in m for m in messages)) == \
        (True, {f"{path}:3"}, True), messages


def test_an_event_that_does_not_fit_names_its_file_every_time(ledger_dir: Path) -> None:
    ledger = Ledger(ledger_dir)
    ledger.claim(take, "a")
    (ledger_dir / "events" / event_name(2)).write_text(json.dumps({"event": "end", "trial": 5, "state": "FINISHED",
                                                                  "metric": None, "time": 1.0}) + "\n")
    expected = rf"events/{event_name(2)}: trial 5 was never claimed"
    with pytest.raises(LedgerError, match=expected):
        Ledger(ledger_dir).state()
    with pytest.raises(LedgerError, match=expected):
        ledger.state()
    with pytest.raises(LedgerError, match=expected):
        ledger.state()


def test_conflicting_claims_resolve_deterministically_and_agents_go_on(ledger_dir: Path) -> None:
    ledger = Ledger(ledger_dir)
    first = ledger.claim(take, "winner").trial
    ledger.start(first.index, "run-w")
    duplicate = {"event": "claim", "trial": 0, "params": {"n": 0}, "point": None, "agent": "loser", "time": 5.0}
    (ledger_dir / "events" / event_name(3)).write_text(json.dumps(duplicate) + "\n")  # injected by hand
    after = ledger.claim(take, "loser").trial
    ledger.complete(after.index, TrialState.FINISHED, 2.0)
    states = [Ledger(ledger_dir).state(), ledger.state(), replay(log_events(ledger_dir))]
    assert all(state == states[0] for state in states)
    assert ((after.index, after.agent_id), states[0].conflicts,
            [(t.index, t.agent_id, t.run_id, t.state) for t in states[0].trials]) == \
        ((1, "loser"), (Conflict(trial=0, agent="loser", event=3),),
         [(0, "winner", "run-w", TrialState.RUNNING), (1, "loser", None, TrialState.FINISHED)])


def test_a_lost_race_decides_again_on_the_winners_event(ledger_dir: Path) -> None:
    mine, other = Ledger(ledger_dir, lock=False), Ledger(ledger_dir, lock=False)  # the lock would order them
    calls = []

    def decide(state):
        calls.append(state.count())
        if len(calls) == 1:
            other.claim(take, "other")  # publishes number 1 between our read and our publish
        return Proposal({"seen": state.count()})

    trial = mine.claim(decide, "mine").trial
    assert (calls, trial.index, trial.params, [t.agent_id for t in Ledger(ledger_dir).state().trials]) == \
        ([0, 1], 1, {"seen": 1}, ["other", "mine"])


def test_a_link_that_failed_but_happened_counts_as_published(ledger_dir: Path) -> None:
    journal = Journal(ledger_dir)
    ours = b'{"event": "note", "time": 1.0}\n'
    (ledger_dir / "events" / event_name(1)).write_bytes(ours)  # as if a retried link() had succeeded before
    won = journal.publish(1, ours)
    (ledger_dir / "events" / event_name(2)).write_bytes(b'{"event": "note", "time": 2.0}\n')  # someone else's
    lost = journal.publish(2, b'{"event": "note", "time": 3.0}\n')
    assert (won, lost, [r.event["time"] for r in journal.read(1)]) == (True, False, [1.0, 2.0])


def test_state_reads_only_new_events(ledger_dir: Path) -> None:
    reader, writer = Ledger(ledger_dir), Ledger(ledger_dir)
    trial = writer.claim(take, "a").trial
    writer.complete(trial.index, TrialState.FINISHED, 0.5)
    reader.state()
    end = ledger_dir / "events" / event_name(2)  # rewrite an old event in place: only a fresh reader sees it
    end.write_bytes(end.read_bytes().replace(b'"metric": 0.5', b'"metric": 0.7'))
    writer.claim(take, "a")
    assert (reader.state().trials[0].metric, Ledger(ledger_dir).state().trials[0].metric,
            reader.state().count()) == (0.5, 0.7, 2)


def test_state_is_the_same_object_until_something_changes(ledger_dir: Path) -> None:
    ledger = Ledger(ledger_dir)
    first, second = ledger.state(), ledger.state()
    ledger.claim(take, "a")
    assert (first is second, ledger.state() is first, ledger.state().count()) == (True, False, 1)


def test_heartbeats_are_atomic_files_listed_by_agents(ledger_dir: Path) -> None:
    ledger = Ledger(ledger_dir, clock=lambda: 1000.0)
    ledger.heartbeat("node1-42", {"host": "node1", "pid": 42})
    ledger.heartbeat("node2-7", {"host": "node2", "pid": 7})
    ledger.heartbeat("node1-42", {"host": "node1", "pid": 42, "trial": 3})
    (ledger_dir / "agents" / "broken.json").write_text("{")
    names = sorted(p.name for p in (ledger_dir / "agents").iterdir())
    assert (ledger.agents(), names) == (
        [{"host": "node1", "pid": 42, "trial": 3, "agent": "node1-42", "beat": 1000.0},
         {"host": "node2", "pid": 7, "agent": "node2-7", "beat": 1000.0}],
        ["broken.json", "node1-42.json", "node2-7.json"])


def test_agent_ids_cannot_escape_the_agents_directory(ledger_dir: Path) -> None:
    with pytest.raises(LedgerError, match="agent id"):
        Ledger(ledger_dir).heartbeat("../ledger", {})


def test_reap_uses_the_last_beat_or_the_claim_time(ledger_dir: Path) -> None:
    clock = [1000.0]
    ledger = Ledger(ledger_dir, clock=lambda: clock[0])
    silent = ledger.claim(take, "silent").trial        # never beats: judged by its claim time
    beating = ledger.claim(take, "beating").trial
    finished = ledger.claim(take, "silent").trial
    ledger.complete(finished.index, TrialState.FINISHED, 1.0)
    clock[0] = 1100.0
    ledger.heartbeat("beating", {})
    clock[0] = 1110.0
    none_yet = ledger.reap(timeout=120)
    clock[0] = 1125.0
    reaped = ledger.reap(timeout=120)
    late = ledger.complete(silent.index, TrialState.FINISHED, 9.0)  # the agent lost the race: ignored
    clock[0] = 1100.0 + 121
    reaped_later = ledger.reap(timeout=120)
    state = ledger.state()
    assert (none_yet, [(t.index, t.state, t.dead, t.ended) for t in reaped], late,
            [t.index for t in reaped_later], [(t.state, t.dead, t.metric) for t in state.trials]) == \
        ([], [(silent.index, TrialState.FAILED, True, 1125.0)], False, [beating.index],
         [(TrialState.FAILED, True, None), (TrialState.FAILED, True, None),
          (TrialState.FINISHED, False, 1.0)])


def test_reap_writes_nothing_when_nothing_is_stale(ledger_dir: Path) -> None:
    ledger = Ledger(ledger_dir)
    ledger.claim(take, "a")
    before = files(ledger_dir)
    assert (ledger.reap(timeout=60), files(ledger_dir) == before) == ([], True)


def test_an_unreadable_heartbeat_is_no_evidence_of_silence(ledger_dir: Path) -> None:
    clock = [1000.0]
    ledger = Ledger(ledger_dir, clock=lambda: clock[0])
    trial = ledger.claim(take, "busy").trial
    ledger.heartbeat("busy", {})
    (ledger_dir / "agents" / "busy.json").write_text('{"agent": "bu')  # read mid-replace by a caching client
    clock[0] = 1200.0
    spared = ledger.reap(timeout=120)
    ledger.heartbeat("busy", {})
    clock[0] = 1500.0
    assert (spared, [t.index for t in ledger.reap(timeout=120)]) == ([], [trial.index])


def test_replay_of_the_file_equals_the_ledger_state(ledger_dir: Path) -> None:
    ledger = Ledger(ledger_dir)
    for i in range(4):
        trial = ledger.claim(take, "a").trial
        ledger.start(trial.index, f"r{i}")
        if i % 2:
            ledger.complete(trial.index, TrialState.KILLED, None)
    assert replay(log_events(ledger_dir)) == ledger.state() == Ledger(ledger_dir).state()


def test_writing_to_a_missing_ledger_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="no ledger here"):
        Ledger(tmp_path / "typo" / "sweep", timeout=1).claim(take, "a")
    assert list(tmp_path.iterdir()) == []


def test_claims_need_an_agent_id_that_can_have_a_heartbeat_file(ledger_dir: Path) -> None:
    with pytest.raises(LedgerError, match="agent id"):
        Ledger(ledger_dir).claim(take, "node 1/agent")


def test_export_writes_the_whole_log_as_one_file_that_replays(ledger_dir: Path, tmp_path: Path) -> None:
    ledger = Ledger(ledger_dir)
    trial = ledger.claim(take, "a").trial
    ledger.complete(trial.index, TrialState.FINISHED, 0.5)
    copy = ledger.export(tmp_path / "copy.jsonl")
    lines = copy.read_bytes().split(b"\n")
    assert (len(lines), lines[-1], replay(json.loads(line) for line in lines[:-1]) == ledger.state()) == (4, b"", True)
