"""The ledger file itself: torn tails, corruption, incremental reads, creation, heartbeats, reaping."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.ledger.ledger_workers import HEADER
from mlflow_sweep import ledger as ledger_module
from mlflow_sweep.errors import LedgerError
from mlflow_sweep.ledger import Ledger, replay
from mlflow_sweep.trials import DONE, Proposal, TrialState

pytestmark = pytest.mark.timeout(30)


def take(state):
    """A decide that always proposes one more trial."""
    return Proposal({"n": len(state.trials)})


def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_create_writes_only_the_header(ledger_dir: Path) -> None:
    ledger = Ledger(ledger_dir)
    [header] = events(ledger.path)
    assert (header["event"], header["v"], header["header"], ledger.state().header, ledger.state().trials,
            ledger.path.name, ledger.lock_path.name) == \
        ("sweep", 1, HEADER, HEADER, (), "ledger.jsonl", "ledger.jsonl.lock")


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
    trial = ledger.claim(lambda s: Proposal({"lr": 0.1, "layers": 2}, point=4), "agent-1")
    ledger.start(trial.index, "run-a")
    first = ledger.complete(trial.index, TrialState.FINISHED, 0.25, stopped_at=3)
    second = ledger.complete(trial.index, TrialState.FAILED, None)
    done = ledger.claim(lambda s: DONE, "agent-1")
    [final] = ledger.state().trials
    assert (trial.index, trial.state, trial.point, trial.agent_id, first, second, done,
            final.state, final.metric, final.run_id, final.stopped_at, final.params,
            final.started <= final.ended) == \
        (0, TrialState.RUNNING, 4, "agent-1", True, False, None,
         TrialState.FINISHED, 0.25, "run-a", 3, {"lr": 0.1, "layers": 2}, True)


def test_unknown_trial_and_bad_proposals_write_nothing(ledger_dir: Path) -> None:
    ledger = Ledger(ledger_dir)
    before = ledger.path.read_bytes()
    with pytest.raises(LedgerError, match="trial 5 is not in the ledger"):
        ledger.complete(5, TrialState.FINISHED, 1.0)
    with pytest.raises(TypeError, match="Proposal or DONE"):
        ledger.claim(lambda s: {"x": 1}, "a")
    with pytest.raises(TypeError, match="not JSON serializable"):
        ledger.claim(lambda s: Proposal({"x": object()}), "a")
    with pytest.raises(ValueError, match="terminal"):
        ledger.complete(0, TrialState.RUNNING, None)
    assert ledger.path.read_bytes() == before


def test_numpy_scalars_are_stored_as_plain_numbers(ledger_dir: Path) -> None:
    np = pytest.importorskip("numpy")
    trial = Ledger(ledger_dir).claim(lambda s: Proposal({"x": np.int64(3), "y": np.float32(0.5)}), "a")
    assert (trial.params, type(trial.params["x"])) == ({"x": 3, "y": 0.5}, int)


def test_torn_tail_is_ignored_then_repaired_by_the_next_writer(ledger_dir: Path) -> None:
    ledger = Ledger(ledger_dir)
    for _ in range(2):
        ledger.claim(take, "a")
    with open(ledger.path, "ab") as f:  # a writer killed in the middle of its line
        f.write(b'{"event": "claim", "trial": 2, "par')
    fresh = Ledger(ledger_dir)
    seen = fresh.state().count()
    trial = fresh.claim(take, "b")
    lines = ledger.path.read_bytes().split(b"\n")
    assert (seen, trial.index, ledger.state().count(), lines[-1], [json.loads(x)["event"] for x in lines[:-1]]) == \
        (2, 2, 3, b"", ["sweep", "claim", "claim", "claim"])


def test_a_file_cut_anywhere_still_replays(ledger_dir: Path) -> None:
    ledger = Ledger(ledger_dir)
    for i in range(3):
        trial = ledger.claim(take, "a")
        ledger.complete(trial.index, TrialState.FINISHED, float(i))
    data = ledger.path.read_bytes()
    header_end = data.index(b"\n") + 1
    counts = []
    for cut in range(header_end, len(data) + 1):
        ledger.path.write_bytes(data[:cut])
        counts.append(Ledger(ledger_dir).state().count())
    assert (counts[0], counts[-1], counts == sorted(counts)) == (0, 3, True)


def test_corrupt_middle_line_names_the_line_and_changes_nothing(ledger_dir: Path) -> None:
    ledger = Ledger(ledger_dir)
    for _ in range(3):
        ledger.claim(take, "a")
    lines = ledger.path.read_bytes().split(b"\n")
    lines[2] = b'{"event": "claim", "trial": 1, "params": {"n": 1}, "agent": "a", "ti\x00me": oops}'
    ledger.path.write_bytes(b"\n".join(lines))
    damaged = ledger.path.read_bytes()
    messages = []
    for action in (Ledger(ledger_dir).state, lambda: Ledger(ledger_dir).claim(take, "b"), ledger.state):
        with pytest.raises(LedgerError) as info:
            action()
        messages.append(str(info.value))
    assert (ledger.path.read_bytes() == damaged, {m.split(": ", 1)[0] for m in messages},
            all("not a JSON line" in m and "by hand" in m for m in messages)) == \
        (True, {f"{ledger.path}:3"}, True), messages


def test_an_event_that_does_not_fit_names_its_line(ledger_dir: Path) -> None:
    ledger = Ledger(ledger_dir)
    ledger.claim(take, "a")
    with open(ledger.path, "a") as f:
        f.write(json.dumps({"event": "claim", "trial": 0, "params": {}, "agent": "x", "time": 1.0}) + "\n")
    with pytest.raises(LedgerError, match=r"ledger.jsonl:3: claims trial 0, but the next index is 1"):
        Ledger(ledger_dir).state()


def test_state_reads_only_new_bytes(ledger_dir: Path) -> None:
    reader, writer = Ledger(ledger_dir), Ledger(ledger_dir)
    trial = writer.claim(take, "a")
    writer.complete(trial.index, TrialState.FINISHED, 0.5)
    reader.state()
    data = reader.path.read_bytes()  # rewrite an old line in place, same length: only a fresh reader sees it
    reader.path.write_bytes(data.replace(b'"metric": 0.5', b'"metric": 0.7'))
    writer.claim(take, "a")
    assert (reader.state().trials[0].metric, Ledger(ledger_dir).state().trials[0].metric,
            reader.state().count()) == (0.5, 0.7, 2)


def test_state_is_the_same_object_until_something_changes(ledger_dir: Path) -> None:
    ledger = Ledger(ledger_dir)
    first, second = ledger.state(), ledger.state()
    ledger.claim(take, "a")
    assert (first is second, ledger.state() is first, ledger.state().count()) == (True, False, 1)


def test_a_replaced_file_is_read_from_the_start(ledger_dir: Path, tmp_path: Path) -> None:
    ledger = Ledger(ledger_dir)
    ledger.claim(take, "a")
    ledger.state()
    other = tmp_path / "other"
    Ledger.create(other, {"config": {}, "seed": 1, "sweep_id": "other"})
    os.replace(other / "ledger.jsonl", ledger.path)
    assert (ledger.state().header["sweep_id"], ledger.state().count()) == ("other", 0)


def test_heartbeats_are_atomic_files_listed_by_agents(ledger_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = Ledger(ledger_dir)
    monkeypatch.setattr(ledger_module, "_now", lambda: 1000.0)
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


def test_reap_uses_the_last_beat_or_the_claim_time(ledger_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(ledger_module, "_now", lambda: clock[0])
    ledger = Ledger(ledger_dir)
    silent = ledger.claim(take, "silent")        # never beats: judged by its claim time
    beating = ledger.claim(take, "beating")
    finished = ledger.claim(take, "silent")
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


def test_reap_takes_no_lock_when_nothing_is_stale(ledger_dir: Path) -> None:
    ledger = Ledger(ledger_dir, lock_timeout=0.05)
    ledger.claim(take, "a")
    with Ledger(ledger_dir).locked():  # someone else holds the lock
        assert ledger.reap(timeout=60) == []


def test_replay_of_the_file_equals_the_ledger_state(ledger_dir: Path) -> None:
    ledger = Ledger(ledger_dir)
    for i in range(4):
        trial = ledger.claim(take, "a")
        ledger.start(trial.index, f"r{i}")
        if i % 2:
            ledger.complete(trial.index, TrialState.KILLED, None)
    assert replay(events(ledger.path)) == ledger.state() == Ledger(ledger_dir).state()


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_writing_to_a_missing_ledger_creates_nothing(tmp_path: Path, mode: str) -> None:
    with pytest.raises(LedgerError, match="no ledger here"):
        Ledger(tmp_path / "typo" / "sweep", lock_mode=mode, lock_timeout=1).claim(take, "a")
    assert list(tmp_path.iterdir()) == []


def test_claims_need_an_agent_id_that_can_have_a_heartbeat_file(ledger_dir: Path) -> None:
    with pytest.raises(LedgerError, match="agent id"):
        Ledger(ledger_dir).claim(take, "node 1/agent")
