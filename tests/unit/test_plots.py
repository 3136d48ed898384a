"""Finalize plots: which PNGs each kind of sweep gets, that they are real images, and
that they read as a person expects: whole-number ticks for integers and trial numbers,
categories in the sweep file's order, no empty chart, the two importances on their own axes."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from mlflow_sweep.analysis import CATEGORICAL, LINEAR, LOG, analyse
from mlflow_sweep.plots import draw_figure, draw_plots
from mlflow_sweep.trials import Trial, TrialState

ALL = ["importance", "correlation", "metric_over_time", "timeline", "parallel_coordinates", "metric_vs_parameters"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def sweep(n: int, n_extra: int = 0, seed: int = 0) -> tuple[list[Trial], dict[str, str]]:
    """n trials (mostly finished, some failed/killed/running/dead), one log, one categorical, extras."""
    rng = np.random.default_rng(seed)
    scales = {"lr": LOG, "opt": CATEGORICAL, "dropout": LINEAR, **{f"extra_{j}": LINEAR for j in range(n_extra)}}
    states = [TrialState.FINISHED] * 7 + [TrialState.FAILED, TrialState.KILLED, TrialState.RUNNING]
    trials = []
    for i in range(n):
        params = {"lr": float(10 ** rng.uniform(-5, -1)), "opt": ["adam", "sgd"][i % 2],
                  "dropout": float(rng.uniform(0, 0.5)), **{f"extra_{j}": float(rng.uniform()) for j in range(n_extra)}}
        state = states[i % len(states)]
        metric = float(np.log10(params["lr"]) ** 2) if state is TrialState.FINISHED else None
        ended = None if state is TrialState.RUNNING else 100.0 + 2 * i + 5
        trials.append(Trial(i, params, state, metric, run_id=f"r{i}", started=100.0 + 2 * i, ended=ended,
                            dead=state is TrialState.FAILED and i % 20 == 7))
    return trials, scales


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    return struct.unpack(">II", data[16:24])


def drawn(tmp_path: Path, trials: list[Trial], scales: dict[str, str], metric: str | None = "loss") -> dict[str, Path]:
    result = analyse(trials, metric=metric, scales=scales)
    return {p.stem: p for p in draw_plots(result, trials, tmp_path).paths}


def test_a_full_sweep_gets_six_valid_pngs(tmp_path):
    paths = drawn(tmp_path, *sweep(40))
    assert sorted(paths) == sorted(ALL)
    for path in paths.values():
        width, height = png_size(path)
        assert 600 <= width <= 2400 and 300 <= height <= 2400, (path.name, width, height)
        assert path.stat().st_size > 10_000


@pytest.mark.slow
def test_many_trials_and_twenty_parameters_stay_legible_in_size(tmp_path):
    paths = drawn(tmp_path, *sweep(1000, n_extra=17))
    assert sorted(paths) == sorted(ALL)
    for path in paths.values():
        width, height = png_size(path)
        assert width <= 2400 and height <= 2400, (path.name, width, height)


def test_no_metric_gives_timeline_and_parallel_coordinates_only(tmp_path):
    assert sorted(drawn(tmp_path, *sweep(12), metric=None)) == ["parallel_coordinates", "timeline"]


def test_one_parameter_and_no_metric_draw_no_parallel_coordinates(tmp_path):
    trials = [Trial(i, {"t": 30 + i}, TrialState.FINISHED, None, started=1.0 + i, ended=2.0 + i) for i in range(2)]
    result = draw_plots(analyse(trials, metric=None, scales={"t": LINEAR}), trials, tmp_path)
    assert [p.name for p in result.paths] == ["timeline.png"]  # a lone axis was an almost empty frame
    assert dict(result.skipped)["parallel_coordinates.png"] == (
        "one parameter and no metric make one axis, with no lines between axes to draw")


def test_too_few_finished_trials_skip_the_importance_plots(tmp_path):
    trials, scales = sweep(10)
    trials = trials[:2] + trials[7:]  # two finished; failed, killed, running
    assert sorted(drawn(tmp_path, trials, scales)) == sorted(set(ALL) - {"importance", "correlation"})


def test_no_finished_trial_leaves_the_timeline(tmp_path):
    trials = [Trial(0, {"x": 1.0}, TrialState.FAILED, started=1.0, ended=2.0),
              Trial(1, {"x": 2.0}, TrialState.RUNNING, started=1.5)]
    assert sorted(drawn(tmp_path, trials, {"x": LINEAR})) == ["timeline"]  # no empty parallel coordinates


def test_trials_without_times_or_parameters(tmp_path):
    trials = [Trial(i, {}, TrialState.FINISHED, float(i)) for i in range(4)]
    assert sorted(drawn(tmp_path, trials, {})) == ["metric_over_time"]


def test_only_categoricals_constants_and_nan(tmp_path):
    trials = [Trial(i, {"act": ["relu", "tanh", "gelu"][i % 3], "fixed": "x", "flag": bool(i % 2)},
                    TrialState.FINISHED, float("nan") if i == 4 else float(i % 3), started=float(i), ended=i + 0.5)
              for i in range(9)]
    paths = drawn(tmp_path, trials, {"act": CATEGORICAL, "fixed": CATEGORICAL, "flag": CATEGORICAL})
    assert sorted(paths) == sorted(ALL)
    assert all(png_size(p)[0] > 0 for p in paths.values())


# --- how the plots read ------------------------------------------------------------------------

LEVELS = {"opt": ("sgd", "adam", "rmsprop", "adagrad")}  # the file's order; adagrad is never sampled
SCALES = {"lr": LOG, "layers": LINEAR, "batch": LOG, "opt": CATEGORICAL}


def int_sweep(n: int, finished: bool = True) -> list[Trial]:
    """Trials with an int parameter (1-4), an int log parameter (16-512) and a categorical."""
    rng = np.random.default_rng(1)
    trials = []
    for i in range(n):
        params = {"lr": float(10 ** rng.uniform(-5, -1)), "layers": int(rng.integers(1, 5)),
                  "batch": int(16 * rng.integers(1, 33)), "opt": str(rng.choice(["rmsprop", "adam", "sgd"]))}
        metric = float(np.log10(params["lr"]) ** 2 + params["layers"]) if finished else None
        trials.append(Trial(i, params, TrialState.FINISHED if finished else TrialState.FAILED, metric,
                            run_id=f"r{i}", started=10.0 * i, ended=10.0 * i + 8))
    return trials


def figure(name: str, trials: list[Trial], metric: str | None = "loss", timed: bool = True):
    if not timed:
        trials = [Trial(t.index, t.params, t.state, t.metric, run_id=t.run_id) for t in trials]
    fig = draw_figure(name, analyse(trials, metric=metric, scales=SCALES, levels=LEVELS), trials)
    fig.draw_without_rendering()  # lays out ticks and labels as savefig would
    return fig


def visible_ticks(axis) -> list[float]:
    lo, hi = sorted(axis.get_view_interval())
    return [t for t in axis.get_ticklocs() if lo <= t <= hi]


def parallel_labels(fig, column: str) -> list[str]:
    """The value labels written beside one axis of the parallel-coordinates plot, bottom to top."""
    ax = fig.axes[0]
    names = [t.get_text() for t in ax.get_xticklabels()]
    x = names.index(column)
    texts = [t for t in ax.texts if abs(t.get_position()[0] - (x + 0.04)) < 1e-9]
    return [t.get_text() for t in sorted(texts, key=lambda t: t.get_position()[1])]


def scatter_axes(fig, name: str):
    return next(ax for ax in fig.axes if ax.get_title() == name)


@pytest.mark.parametrize("n", [1, 10, 200])
def test_integer_parameters_get_whole_number_labels_on_parallel_coordinates(n):
    fig = figure("parallel_coordinates", int_sweep(n))
    for column in ("layers", "batch"):
        labels = parallel_labels(fig, column)
        assert labels and all(label.isdigit() for label in labels), (column, labels)
    if n >= 10:
        assert parallel_labels(fig, "layers") == ["1", "2", "3", "4"]


@pytest.mark.parametrize("n", [1, 10, 200])
def test_integer_parameters_get_whole_number_ticks_against_the_metric(n):
    fig = figure("metric_vs_parameters", int_sweep(n))
    for name in ("layers", "batch"):
        axis = scatter_axes(fig, name).xaxis
        ticks = visible_ticks(axis)
        assert ticks and all(float(t).is_integer() for t in ticks), (name, ticks)
        labels = [t.get_text() for t in axis.get_ticklabels() if t.get_text()]
        assert all(label.isdigit() for label in labels), (name, labels)  # no 1e+02, no 2.5


@pytest.mark.parametrize("n", [1, 3, 40])
def test_timeline_trial_axis_shows_whole_trial_numbers(n):
    ticks = visible_ticks(figure("timeline", int_sweep(n)).axes[0].yaxis)
    assert ticks and all(float(t).is_integer() and 0 <= t < n for t in ticks), ticks


@pytest.mark.parametrize("n", [1, 3, 40])
def test_metric_over_trial_number_shows_whole_trial_numbers(n):
    ax = figure("metric_over_time", int_sweep(n), timed=False).axes[0]
    ticks = visible_ticks(ax.xaxis)
    assert ax.get_xlabel() == "trial number" and ticks and all(float(t).is_integer() for t in ticks), ticks


def test_categories_keep_the_sweep_file_order_including_values_never_sampled():
    trials = int_sweep(30)
    assert parallel_labels(figure("parallel_coordinates", trials), "opt") == list(LEVELS["opt"])
    axis = scatter_axes(figure("metric_vs_parameters", trials), "opt").xaxis
    assert [t.get_text() for t in axis.get_ticklabels()] == list(LEVELS["opt"])
    assert visible_ticks(axis) == [0.0, 1.0, 2.0, 3.0]  # adagrad's slot is on the chart, empty


def test_a_value_outside_the_file_comes_after_the_files_values():
    trials = int_sweep(6) + [Trial(6, {"lr": 0.01, "layers": 2, "batch": 32, "opt": "lion"}, TrialState.FINISHED, 1.0)]
    assert parallel_labels(figure("parallel_coordinates", trials), "opt") == [*LEVELS["opt"], "lion"]


def test_no_finished_trial_leaves_out_the_metric_plots_and_says_why(tmp_path):
    trials = int_sweep(4, finished=False)
    result = draw_plots(analyse(trials, metric="loss", scales=SCALES, levels=LEVELS), trials, tmp_path)
    assert [p.name for p in result.paths] == ["timeline.png"] == [p.name for p in tmp_path.iterdir()]
    why = dict(result.skipped)
    assert sorted(why) == sorted(f"{n}.png" for n in ALL if n != "timeline")
    assert why["parallel_coordinates.png"] == "no finished trial has a value for 'loss' yet"


def test_an_empty_sweep_draws_nothing_and_says_so(tmp_path):
    result = draw_plots(analyse([], metric="loss", scales=SCALES, levels=LEVELS), [], tmp_path)
    assert result.paths == () and list(tmp_path.iterdir()) == []
    assert dict(result.skipped) == {f"{n}.png": "the sweep has no trials yet" for n in ALL}


def test_too_few_trials_for_importance_says_how_many_are_needed(tmp_path):
    trials = int_sweep(2)
    why = dict(draw_plots(analyse(trials, metric="loss", scales=SCALES), trials, tmp_path).skipped)
    assert why == {"importance.png": "needs at least 3 finished trials with a value for 'loss', but got 2",
                   "correlation.png": "needs at least 3 finished trials with a value for 'loss', but got 2"}


def test_impurity_and_permutation_importance_have_their_own_labelled_axes():
    trials = int_sweep(40)
    result = analyse(trials, metric="loss", scales=SCALES, levels=LEVELS)
    fig = draw_figure("importance", result, trials)
    impurity, permutation = fig.axes
    assert impurity.get_title() == "impurity importance" and "sums to 1" in impurity.get_xlabel()
    assert permutation.get_title() == "permutation importance" and "drop in R²" in permutation.get_xlabel()
    assert "importance" != impurity.get_xlabel() and "importance" != permutation.get_xlabel()
    widths = [[bar.get_width() for bar in ax.patches] for ax in (impurity, permutation)]
    assert widths == [[r.importance for r in result.rows], [r.permutation for r in result.rows]]
    assert sum(widths[0]) == pytest.approx(1.0)
