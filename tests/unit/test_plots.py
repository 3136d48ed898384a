"""Finalize plots (SPEC §5): which PNGs each kind of sweep gets, and that they are real images."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from mlflow_sweep.analysis import CATEGORICAL, LINEAR, LOG, analyse
from mlflow_sweep.plots import draw_plots
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
    return {p.stem: p for p in draw_plots(result, trials, tmp_path)}


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


def test_too_few_finished_trials_skip_the_importance_plots(tmp_path):
    trials, scales = sweep(10)
    trials = trials[:2] + trials[7:]  # two finished; failed, killed, running
    assert sorted(drawn(tmp_path, trials, scales)) == sorted(set(ALL) - {"importance", "correlation"})


def test_no_finished_trial_leaves_the_timeline(tmp_path):
    trials = [Trial(0, {"x": 1.0}, TrialState.FAILED, started=1.0, ended=2.0),
              Trial(1, {"x": 2.0}, TrialState.RUNNING, started=1.5)]
    assert sorted(drawn(tmp_path, trials, {"x": LINEAR})) == ["parallel_coordinates", "timeline"]


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
