"""Hyperband early termination: bands and cuts worked out by hand, W&B's semantics."""
from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlflow_sweep import schema
from mlflow_sweep.hyperband import bands, cuts, stop_runs, stopping_band
from mlflow_sweep.trials import Trial, TrialState


@dataclass(frozen=True)
class Goal:
    """Stands in for config.Metric: hyperband reads only ``goal``."""

    goal: str = "minimize"
    name: str = "loss"


MIN = Goal("minimize")
MAX = Goal("maximize")


def hb(**block: object) -> dict[str, object]:
    """An early_terminate block as the checked config holds it: the schema fills ``eta`` and ``strict``."""
    return schema.with_defaults({"type": "hyperband", **block}, "hyperband")


# Bands -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("block", "expected"), [
    (hb(max_iter=81, eta=3, s=3), [3, 9, 27]),       # 81/3, 81/9, 81/27
    (hb(max_iter=18, eta=3, s=2), [2, 6]),           # 6.0, 2.0
    (hb(max_iter=9, eta=3, s=2), [1, 3]),
    (hb(max_iter=5, eta=2, s=2), [1, 2]),            # 2.5 -> 2, 1.25 -> 1
    (hb(max_iter=9, eta=3, s=5), [1, 3]),            # 9/27 < 1: dropped
    (hb(max_iter=27, s=2), [3, 9]),                  # eta defaults to 3
    (hb(max_iter=150, eta=3, s=4), [1, 5, 16, 50]),  # W&B wandb#2771: 50, 16.7, 5.6, 1.85
    (hb(max_iter=2, eta=3, s=1), []),                # 2/3 < 1: no band at all
    (hb(max_iter=9, min_iter=2, eta=3, s=1), [3]),   # max_iter wins over min_iter
], ids=str)
def test_max_iter_bands(block: dict, expected: list[int]) -> None:
    assert bands(block) == expected


@pytest.mark.parametrize(("block", "first"), [
    (hb(min_iter=3, eta=3), [3, 9, 27, 81]),
    (hb(min_iter=3), [3, 9, 27, 81]),                # eta defaults to 3
    (hb(min_iter=2, eta=2), [2, 4, 8, 16]),          # the bands wandb#1237 asked for
    (hb(min_iter=30, eta=1.5), [30, 45, 67, 101]),   # 67.5 -> 67, 101.25 -> 101
    (hb(min_iter=1, eta=1.5), [1, 2, 3, 5]),         # 1, 1.5 -> 1 (once), 2.25, 3.375, 5.06
], ids=str)
def test_min_iter_bands(block: dict, first: list[int]) -> None:
    found = bands(block)
    assert found[:4] == first
    assert found == sorted(set(found))


def test_min_iter_bands_stop_before_floats_overflow() -> None:
    assert bands(hb(min_iter=1, eta=10_000))[:3] == [1, 10_000, 100_000_000]


# One sweep worked by hand ----------------------------------------------------------------
# max_iter 9, eta 3, s 2 -> bands 1 and 3. Trials 0-2 finished, 3-5 running.
#   band 1: values 5 6 7 9 4 8 -> sorted 4 5 6 7 8 9, position floor(6/3)=2 -> cut 6
#   band 3: values 3 4 5 7 9   -> sorted 3 4 5 7 9,   position floor(5/3)=1 -> cut 4
# Trial 3 is bad throughout; trial 4 starts best, then is bad at iteration 3; trial 5 has
# only reached band 1, where it is worse than the cut.

BLOCK = hb(max_iter=9, eta=3, s=2)
LOSS = {
    0: [5, 4, 3, 2],
    1: [6, 5, 4, 3],
    2: [7, 6, 5, 4],
    3: [9, 8, 7],
    4: [4, 9, 9],
    5: [8],
}
RUNNING = {3, 4, 5}


def accuracy(history: dict[int, list[float]]) -> dict[int, list[float]]:
    """The same sweep as an accuracy to maximize: 10 - loss."""
    return {index: [10 - v for v in values] for index, values in history.items()}


def test_cuts_by_hand() -> None:
    assert cuts(BLOCK, MIN, LOSS) == {1: 6, 3: 4}


def test_cuts_are_in_the_metrics_own_units_when_maximizing() -> None:
    assert cuts(BLOCK, MAX, accuracy(LOSS)) == {1: 4, 3: 6}


@pytest.mark.parametrize(("goal", "history"), [(MIN, LOSS), (MAX, accuracy(LOSS))], ids=["minimize", "maximize"])
def test_strict_stops_each_trial_at_its_band(goal: Goal, history: dict) -> None:
    # 3: value 7 at band 3 > cut 4; 4: value 9 at band 3 > 4; 5: value 8 at band 1 > 6
    assert stop_runs({**BLOCK, "strict": True}, goal, history, RUNNING) == {3: 3, 4: 3, 5: 1}


@pytest.mark.parametrize(("goal", "history"), [(MIN, LOSS), (MAX, accuracy(LOSS))], ids=["minimize", "maximize"])
def test_not_strict_compares_the_best_value_so_far(goal: Goal, history: dict) -> None:
    # trial 4's best so far is 4, not worse than the band-3 cut 4, so it goes on
    assert stop_runs({**BLOCK, "strict": False}, goal, history, RUNNING) == {3: 3, 5: 1}


def test_strict_is_the_default() -> None:
    assert stop_runs(BLOCK, MIN, LOSS, RUNNING) == {3: 3, 4: 3, 5: 1}


def test_finished_trials_are_never_stopped() -> None:
    assert stop_runs(BLOCK, MIN, LOSS, running=set()) == {}
    assert stop_runs(BLOCK, MIN, {**LOSS, 0: [99, 99, 99]}, running={1}) == {}


def test_finished_trials_set_the_cut() -> None:
    # without the finished trials 0-2, band 1 holds 9 4 8 (cut 8) and band 3 holds 7 9 (cut
    # floor(2/3)=0 -> 7): only trial 4 is below a cut
    running_only = {i: LOSS[i] for i in RUNNING}
    assert stop_runs(BLOCK, MIN, running_only, RUNNING) == {4: 3}


# Who is never stopped ---------------------------------------------------------------------

def test_history_shorter_than_the_first_band_is_never_stopped() -> None:
    block = hb(min_iter=3, eta=3)
    done = {0: [1, 1, 1, 1]}
    assert stop_runs(block, MIN, {**done, 1: []}, {1}) == {}
    assert stop_runs(block, MIN, {**done, 1: [100, 100]}, {1}) == {}
    assert stop_runs(block, MIN, {**done, 1: [100, 100, 100]}, {1}) == {1: 3}


def test_running_index_without_history_is_skipped() -> None:
    assert stop_runs(hb(min_iter=1), MIN, {0: [1.0]}, {0, 7}) == {}


def test_trial_alone_at_its_band_is_never_stopped() -> None:
    assert stop_runs(hb(max_iter=18, eta=3, s=2), MIN, {0: [10 - i for i in range(10)]}, {0}) == {}


def test_value_equal_to_the_cut_goes_on() -> None:
    # band 1 holds 5 and 5: cut floor(2/3)=0 -> 5, and 5 is not worse than 5
    assert stop_runs(hb(min_iter=1), MIN, {0: [5], 1: [5]}, {0, 1}) == {}


@pytest.mark.parametrize(("eta", "expected"), [(3, {1: 1}), (2, {})])
def test_two_trials_at_a_band(eta: float, expected: dict) -> None:
    # band 1 holds 1 and 2: eta 3 keeps position floor(2/3)=0 (the best), eta 2 position 1
    assert stop_runs(hb(min_iter=1, eta=eta), MIN, {0: [1], 1: [2]}, {0, 1}) == expected


def test_no_band_stops_nothing() -> None:
    assert stop_runs(hb(max_iter=2, eta=3, s=1), MIN, {0: [1, 1], 1: [9, 9]}, {0, 1}) == {}


# Iterations are logged values -------------------------------------------------------------

def test_checked_at_the_last_band_reached() -> None:
    # bands 1, 3, 9. Trial 1 has 5 values: it is judged at band 3 by its 3rd value (2, the
    # best there), not by the 9s it logged afterwards.
    history = {0: [5, 5, 5, 5, 5], 1: [5, 5, 2, 9, 9], 2: [5, 5, 8]}
    assert stop_runs(hb(min_iter=1, eta=3), MIN, history, {1, 2}) == {2: 3}


def test_nan_values_are_not_iterations() -> None:
    # trial 1's NaN is dropped, so it has logged 2 values, not 3, and has not reached band 3
    block = hb(min_iter=3, eta=3)
    history = {0: [1.0, 1.0, 1.0], 1: [math.nan, 9.0, 9.0]}
    assert stop_runs(block, MIN, history, {1}) == {}
    assert stop_runs(block, MIN, {0: history[0], 1: [*history[1], 9.0]}, {1}) == {1: 3}


@pytest.mark.parametrize("infinite", [math.inf, -math.inf], ids=["inf", "-inf"])
def test_infinite_values_are_not_iterations_either(infinite: float) -> None:
    # as W&B's filter_invalid: a diverged inf loss is no value, like NaN, so trial 1 is at 2 values
    block = hb(min_iter=3, eta=3)
    history = {0: [1.0, 1.0, 1.0], 1: [infinite, 9.0, 9.0]}
    assert stop_runs(block, MIN, history, {1}) == {}
    assert cuts(block, MIN, {0: [infinite, 1.0, 2.0, 3.0]}) == {3: 3.0}


# W&B's own cases (wandb/sweeps tests/test_hyperband_stopping.py), by the n-th-value rule ---

@pytest.mark.parametrize(("block", "goal", "slope"), [
    (hb(min_iter=3, eta=3), MIN, -1),                # bands 3, 9: cuts 8 and 2
    (hb(min_iter=3, eta=3), MAX, +1),
    (hb(max_iter=81, eta=3, s=3), MIN, -1),          # bands 3, 9, 27
    (hb(max_iter=18, eta=3, s=2), MIN, -1),          # bands 2, 6: cuts 9 and 5
])
def test_flat_run_stopped_improving_run_kept(block: dict, goal: Goal, slope: int) -> None:
    history = {0: [10] * 4, 1: [10 + slope * i for i in range(10)]}
    assert list(stop_runs(block, goal, history, {0, 1})) == [0]


# What an agent sees: ended trials from the ledger plus its own -----------------------------

def ledger_trial(index: int, history: list[float] | None, state: TrialState = TrialState.FINISHED) -> Trial:
    """A trial as the ledger replays it; ``history`` None as for a trial still running."""
    return Trial(index=index, params={}, state=state,
                 history=None if history is None else tuple(history))


def test_stopping_band_pools_ended_trials_with_its_own_history() -> None:
    # the hand-worked sweep: trials 0-2 ended (in the ledger); trial 3 judged, 4 and 5 still
    # running elsewhere, so not compared. Band 3 holds 3 4 5 7 -> cut at floor(4/3)=1 -> 4.
    trials = [ledger_trial(i, LOSS[i]) for i in (0, 1, 2)] + [ledger_trial(i, None, TrialState.RUNNING)
                                                                for i in (3, 4, 5)]
    assert stopping_band(BLOCK, MIN, trials, 3, LOSS[3]) == 3
    assert stopping_band(BLOCK, MIN, trials, 5, [5.5]) is None   # band 1: 5 6 7 5.5 -> cut 5.5
    assert stopping_band(BLOCK, MIN, trials, 5, [6.5]) == 1      # band 1: cut 6, 6.5 is worse


def test_stopping_band_ignores_a_stale_copy_of_its_own_trial() -> None:
    # a history the ledger holds for the judged index never replaces the live one
    trials = [ledger_trial(0, [1, 1, 1]), ledger_trial(1, [0, 0, 0], TrialState.KILLED)]
    assert stopping_band(hb(min_iter=3), MIN, trials, 1, [9, 9, 9]) == 3


def test_stopping_band_with_nothing_ended_goes_on() -> None:
    trials = [ledger_trial(0, None, TrialState.RUNNING), ledger_trial(1, None, TrialState.RUNNING)]
    assert stopping_band(hb(min_iter=1), MIN, trials, 1, [99.0, 99.0]) is None


def test_stopping_band_counts_failed_and_stopped_trials() -> None:
    trials = [ledger_trial(0, [1, 1, 1], TrialState.FAILED), ledger_trial(1, [2, 2, 2], TrialState.KILLED)]
    assert stopping_band(hb(min_iter=3), MIN, trials, 2, [3, 3, 3]) == 3


# Properties -------------------------------------------------------------------------------

histories = st.dictionaries(
    st.integers(0, 30),
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), max_size=12),
    max_size=12,
)
blocks = st.one_of(
    st.builds(lambda m, e, strict: hb(min_iter=m, eta=e, strict=strict),
              st.integers(1, 4), st.sampled_from([1.5, 2, 3, 4]), st.booleans()),
    st.builds(lambda m, s, e, strict: hb(max_iter=m, s=s, eta=e, strict=strict),
              st.integers(1, 30), st.integers(1, 4), st.sampled_from([1.5, 2, 3, 4]), st.booleans()),
)


@given(blocks, histories, st.data())
def test_stops_only_running_trials_at_a_band_they_reached(block: dict, history: dict, data: st.DataObject) -> None:
    running = data.draw(st.sets(st.sampled_from(sorted(history)) if history else st.nothing()))
    stops = stop_runs(block, MIN, history, running)
    assert set(stops) <= running
    assert all(band in bands(block) and band <= len(history[i]) for i, band in stops.items())


@given(blocks, histories)
def test_maximizing_is_minimizing_the_negation(block: dict, history: dict) -> None:
    negated = {i: [-v for v in values] for i, values in history.items()}
    assert stop_runs(block, MAX, negated, set(history)) == stop_runs(block, MIN, history, set(history))


@given(blocks, histories)
def test_the_best_trial_at_a_band_is_never_stopped(block: dict, history: dict) -> None:
    stops = stop_runs({**block, "strict": True}, MIN, history, set(history))
    for band in bands(block):
        at_band = {i: values[band - 1] for i, values in history.items() if len(values) >= band}
        if at_band:
            best = min(at_band.values())
            assert not any(stops.get(i) == band for i, v in at_band.items() if v == best)
