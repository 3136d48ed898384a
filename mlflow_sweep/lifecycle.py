"""A sweep's life outside any one agent: create it, open it by ID, reap trials of dead agents,
show its state on the parent run.

Everything here is the glue between the tracking store (the parent run, through a
``tracker.Tracker``) and the ledger; the agent loop, ``status``, ``finalize`` and the lifecycle
commands all open a sweep the same way, and what they open carries the tracker and the clock
they use.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from mlflow_sweep import policy, settings
from mlflow_sweep.clock import SYSTEM, Clock
from mlflow_sweep.ledger import Ledger
from mlflow_sweep.tracker import REAPED_TAG, Sweep, Tracker
from mlflow_sweep.trials import SweepPhase, Trial, TrialState

if TYPE_CHECKING:
    from mlflow_sweep.config import SweepConfig
    from mlflow_sweep.ledger import SweepState


def _mlflow() -> Tracker:
    from mlflow_sweep.tracking import MLFLOW

    return MLFLOW


@dataclass(frozen=True)
class OpenSweep:
    """A sweep ready to use: the parent run, its ledger, the config in effect when it was opened and
    the seed from the ledger, and the tracking store and clock every command on it uses.

    The config can change while the sweep runs (``mlflow sweep update --config``): ``config_in``
    gives the version in effect in a state of the ledger, ``config_at`` any version by number.
    """

    sweep: Sweep
    ledger: Ledger
    config: SweepConfig
    seed: int
    tracker: Tracker = field(default_factory=_mlflow)
    clock: Clock = SYSTEM
    versions: dict[int, SweepConfig] = field(default_factory=dict, compare=False, repr=False)
    """The config versions built so far, by number (each is built once)."""

    def config_in(self, state: SweepState) -> SweepConfig:
        """The config in effect in ``state`` (its last version).

        Args:
            state: a state of this sweep's ledger.
        """
        return self.config_at(state.controls.version, state)

    def config_at(self, version: int, state: SweepState | None = None) -> SweepConfig:
        """Version ``version`` of the sweep's config (1: the one it was created with).

        Args:
            version: the version's number, as a trial records it (``Trial.version``).
            state: a state of the ledger that has the version; read when None and the version is new here.
        """
        built = self.versions.get(version)
        if built is None:
            from mlflow_sweep.config import stored_config

            state = state if state is not None and len(state.configs) >= version else self.ledger.state()
            built = stored_config(state.configs[version - 1].config, f"sweep {self.sweep.run_id}")
            self.versions[version] = built
        return built


def init_sweep(config: SweepConfig, config_path: str, *, tracker: Tracker | None = None,
               clock: Clock = SYSTEM, priors: Sequence[Mapping[str, Any]] = ()) -> Sweep:
    """Create the parent run and the sweep's ledger; the seed is drawn now when the file has none.

    Args:
        config: the checked config.
        config_path: the file to keep with the parent run.
        tracker: the tracking store; default: MLflow.
        clock: the time written into the ledger's header.
        priors: the prior runs the sweep starts from, as ``warmstart.choose`` records them; in the
            header, so no agent ever sees the sweep without them.
    """
    seed = config.seed if config.seed is not None else secrets.randbits(31)
    sweep = (tracker or _mlflow()).create_sweep(config, config_path)
    header: dict[str, Any] = {"config": config.raw, "seed": seed, "sweep_id": sweep.run_id, "created": clock.time()}
    if priors:
        header["priors"] = [dict(prior) for prior in priors]
    Ledger.create(sweep.ledger_dir, header, clock=clock.time)
    return sweep


def open_sweep(sweep_id: str | None, *, tracker: Tracker | None = None, clock: Clock = SYSTEM) -> OpenSweep:
    """Find a sweep (the latest one when ``sweep_id`` is None) and rebuild its config from the ledger.

    The stored config was checked when the sweep was made and is not checked again
    (``config.stored_config``), so a sweep stays usable after an upgrade that tightened a rule.

    Args:
        sweep_id: the sweep's parent run ID; None means the most recently initialized sweep.
        tracker: the tracking store; default: MLflow.
        clock: the time the ledger writes and judges heartbeats by, and the agent waits with.
    """
    from mlflow_sweep.config import stored_config

    tracker = tracker or _mlflow()
    sweep = tracker.find_sweep(sweep_id)
    lock_timeout = settings.lock_timeout()  # 0: no claim lock
    ledger = Ledger(sweep.ledger_dir, lock=lock_timeout > 0, lock_timeout=lock_timeout, clock=clock.time)
    state = ledger.state()
    config = stored_config(state.config, f"sweep {sweep.run_id}")
    return OpenSweep(sweep, ledger, config, int(state.header["seed"]), tracker, clock,
                     {state.controls.version: config})


def reap_dead(opened: OpenSweep, timeout: float | None = None) -> list[Trial]:
    """Mark trials whose agent went silent as dead in the ledger and FAILED in the tracking store.

    Every trial the ledger counts gets a child run: a reaped trial that has one gets the params its
    trial did not log (as its own agent would have at its end); one whose agent died between its
    claim and its child run gets a FAILED run made now, linked to the trial in the ledger. Both
    carry the reason as the tag ``sweep.reaped``. Only the agent whose ``dead`` event won reaps a
    trial, so no trial gets two runs from reapers.

    Args:
        opened: the sweep.
        timeout: seconds of silence after which an agent is dead; default: the heartbeat timeout setting.
    """
    timeout = settings.heartbeat_timeout() if timeout is None else timeout
    reaped = opened.ledger.reap(timeout)
    tracker = opened.tracker
    for trial in reaped:
        reason = f"its agent {trial.agent_id or '(unknown)'} sent no heartbeat for {timeout:g} s"
        if trial.run_id:
            tracker.settle_trial(trial.run_id, trial.params)  # its agent died before it could
            tracker.end_trial(trial.run_id, TrialState.FAILED, None, {REAPED_TAG: reason})
        else:
            opened.ledger.start(trial.index, tracker.fail_trial(opened.sweep, trial, reason))
    return reaped


def state_of(opened: OpenSweep, state: SweepState | None = None) -> SweepPhase:
    """The sweep's state (running, paused, stopped, cancelled, done) from its ledger.

    Args:
        opened: the sweep.
        state: the ledger's state when the caller has it fresh; read (lock-free) when None.
    """
    state = opened.ledger.state() if state is None else state
    return policy.sweep_state(opened.config_in(state), state.trials, opened.seed, state.controls)


def publish_state(opened: OpenSweep, *, only_ended: bool = False) -> SweepPhase:
    """Show the sweep's state on its parent run (tag ``sweep.state`` and the run's status); return it.

    The state is read again after writing and written again if it changed meanwhile (another
    agent or command acting at the same moment), so the last writer shows the last state.

    Args:
        opened: the sweep.
        only_ended: write only a state in which the sweep runs no more trials (stopped,
            cancelled, done): an agent leaving a running sweep leaves the parent as it is.
    """
    shown = None
    for _ in range(3):
        current = state_of(opened)
        if current == shown or (only_ended and current.runs_trials):
            break
        opened.tracker.set_sweep_state(opened.sweep.run_id, current)
        shown = current
    return shown or state_of(opened)
