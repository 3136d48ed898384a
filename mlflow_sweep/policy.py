"""What an agent does next, decided from the ledger's state alone (pure; STYLE §6).

``next_step`` runs inside the ledger lock when an agent claims: it returns the Proposal to
record, a ``Wait`` (nothing to hand out now, but running trials may free some), or a ``Done``
with the reason the sweep hands out no more trials. Every stopping rule lives here, once:
``run_cap``, ``metric.target``, and a grid whose points are all taken (SPEC §4, §4a).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence, Union

from mlflow_sweep import samplers
from mlflow_sweep.trials import DONE, Proposal, TrialState

if TYPE_CHECKING:
    from mlflow_sweep.config import SweepConfig
    from mlflow_sweep.trials import Trial


@dataclass(frozen=True)
class Wait:
    """Nothing to hand out now; ask again later (a running trial may free a grid point)."""

    reason: str


@dataclass(frozen=True)
class Done:
    """The sweep hands out no more trials, and why."""

    reason: str


Step = Union[Proposal, Wait, Done]


def target_reached(config: SweepConfig, trials: Sequence[Trial]) -> bool:
    """True once a finished trial's metric reaches ``metric.target`` (SPEC §4a)."""
    metric = config.metric
    if metric is None or metric.target is None:
        return False
    return any(t.state is TrialState.FINISHED and t.metric is not None and metric.reached(t.metric)
               for t in trials)


def _capped(config: SweepConfig, trials: Sequence[Trial]) -> str | None:
    """Why no trial may be claimed whatever the sampler says (run_cap, target), or None."""
    if config.run_cap is not None and len(trials) >= config.run_cap:
        return f"run_cap {config.run_cap} reached"
    if target_reached(config, trials):
        return f"metric target {config.metric.target} reached"  # type: ignore[union-attr]
    return None


def sweep_state(config: SweepConfig, trials: Sequence[Trial], seed: int) -> str:
    """``running`` or ``done`` (no trial runs and none will be handed out), as status and list show it.

    Only a grid asks its sampler (cheap); random and bayes end by run_cap or target alone.

    Args:
        config: the sweep's configuration.
        trials: every trial the ledger knows, in index order.
        seed: the sweep's effective seed.
    """
    if any(t.state is TrialState.RUNNING for t in trials):
        return "running"
    if _capped(config, trials):
        return "done"
    grid_left = config.method != "grid" or samplers.propose(config, trials, seed, len(trials)) is not DONE
    return "running" if grid_left else "done"


def next_step(config: SweepConfig, trials: Sequence[Trial], seed: int) -> Step:
    """The next trial to claim, a Wait, or Done with its reason.

    A grid point held by a running trial comes back if that trial's agent dies (SPEC §4), so
    an exhausted grid with trials still running is a Wait, not Done.

    Args:
        config: the sweep's configuration.
        trials: every trial the ledger knows, in index order.
        seed: the sweep's effective seed.
    """
    capped = _capped(config, trials)
    if capped:
        return Done(capped)
    proposal = samplers.propose(config, trials, seed, len(trials))
    if proposal is not DONE:
        return proposal
    if any(t.state is TrialState.RUNNING for t in trials):
        return Wait("every remaining grid point is held by a running trial")
    return Done("every grid point is taken")
