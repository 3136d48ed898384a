"""What a point means in a search space (points.py) and which MLflow runs a sweep starts from (warmstart.py)."""
from __future__ import annotations

import pytest

from mlflow_sweep.points import NOT_A_VALUE, check_points, coerce, fit, from_run, from_text, partial
from mlflow_sweep.tracker import RunRecord
from mlflow_sweep.warmstart import choose
from tests.unit.helpers import make_config

SPACE = make_config({
    "lr": {"min": 0.0001, "max": 0.1},
    "layers": {"min": 1, "max": 4},
    "opt": {"values": ["adam", "sgd"]},
    "bs": {"values": [16, 32]},
    "flag": {"values": [True, False]},
    "q": {"distribution": "q_uniform", "min": 0, "max": 10, "q": 2},
    "widths": {"values": [[1, 2], [3]]},
}, "bayes", metric={"name": "val_loss"})


@pytest.mark.parametrize(("name", "text", "value"), [
    ("lr", "0.01", 0.01), ("lr", "1e-3", 0.001), ("layers", "3", 3), ("layers", "3.0", 3), ("opt", "adam", "adam"),
    ("bs", "32", 32), ("bs", "32.0", 32), ("flag", "True", True), ("flag", "false", False), ("q", "4", 4),
    ("widths", "[1, 2]", [1, 2]), ("widths", "[3]", [3]),
])
def test_mlflow_text_becomes_the_declared_type(name, text, value):
    got = from_text(SPACE.parameters[name], text)
    assert (got, type(got)) == (value, type(value))


@pytest.mark.parametrize(("name", "text"), [
    ("lr", "5"), ("lr", "abc"), ("lr", "True"), ("layers", "2.5"), ("layers", "9"), ("opt", "rmsprop"),
    ("bs", "64"), ("flag", "1"), ("q", "3"), ("widths", "[2]"),
])
def test_text_outside_the_space_is_no_value(name, text):
    assert from_text(SPACE.parameters[name], text) is NOT_A_VALUE


def test_typed_values_are_matched_to_the_declared_type_and_never_across_kinds():
    lr, layers, bs, flag = (SPACE.parameters[n] for n in ("lr", "layers", "bs", "flag"))
    assert [coerce(lr, 0), type(coerce(lr, 0.1)), coerce(layers, 2.0), coerce(bs, 16.0)] == [NOT_A_VALUE, float, 2, 16]
    assert type(coerce(lr, 1 / 10)) is float and type(coerce(layers, 2.0)) is int
    assert [coerce(flag, 1), coerce(bs, True), coerce(layers, True)] == [NOT_A_VALUE] * 3


def test_fit_places_a_point_fills_defaults_and_single_values_and_says_why_not():
    config = make_config({"lr": {"values": [0.1, 0.01]}, "warmup": {"values": [0, 100], "default": 0},
                          "epochs": {"value": 10}}, "grid")
    assert fit(config, {"lr": 0.1, "gone": "x"}).params == {"lr": 0.1, "warmup": 0, "epochs": 10}
    assert (fit(config, {"lr": 0.5}).why, fit(config, {"lr": 0.5}).name) == ("outside", "lr")
    bare = make_config({"lr": {"values": [0.1]}, "warmup": {"values": [0, 100]}}, "grid")
    assert (fit(bare, {"lr": 0.1}).params, fit(bare, {"lr": 0.1}).why, fit(bare, {"lr": 0.1}).name) == \
        (None, "missing", "warmup")
    assert from_run(config, {"lr": "0.01", "warmup": "100"}).params == {"lr": 0.01, "warmup": 100, "epochs": 10}


def test_points_to_enqueue_are_checked_with_their_paths_and_typed():
    config = make_config({"lr": {"min": 0.0, "max": 1.0}, "opt": {"parameters": {"name": {"values": ["a", "b"]}}}})
    checked, problems = check_points(config, [{"lr": 1, "opt": {"name": "b"}}, {"opt.name": "a"}])
    assert (checked, problems) == ([{"lr": 1.0, "opt.name": "b"}, {"opt.name": "a"}], [])
    _, problems = check_points(config, [{"lr": 0.5}, {"lr": 2.0, "l": 1}, "x"])
    assert [str(p) for p in problems] == [
        "[1].lr: 2.0 is outside the search space: uniform(min=0.0, max=1.0)",
        "[1].l: is not a parameter of the sweep (did you mean 'lr'?)",
        "[2]: 'x' is not a mapping of parameter names to values"]


def test_an_enqueued_point_is_placed_again_in_a_changed_space():
    narrower = make_config({"lr": {"min": 0.0, "max": 0.5}})
    assert [partial(narrower, {"lr": 0.2, "gone": 1}), partial(narrower, {"lr": 0.7})] == [{"lr": 0.2}, None]


def _run(run_id, params, history=(0.5,), status="FINISHED", tags=None, metric="val_loss"):
    return RunRecord(run_id, status, params, tags or {}, {metric: tuple(history)})


def test_prior_runs_are_used_or_left_out_with_their_reason_and_counted_once():
    good = {"lr": "0.01", "layers": "2", "opt": "adam", "bs": "32", "flag": "True", "q": "4", "widths": "[3]"}
    records = [
        _run("a", good, (0.9, 0.3, 0.4)), _run("b", {**good, "lr": "5"}), _run("c", {**good, "lr": "7"}),
        _run("d", {k: v for k, v in good.items() if k != "bs"}), _run("e", good, ()), _run("f", good, status="FAILED"),
        _run("g", {}, tags={"sweep": "True"}), _run("a", good),
    ]
    choice = choose(SPACE, records)
    assert choice.summary() == ("7 prior runs: 1 used, 2 outside the space (lr), 1 missing a parameter (bs), "
                                "1 without val_loss, 1 not finished (FAILED), 1 sweep parent run")
    assert choice.used == ({"run_id": "a", "metric": 0.3, "params": {
        "lr": 0.01, "layers": 2, "opt": "adam", "bs": 32, "flag": True, "q": 4, "widths": [3]}},)


def test_a_prior_run_without_the_metric_covers_its_grid_point_and_hyperband_keeps_histories():
    grid = make_config({"x": {"values": [1, 2]}}, "grid", metric={"name": "loss", "goal": "maximize"})
    assert choose(grid, [_run("a", {"x": "2"}, (), metric="loss")]).used == (
        {"run_id": "a", "params": {"x": 2}, "metric": None},)
    banded = make_config({"x": {"values": [1, 2]}}, "random", metric={"name": "loss", "summary": "last"})
    banded = type(banded)(**{**banded.__dict__, "early_terminate": {"type": "hyperband", "min_iter": 1}})
    assert choose(banded, [_run("a", {"x": "1"}, (3.0, 2.0, 2.5), metric="loss")]).used == (
        {"run_id": "a", "params": {"x": 1}, "metric": 2.5, "history": [3.0, 2.0, 2.5]},)


def test_with_several_objectives_a_prior_run_keeps_each_value_and_a_model_needs_every_one():
    config = make_config({"x": {"values": [1, 2]}}, "nsga2",
                         metrics=[{"name": "loss"}, {"name": "latency", "goal": "minimize"}])
    both = RunRecord("a", "FINISHED", {"x": "1"}, {}, {"loss": (0.5, 0.4), "latency": (30.0,)})
    one = RunRecord("b", "FINISHED", {"x": "2"}, {}, {"loss": (0.3,), "latency": ()})
    choice = choose(config, [both, one])
    assert choice.used == ({"run_id": "a", "params": {"x": 1}, "metric": None,
                            "metrics": {"loss": 0.4, "latency": 30.0}},)
    assert choice.summary() == "2 prior runs: 1 used, 1 without a value of every objective (latency)"
