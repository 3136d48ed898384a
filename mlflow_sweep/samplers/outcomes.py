"""What a model-based sampler learns from each trial: its values to minimize, imputed where missing.

Shared by ``bayes`` and Optuna's methods, so a failed trial means the same to every model. Pure.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from mlflow_sweep.trials import TrialState, is_number

if TYPE_CHECKING:
    from mlflow_sweep.trials import Trial

PENDING = None
"""The value of a running trial: no value yet (a model treats it as pending)."""


def own_value(value: float | None, sign: float) -> float | None:
    """A counted value in minimization form, or None when it is missing or not finite."""
    if not is_number(value):
        return None
    return sign * float(value)


def observed(trial: Trial) -> bool:
    """Whether the trial's own values count as they are (finished, or stopped early by hyperband)."""
    ended_ok = trial.state is TrialState.FINISHED or trial.stopped_at is not None
    return ended_ok and not trial.dead


def targets(history: Sequence[Trial], objectives: Sequence[Any]) -> list[tuple[Trial, tuple | None]]:
    """Each trial with its values to minimize, one per objective; None marks a pending (running) trial.

    Failed, killed, dead and value-less trials follow each objective's ``impute`` (W&B's meaning):
    ``worst`` is the worst value any ended trial logged; ``best`` is the trial's own value (for a
    trial without one: the best value any trial logged); ``latest`` is the trial's own value,
    reduced by ``summary`` as every value here is, else ``worst``. Where nothing was logged
    anywhere there is nothing to impute and the trial is left out.

    Args:
        history: every trial so far, in any state.
        objectives: the config's ``objectives`` (``name``, ``goal``, ``impute``).
    """
    names = [m.name for m in objectives]
    ended = [t for t in history if t.state.is_terminal or t.dead]
    bounds = [_bounds(ended, names, k, m.sign) for k, m in enumerate(objectives)]
    out: list[tuple[Trial, tuple | None]] = []
    for t in history:
        if t.state is TrialState.RUNNING and not t.dead:
            out.append((t, PENDING))
            continue
        own = [own_value(v, m.sign) for v, m in zip(t.values(names), objectives)]
        values = tuple(_value(t, o, m.impute, *b) for o, m, b in zip(own, objectives, bounds))
        if all(v is not None for v in values):
            out.append((t, values))
    return out


def _bounds(ended: Sequence[Trial], names: Sequence[str], k: int, sign: float) -> tuple[float | None, float | None]:
    """(best, worst) of objective ``k`` over the ended trials, in minimization form."""
    values = [v for v in (own_value(t.values(names)[k], sign) for t in ended) if v is not None]
    return (min(values), max(values)) if values else (None, None)


def _value(t: Trial, own: float | None, impute: str, best: float | None, worst: float | None) -> float | None:
    """An ended trial's value: its own when it finished, else ``impute``'s (see ``targets``)."""
    if observed(t) and own is not None:
        return own
    if impute == "best":
        return own if own is not None else best
    if impute == "latest" and own is not None:
        return own
    return worst
