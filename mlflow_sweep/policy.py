"""What an agent does next, decided from the ledger's state alone (pure: testable with plain lists).

``next_step`` runs inside the ledger lock when an agent claims: it returns the Proposal to
record, a ``Wait`` (nothing to hand out now, but running trials may free some, or the sweep is
paused), or a ``Done`` with the reason the sweep hands out no more trials. Every stopping rule
lives here, once: the user's lifecycle commands, ``run_cap`` (or the value set by
``update --run-cap``), ``metric.target``, and a grid whose points are all taken.

Requeued points. A trial whose agent was interrupted, or a FAILED trial
that ``retry`` named, is *requeued*: it no longer counts toward run_cap and its point waits in
the queue, which is handed out (in trial order) before any new point, with exactly the trial's
params. Samplers see the sweep as if the requeued trial were still pending until its point is
claimed again, then only the new trial: so grid keeps the point held (never handed out twice),
bayes treats it as a running trial, and random and bayes draw their n-th new point from
``(seed, n)`` where n counts fresh draws only, so the new points a sweep draws do not depend on
how many of its trials were interrupted.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Sequence, Union

from mlflow_sweep import samplers
from mlflow_sweep.trials import DONE, Controls, Proposal, SweepPhase, TrialState

if TYPE_CHECKING:
    from mlflow_sweep.config import SweepConfig
    from mlflow_sweep.trials import Trial

_DEFAULT = Controls()


@dataclass(frozen=True)
class Wait:
    """Nothing to hand out now; ask again later (a running trial may free a grid point)."""

    reason: str


@dataclass(frozen=True)
class Done:
    """The sweep hands out no more trials, and why."""

    reason: str


Step = Union[Proposal, Wait, Done]


def run_cap(config: SweepConfig, controls: Controls = _DEFAULT) -> int | None:
    """The run_cap in effect: the last ``update --run-cap``, else the config's."""
    return controls.run_cap if controls.run_cap is not None else config.run_cap


def counted(trials: Sequence[Trial]) -> list[Trial]:
    """The trials that count toward run_cap: all but the requeued ones, whose points run again."""
    return [t for t in trials if t.requeued is None]


def queue(trials: Sequence[Trial]) -> list[Trial]:
    """Requeued trials whose point has not been claimed again, in trial order: handed out first."""
    rerun = {t.retry_of for t in trials if t.retry_of is not None}
    return [t for t in trials if t.requeued is not None and t.index not in rerun]


def sampler_view(trials: Sequence[Trial]) -> tuple[list[Trial], int]:
    """The history samplers see, and the index of the next fresh draw (see the module docstring).

    A requeued trial still in the queue shows as pending (RUNNING, no metric); one whose point
    was claimed again is left out, its re-run stands for it.
    """
    waiting = {t.index for t in queue(trials)}
    history = [t if t.requeued is None else replace(t, state=TrialState.RUNNING, metric=None, dead=False)
               for t in trials if t.requeued is None or t.index in waiting]
    return history, sum(1 for t in trials if t.retry_of is None)


def target_reached(config: SweepConfig, trials: Sequence[Trial]) -> bool:
    """True once a finished trial's metric reaches ``metric.target``."""
    metric = config.metric
    if metric is None or metric.target is None:
        return False
    return any(t.state is TrialState.FINISHED and t.metric is not None and metric.reached(t.metric)
               for t in trials)


def _capped(config: SweepConfig, trials: Sequence[Trial], controls: Controls) -> str | None:
    """Why no trial may be claimed whatever the sampler says (run_cap, target), or None."""
    cap = run_cap(config, controls)
    if cap is not None and len(counted(trials)) >= cap:
        return f"run_cap {cap} reached"
    if target_reached(config, trials):
        return f"metric target {config.metric.target} reached"  # type: ignore[union-attr]
    return None


def _grid_left(config: SweepConfig, trials: Sequence[Trial], seed: int) -> bool:
    """Whether the sampler has a new point (always, but for a grid; only grid is cheap to ask)."""
    if config.method != "grid":
        return True
    history, draws = sampler_view(trials)
    return samplers.propose(config, history, seed, draws) is not DONE


def sweep_state(config: SweepConfig, trials: Sequence[Trial], seed: int, controls: Controls = _DEFAULT) -> SweepPhase:
    """The sweep's phase, as status, list and the parent run's ``sweep.state`` tag show it.

    ``stopped`` and ``cancelled`` are what the user asked; ``done`` means no trial runs and
    none will be handed out (run_cap or target reached, grid exhausted, no point queued);
    otherwise ``paused`` or ``running``, as the user asked. Only a grid asks its sampler (cheap).

    Args:
        config: the sweep's configuration.
        trials: every trial the ledger knows, in index order.
        seed: the sweep's effective seed.
        controls: the ledger's lifecycle settings (``SweepState.controls``).
    """
    if not controls.state.runs_trials:
        return controls.state
    running = any(t.state is TrialState.RUNNING for t in trials)
    if not running and (_capped(config, trials, controls)
                        or not (queue(trials) or _grid_left(_with_cap(config, controls), trials, seed))):
        return SweepPhase.DONE
    return controls.state


def _with_cap(config: SweepConfig, controls: Controls) -> SweepConfig:
    return config if controls.run_cap is None else replace(config, run_cap=controls.run_cap)


def next_step(config: SweepConfig, trials: Sequence[Trial], seed: int, controls: Controls = _DEFAULT) -> Step:
    """The next trial to claim, a Wait, or Done with its reason.

    A grid point held by a running trial comes back if that trial's agent dies or is
    interrupted, so an exhausted grid with trials still running is a Wait, not
    Done. A paused sweep is a Wait too; a stopped or cancelled one is Done.

    Args:
        config: the sweep's configuration.
        trials: every trial the ledger knows, in index order.
        seed: the sweep's effective seed.
        controls: the ledger's lifecycle settings (``SweepState.controls``).
    """
    if not controls.state.runs_trials:
        return Done(f"the sweep is {controls.state}")
    capped = _capped(config, trials, controls)
    if capped:
        return Done(capped)
    if controls.state is SweepPhase.PAUSED:
        return Wait("the sweep is paused (mlflow sweep resume goes on)")
    waiting = queue(trials)
    if waiting:
        first = waiting[0]
        return Proposal(params=dict(first.params), point=first.point, retry_of=first.index)
    history, draws = sampler_view(trials)
    proposal = samplers.propose(_with_cap(config, controls), history, seed, draws)
    if proposal is not DONE:
        return proposal
    if any(t.state is TrialState.RUNNING for t in trials):
        return Wait("every remaining grid point is held by a running trial")
    return Done("every grid point is taken")


def retry_candidates(config: SweepConfig, trials: Sequence[Trial]) -> list[int]:
    """The FAILED trials whose points ``retry`` hands out again.

    A trial already requeued is not named twice. A grid trial reaped as dead is left out: the
    grid already handed its point out again.

    Args:
        config: the sweep's configuration.
        trials: every trial the ledger knows, in index order.
    """
    return [t.index for t in trials if t.state is TrialState.FAILED and t.requeued is None
            and not (t.dead and config.method == "grid")]


def control_change(command: str, controls: Controls, state: SweepPhase) -> SweepPhase | str:
    """The phase a lifecycle command records, or why it records nothing.

    (SweepPhase is a str Enum: tell the two apart with ``isinstance(x, SweepPhase)``.)

    ``resume`` goes on from paused, stopped or cancelled; ``stop`` and ``pause`` act on a sweep
    that can still run trials; ``cancel`` on one that is not done.

    Args:
        command: ``stop``, ``pause``, ``resume`` or ``cancel``.
        controls: the ledger's lifecycle settings.
        state: the sweep's state now (``sweep_state``).
    """
    asked = controls.state
    if command == "resume":
        if asked is SweepPhase.RUNNING:
            return ("the sweep is done; 'mlflow sweep update --run-cap N' or 'mlflow sweep retry' gives it more "
                    "trials") if state is SweepPhase.DONE else "the sweep is already running"
        return SweepPhase.RUNNING
    wanted = {"stop": SweepPhase.STOPPED, "pause": SweepPhase.PAUSED, "cancel": SweepPhase.CANCELLED}[command]
    if asked is wanted:
        return f"the sweep is already {wanted}"
    if asked is SweepPhase.CANCELLED or (asked is SweepPhase.STOPPED and wanted is SweepPhase.PAUSED):
        return f"the sweep is {asked}; 'mlflow sweep resume' starts it again"
    if state is SweepPhase.DONE:
        return f"the sweep is done; nothing to {command}"
    return wanted
