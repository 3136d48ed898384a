"""The finalize text: the table exactly in its documented layout (docs/behaviour.md), the best trial, the notes."""
from __future__ import annotations

from mlflow_sweep.analysis import CATEGORICAL, LINEAR, Analysis, ParameterResult, analyse
from mlflow_sweep.report import format_value, render_best, render_counts, render_report, render_table
from mlflow_sweep.trials import Trial, TrialState

TABLE = """\
Parameter importance for metric1 (maximize), 10 trials
Parameter      | Importance | Permutation Importance | Pearson | Spearman
learning_rate  |     0.7913 |                 0.9954 |  0.1822 |   0.1636
batch_size     |     0.2087 |                 0.1476 |  0.1912 |   0.1729"""

COUNTS = {"running": 0, "finished": 10, "failed": 0, "killed": 0}


def documented_analysis(**changes) -> Analysis:
    rows = (ParameterResult("learning_rate", LINEAR, 0.7913, 0.9954, 0.1822, 0.1636),
            ParameterResult("batch_size", LINEAR, 0.2087, 0.1476, 0.1912, 0.1729))
    best = Trial(4, {"learning_rate": 0.01, "batch_size": 32}, TrialState.FINISHED, 0.93, run_id="abc123")
    fields = dict(metric="metric1", goal="maximize", counts=COUNTS, used=10, rows=rows, best=best,
                  scales={"learning_rate": LINEAR, "batch_size": LINEAR})
    return Analysis(**{**fields, **changes})


def test_table_matches_the_documented_layout_exactly():
    assert render_table(documented_analysis()) == TABLE


def test_undefined_and_negative_values_keep_the_columns_aligned():
    rows = (ParameterResult("a_much_longer_parameter_name", LINEAR, 1.0, 0.5, -0.25, -1.0),
            ParameterResult("fixed", LINEAR, 0.0, 0.0, None, None, varies=False))
    lines = render_table(documented_analysis(rows=rows, used=1)).splitlines()
    assert lines[0].endswith(", 1 trial")
    assert len({line.index("|") for line in lines[1:]}) == 1
    assert lines[2].split(" | ")[1:] == ["    1.0000", "                0.5000", "-0.2500", " -1.0000"]
    assert lines[3].split(" | ")[1:] == ["    0.0000", "                0.0000", "    n/a", "     n/a"]


def test_best_trial_text_names_run_metric_and_parameters():
    assert render_best(documented_analysis()) == (
        "Best trial: #4 (run abc123)\n  metric1 = 0.93 (maximize)\n  learning_rate = 0.01\n  batch_size = 32")


def test_report_without_a_metric_says_so_and_prints_no_table():
    trials = [Trial(0, {"x": 1}, TrialState.FINISHED), Trial(1, {"x": 2}, TrialState.KILLED)]
    text = render_report(analyse(trials, metric=None))
    assert text.startswith("2 trials: 1 finished, 0 failed, 1 killed, 0 running")
    assert "note: no metric configured" in text and "Parameter importance" not in text
    assert text.endswith("Best trial: none (no metric configured)")


def test_report_with_no_usable_value_explains_why():
    trials = [Trial(0, {"x": 1}, TrialState.FINISHED, None), Trial(1, {"x": 2}, TrialState.FAILED)]
    text = render_report(analyse(trials, metric="loss"))
    assert "note: importance needs at least 3 finished trials with a value for 'loss', but got 0" in text
    assert "Best trial: none (no finished trial logged a value for 'loss')" in text


def test_report_puts_the_table_between_notes_and_best_and_footnotes_categoricals():
    trials = [Trial(i, {"opt": "ab"[i % 2], "x": float(i)}, TrialState.FINISHED, float(i % 2) + i / 100)
              for i in range(10)]
    text = render_report(analyse(trials, metric="loss", scales={"opt": CATEGORICAL, "x": LINEAR}))
    blocks = text.split("\n\n")
    assert blocks[0] == "10 trials: 10 finished, 0 failed, 0 killed, 0 running"
    assert blocks[1].startswith("Parameter importance for loss (minimize), 10 trials")
    assert blocks[1].splitlines()[2].startswith("opt ")
    assert blocks[2].startswith("Categorical opt: Pearson and Spearman are taken against")
    assert blocks[3].startswith("Best trial: #0")


def test_counts_and_values():
    assert render_counts({"finished": 1}) == "1 trial: 1 finished, 0 failed, 0 killed, 0 running"
    assert [format_value(v) for v in (0.000123456789, 3, True, "adam", [1, 2], None)] == [
        "0.000123457", "3", "True", "adam", "[1,2]", "null"]
