"""Plain-text finalize output: the importance table, the best trial and notes; pure strings."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from mlflow_sweep.analysis import CATEGORICAL, Analysis, ParameterResult, category_label
from mlflow_sweep.trials import is_number

_COLUMNS = ("Importance", "Permutation Importance", "Pearson", "Spearman")


def render_table(analysis: Analysis) -> str:
    """The importance table: a title, a header, one row per parameter sorted by importance.

    Args:
        analysis: the result of ``analysis.analyse``; empty rows give an empty string.
    """
    if not analysis.rows:
        return ""
    width = max(len("Parameter"), *(len(r.name) for r in analysis.rows)) + 1
    title = (f"Parameter importance for {analysis.metric} ({analysis.goal}), "
             f"{analysis.used} trial{'s' * (analysis.used != 1)}")
    header = " | ".join([f"{'Parameter':<{width}}", *_COLUMNS])
    return "\n".join([title, header, *(_row(r, width) for r in analysis.rows)])


def _row(row: ParameterResult, width: int) -> str:
    cells = (row.importance, row.permutation, row.pearson, row.spearman)
    return " | ".join([f"{row.name:<{width}}",
                       *(f"{_number(v):>{len(c)}}" for v, c in zip(cells, _COLUMNS))])


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def render_best(analysis: Analysis) -> str:
    """The best trial: index, run ID, metric value and parameters; or why there is none.

    Args:
        analysis: the result of ``analysis.analyse``.
    """
    best = analysis.best
    if analysis.metric is None:
        return "Best trial: none (no metric configured)"
    if best is None:
        return f"Best trial: none (no finished trial logged a value for {analysis.metric!r})"
    which = f"prior run {best.run_id} (not run by this sweep)" if best.prior else \
        f"#{best.index} (run {best.run_id or 'unknown'})"
    lines = [f"Best trial: {which}",
             f"  {analysis.metric} = {format_value(best.metric)} ({analysis.goal})"]
    lines += [f"  {name} = {format_value(value)}" for name, value in best.params.items()]
    return "\n".join(lines)


def render_counts(counts: Mapping[str, int]) -> str:
    """One line of trials by state, e.g. ``12 trials: 10 finished, 1 failed, 1 killed, 0 running``."""
    total = sum(counts.values())
    order = ("finished", "failed", "killed", "running")
    parts = [f"{counts.get(state, 0)} {state}" for state in order]
    return f"{total} trial{'s' * (total != 1)}: " + ", ".join(parts)


def render_report(analysis: Analysis) -> str:
    """Everything finalize prints: counts, notes, the table (with a categorical footnote), the best trial.

    Args:
        analysis: the result of ``analysis.analyse``.
    """
    blocks = [render_counts(analysis.counts)]
    if analysis.notes:
        blocks.append("\n".join(f"note: {n}" for n in analysis.notes))
    table = render_table(analysis)
    if table:
        blocks.append(table)
    footnote = _categorical_footnote(analysis.rows)
    if footnote:
        blocks.append(footnote)
    blocks.append(render_best(analysis))
    return "\n\n".join(blocks)


def _categorical_footnote(rows: Sequence[ParameterResult]) -> str:
    names = [r.name for r in rows if r.scale == CATEGORICAL and r.varies]
    if not names:
        return ""
    return (f"Categorical {', '.join(names)}: Pearson and Spearman are taken against each "
            "category's mean metric, so they give strength, not direction.")


def format_value(value: Any) -> str:
    """A parameter or metric value as a user reads it: numbers to 6 significant digits."""
    if isinstance(value, float) and is_number(value):
        return f"{value:.6g}"
    return category_label(value) if not isinstance(value, (int, float)) else str(value)



def render_front(front: Sequence[Any], objectives: Sequence[Any], scored: int) -> str:
    """The Pareto front as a plain table: one row per non-dominated trial (values, run ID, parameters).

    Rows are sorted by the first objective in its goal's direction, so the table reads along the
    front from one end to the other.

    Args:
        front: the non-dominated trials (``analysis.pareto_front``).
        objectives: the config's ``objectives`` (``name``, ``goal``).
        scored: how many trials had a value for every objective (the front is taken among them).
    """
    goals = ", ".join(f"{m.name} ({m.goal})" for m in objectives)
    if not front:
        return f"Pareto front for {goals}: none yet (no finished trial has a value for every objective)"
    names = [m.name for m in objectives]
    params = list(dict.fromkeys(p for t in front for p in t.params))
    first = objectives[0]
    rows = sorted(front, key=lambda t: (first.sign * t.values(names)[0], t.index))
    header = ["Trial", "Run ID", *names, *params]
    body = [["prior" if t.prior else f"#{t.index}", t.run_id or "unknown",
             *(format_value(v) for v in t.values(names)),
             *(format_value(t.params[p]) if p in t.params else "" for p in params)] for t in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    each = "both values" if len(objectives) == 2 else "every value"
    title = (f"Pareto front for {goals}: {len(front)} of {scored} trial{'s' * (scored != 1)} with {each}, "
             f"none beaten on every objective by another")
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *body]]
    return "\n".join([title, *lines])
