"""The shared vocabulary: the sweep's phases, what a number is, what a count is."""
from __future__ import annotations

import json
import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

from mlflow_sweep.errors import UsageError
from mlflow_sweep.trials import SweepPhase, check_count, is_count, is_number


@pytest.mark.parametrize(("phase", "runs_trials", "parent"), [
    (SweepPhase.RUNNING, True, "RUNNING"), (SweepPhase.PAUSED, True, "RUNNING"),
    (SweepPhase.STOPPED, False, "FINISHED"), (SweepPhase.DONE, False, "FINISHED"),
    (SweepPhase.CANCELLED, False, "KILLED"),
], ids=str)
def test_each_phase_knows_whether_it_runs_trials_and_its_parent_runs_status(phase, runs_trials, parent) -> None:
    assert (phase.runs_trials, phase.parent_status.value) == (runs_trials, parent)


def test_a_phase_reads_as_its_word_in_text_and_json() -> None:
    assert (f"{SweepPhase.DONE}", str(SweepPhase.PAUSED), json.dumps(SweepPhase.STOPPED), SweepPhase("done")) == \
        ("done", "paused", '"stopped"', SweepPhase.DONE)
    assert SweepPhase.CANCELLED == "cancelled"  # scripts comparing mlflow_sweep.status().state to text keep working


@pytest.mark.parametrize("value", [0, -3, 2.5, 1e300, np.float64(0.1), np.int64(7), Fraction(1, 3)], ids=repr)
def test_finite_reals_are_numbers(value) -> None:
    assert is_number(value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float64("inf"), True, False, None, "1",
                                   Decimal("1"), 1j, [1]], ids=repr)
def test_nan_infinity_bools_and_text_are_not_numbers(value) -> None:
    assert not is_number(value)


@pytest.mark.parametrize(("value", "expected"), [(1, True), (50, True), (0, False), (-1, False), (2.0, False),
                                                 (True, False), ("3", False), (None, False)], ids=repr)
def test_a_count_is_a_whole_number_of_at_least_one(value, expected: bool) -> None:
    assert is_count(value) is expected


def test_check_count_names_what_the_user_wrote() -> None:
    assert check_count(3, "--count") == 3
    with pytest.raises(UsageError, match=r"^--max-failures must be a whole number of at least 1, but got 'many'$"):
        check_count("many", "--max-failures")
