"""What an agent does next, decided from the ledger's state alone (pure: testable with plain lists).

``next_step`` runs inside the ledger lock when an agent claims: it returns the Proposal to
record, a ``Wait`` (nothing to hand out now, but running trials may free some, or the sweep is
paused), or a ``Done`` with the reason the sweep hands out no more trials. Every stopping rule
lives here, once: the user's lifecycle commands, ``run_cap`` (or the value set by
``update --run-cap``), ``metric.target``, and a grid whose points are all taken.

What comes next, in this order: a requeued point, then an enqueued point, then a new point from
the sampler.

Requeued points. A trial whose agent was interrupted, or a FAILED trial
that ``retry`` named, is *requeued*: it no longer counts toward run_cap and its point waits in
the queue, which is handed out (in trial order) before any new point, with exactly the trial's
params. Samplers see the sweep as if the requeued trial were still pending until its point is
claimed again, then only the new trial: so grid keeps the point held (never handed out twice),
bayes treats it as a running trial, and random and bayes draw their n-th new point from
``(seed, n)`` where n counts fresh draws only, so the new points a sweep draws do not depend on
how many of its trials were interrupted. Requeued points come first: they are work already
begun, and ``retry`` promises them before new ones.

Enqueued points (``mlflow sweep enqueue``) come next, in the order they were enqueued, each
claimed once (its claim records its number); parameters a point leaves out are drawn from their
distributions with a generator seeded by the sweep's seed and the point's number, so every agent
draws the same values. An enqueued trial counts toward run_cap like any other, is history for
the sampler like any other, and is no fresh draw (random's and bayes' sequences stay as they are).

The history samplers see (``history``): the sweep's trials and its prior runs (``--prior-run``),
placed in the space of the config version in effect. A trial claimed under an earlier version,
and every prior run once the config changed, is placed by ``points.fit`` (a parameter it lacks
takes its ``default:`` or single ``value:``); one that does not fit the current space is left
out, so a grid runs the points of the new space that nothing covers and bayes learns from what
fits. A requeued or enqueued point that no longer fits the current space is skipped. Every
decision records the version it was made under (``Proposal.version``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Sequence, Union

from mlflow_sweep import points, samplers
from mlflow_sweep.warmstart import needs_values
from mlflow_sweep.trials import DONE, Controls, Proposal, SweepPhase, TrialState

if TYPE_CHECKING:
    from mlflow_sweep.config import SweepConfig
    from mlflow_sweep.trials import Enqueued, Trial

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


def requeued(config: SweepConfig, trials: Sequence[Trial], controls: Controls = _DEFAULT) -> list[Trial]:
    """The queue (``queue``) as the config in effect runs it: each point placed in its space, those that no longer fit left out."""
    placed = (in_space(config, t, controls.version) for t in queue(trials))
    return [t for t in placed if t is not None]


def enqueued(config: SweepConfig, trials: Sequence[Trial], controls: Controls = _DEFAULT) -> list[Enqueued]:
    """Enqueued points not claimed yet, in order, with their given values in the space in effect.

    A point whose values no longer fit (the config changed since) is left out.

    Args:
        config: the config in effect.
        trials: every trial the ledger knows.
        controls: the ledger's settings (the enqueued points).
    """
    if not controls.enqueued:
        return []
    claimed = {t.enqueued for t in trials if t.enqueued is not None}
    out = []
    for point in controls.enqueued:
        if point.number in claimed:
            continue
        params = points.partial(config, point.params)
        if params is not None:
            out.append(replace(point, params=params))
    return out


def _enqueued_proposal(config: SweepConfig, point: Enqueued, seed: int, version: int) -> Proposal:
    """The trial that runs enqueued ``point``: its missing parameters drawn from (seed, its number)."""
    import numpy

    rng = numpy.random.default_rng([seed % 2**128, 4, point.number])  # a stream of its own: (seed, 4, number)
    params = points.complete(config, point.params, rng)
    return Proposal(params=params, point=_grid_point(config, params), enqueued=point.number, version=version)


def _grid_point(config: SweepConfig, params: Any) -> int | None:
    if config.method != "grid":
        return None
    from mlflow_sweep.samplers.grid import point_of

    return point_of(config, params)


def sampler_view(trials: Sequence[Trial]) -> tuple[list[Trial], int]:
    """The history samplers see of a sweep without prior runs or config versions (see ``history``).

    A requeued trial still in the queue shows as pending (RUNNING, no metric); one whose point
    was claimed again is left out, its re-run stands for it.
    """
    waiting = {t.index for t in queue(trials)}
    view = [t if t.requeued is None else replace(t, state=TrialState.RUNNING, metric=None, metrics=None, dead=False)
            for t in trials if t.requeued is None or t.index in waiting]
    return view, fresh_draws(trials)


def fresh_draws(trials: Sequence[Trial]) -> int:
    """How many new points the sampler has drawn: the index of its next draw (re-runs and enqueued points aside)."""
    return sum(1 for t in trials if t.retry_of is None and t.enqueued is None)


def history(config: SweepConfig, trials: Sequence[Trial], controls: Controls = _DEFAULT) -> tuple[list[Trial], int]:
    """The history samplers see (prior runs first, in the space in effect), and the index of the next fresh draw.

    Args:
        config: the config in effect (version ``controls.version``).
        trials: every trial the ledger knows, in index order.
        controls: the ledger's settings (prior runs, config version).
    """
    view, draws = sampler_view(trials)
    if not controls.priors and all(t.version == controls.version for t in view):
        return view, draws  # the usual sweep: nothing to place
    placed = [t for t in (in_space(config, t, controls.version) for t in [*controls.priors, *view]) if t is not None]
    if needs_values(config):  # a prior run without a value is history for grid and random only
        names = [m.name for m in config.objectives]
        placed = [t for t in placed if not (t.prior and None in t.values(names))]
    return placed, draws


def in_space(config: SweepConfig, trial: Trial, version: int) -> Trial | None:
    """``trial`` as the config version in effect sees it, or None when it does not fit that space.

    A trial of the current version is as it is; one of an earlier version (or a prior run after
    a change) gets its params placed by ``points.fit`` and no grid point (its point numbered an
    older grid; the grid places it by its params).

    Args:
        config: the config in effect.
        trial: a trial or prior run.
        version: the number of the config version in effect.
    """
    if trial.version == version:
        return trial
    placed = points.fit(config, trial.params)
    if placed.params is None:
        return None
    return replace(trial, params=placed.params, point=None)


def target_reached(config: SweepConfig, trials: Sequence[Trial]) -> bool:
    """True once a finished trial reaches ``metric.target``.

    With several objectives, the trial must reach the target of every objective that has one
    (objectives without a target do not hold it back): one trial good enough on all counts.
    """
    aimed = [m for m in config.objectives if m.target is not None]
    if not aimed:
        return False
    names = [m.name for m in aimed]
    return any(t.state is TrialState.FINISHED
               and all(v is not None and m.reached(v) for m, v in zip(aimed, t.values(names)))
               for t in trials)


def target_text(config: SweepConfig) -> str:
    """The target(s) in words for the reason the sweep is done: ``metric target 0.1`` or each objective's."""
    if config.metrics:
        return "the targets of metrics " + ", ".join(f"{m.name} {m.target}" for m in config.metrics
                                                      if m.target is not None)
    return f"metric target {config.metric.target}"  # type: ignore[union-attr]


def _capped(config: SweepConfig, trials: Sequence[Trial], controls: Controls) -> str | None:
    """Why no trial may be claimed whatever the sampler says (run_cap, target), or None."""
    cap = run_cap(config, controls)
    if cap is not None and len(counted(trials)) >= cap:
        return f"run_cap {cap} reached"
    if target_reached(config, [*controls.priors, *trials]):
        return f"{target_text(config)} reached"
    return None


def _grid_left(config: SweepConfig, trials: Sequence[Trial], seed: int, controls: Controls) -> bool:
    """Whether the sampler has a new point (always, but for a grid; only grid is cheap to ask)."""
    if config.method != "grid":
        return True
    view, draws = history(config, trials, controls)
    return samplers.propose(config, view, seed, draws) is not DONE


def sweep_state(config: SweepConfig, trials: Sequence[Trial], seed: int, controls: Controls = _DEFAULT) -> SweepPhase:
    """The sweep's phase, as status, list and the parent run's ``sweep.state`` tag show it.

    ``stopped`` and ``cancelled`` are what the user asked; ``done`` means no trial runs and
    none will be handed out (run_cap or target reached, grid exhausted, no point requeued or enqueued);
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
                        or not (requeued(config, trials, controls) or enqueued(config, trials, controls)
                                or _grid_left(_with_cap(config, controls), trials, seed, controls))):
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
    version = controls.version
    waiting = requeued(config, trials, controls)
    if waiting:
        first = waiting[0]
        point = first.point if first.version == version else _grid_point(config, first.params)
        return Proposal(params=dict(first.params), point=point, retry_of=first.index, version=version)
    asked = enqueued(config, trials, controls)
    if asked:
        return _enqueued_proposal(config, asked[0], seed, version)
    view, draws = history(config, trials, controls)
    proposal = samplers.propose(_with_cap(config, controls), view, seed, draws)
    if proposal is not DONE:
        return proposal if version == 1 else replace(proposal, version=version)
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
