"""Several objectives (``metrics:``): the config's rules, the counted values, the target, the Pareto
front (computed here from the trials' own values), its table and its PNG."""
from __future__ import annotations

import itertools
import sys

import pytest

from mlflow_sweep import analysis, plots, policy, report
from mlflow_sweep.config import config_from_dict, render_config, stored_config
from mlflow_sweep.errors import ConfigError
from mlflow_sweep.trials import Trial, TrialState

PARAMS = {"width": {"values": [1, 2, 4, 8]}, "depth": {"values": [1, 2, 3]}}
TWO = [{"name": "loss"}, {"name": "latency", "goal": "minimize"}]


def _config(**data):
    return config_from_dict({"command": "true", "parameters": PARAMS, **data}, "sweep.yaml")


def _problems(**data) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _config(**data)
    return [f"{p.path}: {p.reason}" for p in info.value.problems]


def test_metrics_as_wandb_writes_it():
    config = _config(method="grid", metrics=[{"name": "acc", "goal": "maximize"}, {"name": "ms", "summary": "last"}])
    assert [(m.name, m.goal, m.summary, m.impute) for m in config.objectives] == [
        ("acc", "maximize", "best", "worst"), ("ms", "minimize", "last", "worst")]
    assert config.metric is None
    assert "metrics:\n  acc (maximize; summary best, impute worst)\n  ms (minimize" in render_config(config)
    again = config_from_dict(config.raw, "again")  # the ledger keeps raw; it rebuilds the same config
    assert again.objectives == config.objectives


def test_metric_and_metrics_together_name_both():
    assert _problems(method="random", metric={"name": "loss"}, metrics=TWO) == [
        "metrics: cannot be given together with metric: use metric for one objective, metrics for several"]


@pytest.mark.parametrize("method", ["bayes", "cmaes"])
def test_a_method_of_one_objective_is_refused_naming_those_of_several(method: str):
    assert _problems(method=method, metrics=TWO) == [
        f"method: {method} optimizes one metric, but metrics has several; for several objectives use method "
        "tpe, gp, nsga2 (or grid, random)"]


def test_hyperband_and_duplicate_names_are_refused_with_their_paths():
    assert _problems(method="random", metrics=[*TWO, {"name": "loss"}],
                     early_terminate={"type": "hyperband", "min_iter": 2}) == [
        "early_terminate: hyperband ranks trials by one metric, so it cannot be used with metrics (several objectives)",
        "metrics[2].name: 'loss' is already metrics[0].name"]


def test_one_entry_is_not_several():
    assert _problems(method="grid", metrics=TWO[:1]) == ["metrics: must have at least 2 items"]


@pytest.mark.parametrize("method", ["tpe", "gp", "cmaes", "nsga2"])
def test_a_model_based_method_needs_a_metric(method: str):
    assert _problems(method=method) == [f"metric: missing (required for method {method})"]


def test_wandb_custom_method_with_the_optuna_engine_is_optunas_default():
    config = _config(method="custom", scheduler={"engine": "optuna"}, metrics=TWO)
    assert (config.method, config.raw["method"]) == ("tpe", "custom")


def test_wandb_scheduler_forms_we_cannot_run_are_refused():
    assert _problems(method="custom", metric={"name": "l"}) == [
        "method: custom needs a scheduler block that names the engine"]
    assert _problems(method="custom", metric={"name": "l"}, scheduler={"engine": "ax"}) == [
        "scheduler.engine: 'ax' is not supported (supported: optuna, wandb)"]
    assert _problems(method="bayes", metric={"name": "l"}, scheduler={"engine": "optuna"}) == [
        "method: 'bayes' cannot run on scheduler engine optuna: write method custom (Optuna's default sampler, TPE) "
        "or name one: tpe, gp, cmaes, nsga2"]
    assert _config(method="bayes", metric={"name": "l"}, scheduler={"engine": "wandb"}).method == "bayes"


def test_without_the_extra_the_error_names_the_install_command(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if it were not installed
    assert _problems(method="tpe", metrics=TWO) == [
        'method: method tpe (Optuna\'s TPESampler) needs optuna, which is not installed: '
        'pip install "mlflow-sweep[optuna]"']
    assert _config(method="grid", metrics=TWO).method == "grid"  # grid and random need nothing more
    stored = _config(method="grid", metrics=TWO).raw | {"method": "tpe"}
    assert stored_config(stored, "sweep x").method == "tpe"  # status and finalize read an existing sweep


def test_the_gp_says_to_install_pytorch(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    assert _problems(method="gp", metric={"name": "loss"}) == [
        "method: method gp (Optuna's GPSampler) needs torch, which is not installed: pip install torch "
        "(the CPU build is enough)"]


def test_the_sampler_says_what_to_install_when_an_agent_lacks_the_extra(monkeypatch: pytest.MonkeyPatch):
    from mlflow_sweep import samplers

    config = _config(method="nsga2", metrics=TWO)
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ConfigError, match=r'pip install "mlflow-sweep\[optuna\]"'):
        samplers.prepare(config.method)
    with pytest.raises(ConfigError, match="needs optuna"):
        samplers.propose(config, [], 0, 0)


def test_each_objective_is_counted_by_its_own_summary_and_goal():
    config = _config(method="random", metrics=[{"name": "acc", "goal": "maximize"}, {"name": "ms", "summary": "last"},
                                               {"name": "never"}])
    assert config.count({"acc": [0.5, 0.9, 0.7], "ms": [30.0, 20.0, 25.0], "other": [1.0]}) == {"acc": 0.9, "ms": 25.0}
    assert config.count({"acc": [float("nan")]}) == {}


def _trial(index: int, loss: float | None, latency: float | None, state=TrialState.FINISHED, **params) -> Trial:
    values = {k: v for k, v in (("loss", loss), ("latency", latency)) if v is not None}
    return Trial(index, params or {"width": index}, state, metrics=values, run_id=f"run{index}")


def test_the_target_of_every_objective_must_be_reached_by_one_trial():
    config = _config(method="random", metrics=[{"name": "loss", "target": 0.1}, {"name": "latency", "target": 5}])
    assert not policy.target_reached(config, [_trial(0, 0.05, 9.0), _trial(1, 0.5, 1.0)])
    assert not policy.target_reached(config, [_trial(0, 0.05, 1.0, TrialState.FAILED)])
    assert policy.target_reached(config, [_trial(0, 0.5, 1.0), _trial(1, 0.1, 5.0)])
    one = _config(method="random", metrics=[{"name": "loss"}, {"name": "latency", "target": 5}])
    assert policy.target_reached(one, [_trial(0, 9.0, 4.0)])
    assert "the targets of metrics loss 0.1, latency 5 reached" in str(policy.next_step(config, [_trial(1, 0.1, 5)], 0))


def _grid_trials() -> list[Trial]:
    trials = []
    for i, (w, d) in enumerate(itertools.product([1, 2, 4, 8], [1, 2, 3])):
        trials.append(_trial(i, 1.0 / (w * d), w * d + 0.1 * d, width=w, depth=d))
    trials.append(_trial(12, 0.0, 0.0, TrialState.FAILED, width=1, depth=1))  # failed: never on the front
    trials.append(_trial(13, 0.01, None, width=8, depth=3))  # no latency: not scored
    return trials


def _non_dominated(trials: list[Trial], names: list[str]) -> set[int]:
    """The front by definition, pair by pair, from the trials' own values (all minimized here)."""
    done = [t for t in trials if t.state is TrialState.FINISHED and all(v is not None for v in t.values(names))]
    beaten = {b.index for a in done for b in done
              if all(x <= y for x, y in zip(a.values(names), b.values(names))) and a.values(names) != b.values(names)}
    return {t.index for t in done} - beaten


def test_the_front_is_exactly_the_non_dominated_trials():
    trials, objectives = _grid_trials(), _config(method="grid", metrics=TWO).objectives
    front = analysis.pareto_front(trials, objectives)
    assert {t.index for t in front} == _non_dominated(trials, ["loss", "latency"])
    assert 0 < len(front) < 12


def test_a_maximized_objective_turns_the_order_around():
    objectives = _config(method="grid", metrics=[{"name": "loss", "goal": "maximize"}, {"name": "latency"}]).objectives
    trials = [_trial(0, 1.0, 1.0), _trial(1, 2.0, 1.0), _trial(2, 2.0, 0.5), _trial(3, 3.0, 3.0)]
    assert [t.index for t in analysis.pareto_front(trials, objectives)] == [2, 3]


def test_the_table_lists_the_front_and_no_dominated_trial():
    trials, objectives = _grid_trials(), _config(method="grid", metrics=TWO).objectives
    front = analysis.pareto_front(trials, objectives)
    text = report.render_front(front, objectives, len(analysis.scored(trials, objectives)))
    rows = {line.split(" | ")[0].strip() for line in text.splitlines()[2:]}
    assert rows == {f"#{t.index}" for t in front}
    assert text.splitlines()[0] == (f"Pareto front for loss (minimize), latency (minimize): {len(front)} of 12 "
                                    "trials with both values, none beaten on every objective by another")
    assert all(f"run{t.index} " in text for t in front)


def test_finalize_plots_for_several_objectives(tmp_path):
    trials, objectives = _grid_trials(), _config(method="grid", metrics=TWO).objectives
    each = analysis.analyse_each(trials, objectives, scales=analysis.param_scales(_config(method="grid").parameters))
    drawn = plots.draw_front_plots(each, trials, objectives, tmp_path)
    assert [p.name for p in drawn.paths] == ["pareto_front.png", "importance_loss.png", "importance_latency.png"]
    assert drawn.skipped == (("timeline.png", "no trial has started"),)
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000 for p in drawn.paths)
    assert (each["loss"].used, each["latency"].used) == (13, 12)  # trial 13 logged a loss only


def test_three_objectives_get_pairwise_panels(tmp_path):
    objectives = _config(method="grid", metrics=[*TWO, {"name": "size"}]).objectives
    trials = [Trial(i, {"width": i}, TrialState.FINISHED, metrics={"loss": i, "latency": 5 - i, "size": (i - 2) ** 2})
              for i in range(5)]
    figure = plots.front.pareto_front(analysis.scored(trials, objectives),
                                      analysis.pareto_front(trials, objectives), objectives)
    assert len([ax for ax in figure.axes if ax.get_visible()]) == 3


def test_status_shows_the_front_size():
    from mlflow_sweep.progress import render_status

    config = _config(method="grid", metrics=TWO)
    trials = _grid_trials()
    front = sorted(_non_dominated(trials, ["loss", "latency"]))
    text = render_status("s (id)", config, trials, [], now=0.0, timeout=120)
    assert "method grid, metrics loss (minimize), latency (minimize)" in text.splitlines()[0]
    assert f"Pareto front so far: {len(front)} trials ({', '.join(f'#{i}' for i in front)})" in text
