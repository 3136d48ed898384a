"""Reading the ledger: a failed read changes nothing, and a cold read opens checkpoints, not every event."""
from __future__ import annotations

from pathlib import Path

import pytest

from mlflow_sweep import journal as journal_module
from mlflow_sweep.errors import LedgerError
from mlflow_sweep.journal import Journal, checkpoint_name
from mlflow_sweep.ledger import Ledger, replay
from mlflow_sweep.trials import Proposal, TrialState

from tests.ledger.ledger_workers import log_events

pytestmark = pytest.mark.timeout(30)


def take(state):
    return Proposal({"n": len(state.trials)})


def run_trials(ledger: Ledger, count: int) -> None:
    """Claim, start and end ``count`` trials: three events each."""
    for _ in range(count):
        trial = ledger.claim(take, "a").trial
        ledger.start(trial.index, f"run-{trial.index}")
        ledger.complete(trial.index, TrialState.FINISHED, float(trial.index))


@pytest.fixture
def small_checkpoints(monkeypatch: pytest.MonkeyPatch) -> int:
    """Checkpoints of 10 events, so a test needs tens of events, not thousands."""
    monkeypatch.setattr(Journal, "checkpoint_events", 10)
    return 10


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files the journal opens from now on."""
    names: list[str] = []
    real = journal_module._read_whole

    def counting(path, **options):
        names.append(Path(path).name)
        return real(path, **options)

    monkeypatch.setattr(journal_module, "_read_whole", counting)
    return names


def test_a_read_that_fails_midway_folds_in_nothing_and_the_next_claim_sees_every_event(
        ledger_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine, other = Ledger(ledger_dir), Ledger(ledger_dir)
    mine.state()
    for _ in range(3):
        other.claim(take, "other")  # events 1, 2 and 3
    real, failed = Journal._read_event, []

    def flaky(self, number):
        if number == 2 and not failed:  # event 1 was read already when this one fails
            failed.append(number)
            raise LedgerError("events/00000002.json: cannot read the ledger event (simulated)")
        return real(self, number)

    monkeypatch.setattr(Journal, "_read_event", flaky)
    with pytest.raises(LedgerError, match="simulated"):
        mine.claim(take, "mine")
    after_failure = mine.state().count()
    trial = mine.claim(take, "mine").trial
    fresh = replay(log_events(ledger_dir))
    assert (failed, after_failure, trial.index, trial.params, fresh.conflicts,
            [t.agent_id for t in fresh.trials]) == \
        ([2], 3, 3, {"n": 3}, (), ["other", "other", "other", "mine"])


def test_the_state_counts_the_events_it_folded_in(ledger_dir: Path) -> None:
    ledger = Ledger(ledger_dir)
    run_trials(ledger, 2)
    assert (ledger.state().applied, Ledger(ledger_dir).state().applied, replay(log_events(ledger_dir)).applied) == \
        (7, 7, 7)


def test_checkpoints_are_written_as_blocks_fill_and_hold_the_events_bytes(ledger_dir: Path,
                                                                         small_checkpoints: int) -> None:
    run_trials(Ledger(ledger_dir), 8)  # 25 events: blocks 0-9 and 10-19 are whole
    blocks = sorted(p.name for p in (ledger_dir / "checkpoints").iterdir())
    events = [(ledger_dir / "ledger.jsonl").read_bytes()] + \
        [p.read_bytes() for p in sorted((ledger_dir / "events").glob("*.json"))]
    assert (blocks, (ledger_dir / "checkpoints" / checkpoint_name(20)).read_bytes()) == \
        ([checkpoint_name(10), checkpoint_name(20)], b"".join(events[10:20]))


def test_a_cold_read_opens_the_checkpoints_and_the_tail_only(ledger_dir: Path, small_checkpoints: int,
                                                             opened: list[str]) -> None:
    writer = Ledger(ledger_dir)
    run_trials(writer, 15)  # 46 events: 4 checkpoints and a tail of 6
    opened.clear()
    cold = Ledger(ledger_dir).state()
    cold_opened = list(opened)
    assert (cold, cold.applied, cold_opened) == \
        (writer.state(), 46, ["ledger.jsonl", *(checkpoint_name(end) for end in (10, 20, 30, 40)),
                              *(f"{n:08d}.json" for n in range(40, 47))])  # 46: the look for a next event


@pytest.mark.parametrize("damage", ["torn", "not-json", "missing"])
def test_a_damaged_checkpoint_is_ignored_and_written_again(ledger_dir: Path, small_checkpoints: int,
                                                           damage: str) -> None:
    writer = Ledger(ledger_dir)
    run_trials(writer, 10)  # 31 events
    path = ledger_dir / "checkpoints" / checkpoint_name(20)
    whole = path.read_bytes()
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(whole[:len(whole) // 2] if damage == "torn" else whole.replace(b"}", b"", 1))
    cold = Ledger(ledger_dir).state()
    rewritten = path.read_bytes() == whole if damage == "missing" else None
    assert (cold, replay(log_events(ledger_dir)) == cold, rewritten) == \
        (writer.state(), True, True if damage == "missing" else None)


def test_a_reader_that_joins_mid_block_writes_no_checkpoint_for_it(ledger_dir: Path, small_checkpoints: int) -> None:
    writer = Ledger(ledger_dir, lock=False)
    run_trials(writer, 2)  # 7 events
    for name in (ledger_dir / "checkpoints").glob("*"):
        name.unlink()
    late = Ledger(ledger_dir)
    late._journal.read = lambda start, real=late._journal.read: real(max(start, 4)) if start else real(0)
    run_trials(Ledger(ledger_dir), 2)  # events 7..12: block 0-9 is whole now
    assert sorted(p.name for p in (ledger_dir / "checkpoints").iterdir()) == [checkpoint_name(10)]


def test_a_busy_claim_lock_is_waited_for_while_its_holder_publishes(ledger_dir: Path) -> None:
    import fcntl
    import os
    import threading
    import time

    holder = Ledger(ledger_dir, lock=False)
    fd = os.open(ledger_dir / "ledger.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    released: list[float] = []

    def busy() -> None:  # holds the lock for twice the waiter's timeout, publishing all along
        for _ in range(20):
            holder.claim(take, "busy")
            time.sleep(0.1)
        released.append(time.monotonic())
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        trial = Ledger(ledger_dir, lock_timeout=1.0).claim(take, "waiter").trial
        claimed = time.monotonic()
    finally:
        thread.join()
    assert (trial.index, claimed >= released[0]) == (20, True)
