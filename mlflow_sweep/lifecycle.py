"""A sweep's life outside any one agent: create it, open it by ID, reap trials of dead agents,
show its state on the parent run.

Everything here is the glue between the tracking store (the parent run) and the ledger; the
agent loop, ``status``, ``finalize`` and the lifecycle commands all open a sweep the same way.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlflow_sweep import policy, settings, tracking
from mlflow_sweep.ledger import Ledger
from mlflow_sweep.trials import SweepPhase, Trial, TrialState

if TYPE_CHECKING:
    from mlflow_sweep.config import SweepConfig
    from mlflow_sweep.ledger import SweepState


@dataclass(frozen=True)
class OpenSweep:
    """A sweep ready to use: the parent run, its ledger, the config and seed from the ledger header."""

    sweep: tracking.Sweep
    ledger: Ledger
    config: SweepConfig
    seed: int


def init_sweep(config: SweepConfig, config_path: str) -> tracking.Sweep:
    """Create the parent run and the sweep's ledger; the seed is drawn now when the file has none."""
    seed = config.seed if config.seed is not None else secrets.randbits(31)
    sweep = tracking.create_sweep(config, config_path)
    header = {"config": config.raw, "seed": seed, "sweep_id": sweep.run_id, "created": time.time()}
    Ledger.create(sweep.ledger_dir, header)
    return sweep


def open_sweep(sweep_id: str | None) -> OpenSweep:
    """Find a sweep (the latest one when ``sweep_id`` is None) and rebuild its config from the ledger."""
    from mlflow_sweep.config import config_from_dict

    sweep = tracking.find_sweep(sweep_id)
    lock_timeout = settings.lock_timeout()
    ledger = Ledger(sweep.ledger_dir, lock=lock_timeout > 0, lock_timeout=lock_timeout)
    header = ledger.state().header
    config = config_from_dict(header["config"], f"sweep {sweep.run_id}")
    return OpenSweep(sweep, ledger, config, int(header["seed"]))


def reap_dead(ledger: Ledger) -> list[Trial]:
    """Mark trials whose agent went silent as dead in the ledger and FAILED in MLflow (SPEC §4a).

    The run gets the params its trial did not log, as a trial's own agent does at its end.
    """
    reaped = ledger.reap(settings.heartbeat_timeout())
    for trial in reaped:
        if trial.run_id:
            tracking.settle_trial(trial.run_id, trial.params)  # its agent died before it could (#13)
            tracking.end_run(trial.run_id, TrialState.FAILED)
    return reaped


def state_of(opened: OpenSweep, state: SweepState | None = None) -> SweepPhase:
    """The sweep's state (running, paused, stopped, cancelled, done) from its ledger (SPEC §4b).

    Args:
        opened: the sweep.
        state: the ledger's state when the caller has it fresh; read (lock-free) when None.
    """
    state = opened.ledger.state() if state is None else state
    return policy.sweep_state(opened.config, state.trials, opened.seed, state.controls)


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
        tracking.set_sweep_state(opened.sweep.run_id, current)
        shown = current
    return shown or state_of(opened)
