"""Finalize a sweep: reap dead trials, analyse the ledger, draw, record on the parent run.

``finalize_sweep`` returns a ``SweepReport``: the values a script reads (best run, params, value,
the importance rows) and the text ``mlflow sweep finalize`` prints. It prints nothing itself.
"""
from __future__ import annotations

import tempfile
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from mlflow_sweep.trials import Trial, TrialState

if TYPE_CHECKING:
    from mlflow_sweep.analysis import ParameterResult
    from mlflow_sweep.plots import Plots
    from mlflow_sweep.tracker import Tracker


@dataclass(frozen=True)
class SweepReport:
    """What ``mlflow_sweep.finalize`` found and recorded; ``str(report)`` is the CLI's text.

    ``best_params`` has the shape ``mlflow_sweep.params()`` gives a trial (nested blocks as dicts),
    so ``train(report.best_params)`` runs the best trial's setting again.
    """

    sweep_id: str
    metric: str | None
    goal: str
    best_run_id: str | None
    best_params: Mapping[str, Any] | None
    best_value: float | None
    importance: tuple[ParameterResult, ...]
    """One row per parameter, most important first: ``name``, ``importance``, ``permutation``,
    ``pearson``, ``spearman`` (empty with fewer than 3 completed trials or no metric)."""
    counts: Mapping[str, int]
    """Trials by state: ``finished``, ``failed``, ``killed``, ``running``."""
    plots: tuple[str, ...]
    """File names of the PNGs logged under ``plots/`` on the parent run."""
    text: str
    pareto_run_ids: tuple[str, ...] = ()
    """A sweep with several objectives: the run IDs of the non-dominated trials (tag
    ``sweep.pareto_run_ids``); ``best_*`` are then None, there being no single best."""
    importance_by_objective: Mapping[str, tuple[ParameterResult, ...]] = field(default_factory=dict)
    """A sweep with several objectives: the importance rows of each objective, by name."""
    prior_runs: int = 0
    """Prior runs the sweep started from; the table ranks them with the trials."""
    best_is_prior: bool = False
    """The best is a prior run (``best_run_id`` is that run), not a trial of this sweep."""

    def __str__(self) -> str:
        return self.text

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython shows the report's text, as the CLI prints it."""
        printer.text(self.text)


def finalize_sweep(sweep_id: str | None, *, tracker: Tracker | None = None) -> SweepReport:
    """Analyse a sweep, store the table, plots and best trial on its parent run, and return the report.

    Args:
        sweep_id: the sweep's parent run ID; None means the most recently initialized sweep.
        tracker: the tracking store; default: MLflow.
    """
    from mlflow_sweep import analysis, lifecycle, plots, policy, report

    opened = lifecycle.open_sweep(sweep_id, tracker=tracker)
    sweep, ledger, seed = opened.sweep, opened.ledger, opened.seed
    lifecycle.reap_dead(opened)  # finalize reaps too, so a dead agent's trial shows as failed
    state = ledger.state()
    trials, priors, config = state.trials, state.controls.priors, opened.config_in(state)
    if config.metrics:
        return _finalize_front(opened, config, trials, priors)
    # the table and the parameter plots show what fits the space in effect (the config may have changed)
    ranked = [t for t in (policy.in_space(config, t, state.controls.version) for t in [*priors, *trials])
              if t is not None]
    metric = config.metric
    result = analysis.analyse(trials, metric=metric.name if metric else None,
                              goal=metric.goal if metric else "minimize",
                              scales=analysis.param_scales(config.parameters), seed=seed,
                              levels=analysis.param_levels(config.parameters), priors=priors, ranked=ranked)
    text = f"Sweep {sweep.name} ({sweep.run_id})\n\n{report.render_report(result)}"
    if metric and result.best is None:
        text += _metric_hint(trials, metric.name, opened.tracker)
    with tempfile.TemporaryDirectory(prefix="mlflow-sweep-plots-") as tmp, \
            tempfile.TemporaryDirectory(prefix="mlflow-sweep-ledger-") as copy_dir:
        drawn = plots.draw_plots(result, trials, Path(tmp), ranked)
        copy = ledger.export(Path(copy_dir) / "ledger.jsonl")  # events/ holds one file per event
        opened.tracker.record_outcome(sweep, best=result.best, metric_name=metric.name if metric else None,
                                      table=text + "\n", plot_dir=Path(tmp), ledger_path=ledger.path,
                                      ledger_copy=copy)
    lifecycle.publish_state(opened)  # the parent ends only when the sweep does, not at finalize
    best = result.best
    return SweepReport(
        sweep_id=sweep.run_id, metric=result.metric, goal=result.goal,
        best_run_id=best.run_id if best else None,
        best_params=config.nest(best.params) if best else None,
        best_value=float(best.metric) if best and best.metric is not None else None,
        importance=tuple(result.rows), counts=dict(result.counts), plots=tuple(p.name for p in drawn.paths),
        text=f"{text}\n\n{_recorded(sweep.run_id, drawn, result.counts.get('running', 0))}",
        prior_runs=len(priors), best_is_prior=bool(best and best.prior))


def _finalize_front(opened: Any, config: Any, trials: Sequence[Trial], priors: Sequence[Trial]) -> SweepReport:
    """Finalize a sweep with several objectives: the Pareto front (prior runs among it, marked), a table
    per objective, the plots."""
    from mlflow_sweep import analysis, lifecycle, plots, report

    sweep, ledger = opened.sweep, opened.ledger
    objectives = config.objectives
    scored = analysis.scored([*priors, *trials], objectives)
    front = analysis.pareto_front(scored, objectives)
    each = analysis.analyse_each(trials, objectives, scales=analysis.param_scales(config.parameters),
                                 seed=opened.seed, levels=analysis.param_levels(config.parameters))
    blocks = [report.render_counts(analysis.count_states(trials)), report.render_front(front, objectives, len(scored))]
    blocks += [_objective_block(result) for result in each.values()]
    text = f"Sweep {sweep.name} ({sweep.run_id})\n\n" + "\n\n".join(b for b in blocks if b)
    run_ids = tuple(t.run_id for t in front if t.run_id)
    with tempfile.TemporaryDirectory(prefix="mlflow-sweep-plots-") as tmp, \
            tempfile.TemporaryDirectory(prefix="mlflow-sweep-ledger-") as copy_dir:
        drawn = plots.draw_front_plots(each, trials, objectives, Path(tmp), priors)
        copy = ledger.export(Path(copy_dir) / "ledger.jsonl")
        opened.tracker.record_outcome(sweep, best=None, metric_name=None, table=text + "\n", plot_dir=Path(tmp),
                                      ledger_path=ledger.path, ledger_copy=copy,
                                      tags={"sweep.pareto_run_ids": json.dumps(list(run_ids))})
    lifecycle.publish_state(opened)
    counts = analysis.count_states(trials)
    return SweepReport(
        sweep_id=sweep.run_id, metric=None, goal="minimize", best_run_id=None, best_params=None, best_value=None,
        importance=(), counts=counts, plots=tuple(p.name for p in drawn.paths),
        text=f"{text}\n\n{_recorded(sweep.run_id, drawn, counts.get('running', 0))}\n"
             f"Tag sweep.pareto_run_ids: the {len(run_ids)} run ID{'s' * (len(run_ids) != 1)} of the front",
        pareto_run_ids=run_ids,
        importance_by_objective={name: tuple(result.rows) for name, result in each.items()})


def _objective_block(result: Any) -> str:
    """One objective's importance table, or the note that says why it has none."""
    from mlflow_sweep import report

    table = report.render_table(result)
    if table:
        return table
    reason = result.notes[-1] if result.notes else "no table"
    return f"Parameter importance for {result.metric} ({result.goal}): none ({reason})"


def _metric_hint(trials: Sequence[Trial], name: str, tracker: Tracker) -> str:
    """When no finished trial has ``metric.name``, the metrics the last one's run does have (a typo in
    the sweep file, a logger that opened a run of its own); empty when there is nothing to say."""
    finished = [t for t in trials if t.state is TrialState.FINISHED and t.run_id]
    if not finished:
        return ""
    logged = tracker.metric_names(finished[-1].run_id)
    if name in logged:  # logged, but NaN: the notes say so
        return ""
    has = f"has {', '.join(logged)}" if logged else "has no metrics at all"
    return (f"\nTrial {finished[-1].index}'s run {has}: metric.name {name!r} in the sweep config must be the name "
            "the script logs with mlflow.log_metric")


def _by_reason(skipped: tuple[tuple[str, str], ...]) -> dict[str, list[str]]:
    """Plots left out, grouped by reason (an empty sweep has one reason for all six)."""
    groups: dict[str, list[str]] = {}
    for name, why in skipped:
        groups.setdefault(why, []).append(name)
    return groups


def _recorded(run_id: str, drawn: Plots, running: int) -> str:
    """What was stored on the parent run, which plots were left out and why, and a reminder when
    trials are still running."""
    names = ", ".join(p.name for p in drawn.paths) or "none"
    count = len(drawn.paths)
    lines = [f"Recorded on run {run_id}: sweep_summary.txt, {count} plot{'s' * (count != 1)} under plots/ ({names})"]
    lines += [f"Left out {', '.join(files)}: {why}" for why, files in _by_reason(drawn.skipped).items()]
    if running:
        lines.append(f"{running} trial{'s are' if running != 1 else ' is'} still running; "
                     "finalize again when the agents are done")
    return "\n".join(lines)
