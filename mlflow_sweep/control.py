"""The sweep's lifecycle commands: stop, pause, resume, cancel, retry, update.

Each one opens the sweep, publishes its event in the ledger, decided on the freshest state (so
every agent on every host sees it at its next claim), shows the new state on the parent run, and returns a
``ControlResult``. A command that would change nothing (``stop`` on a stopped sweep, ``retry``
with no failed trial) writes nothing and says why. The CLI calls these and prints the message.
Heavy imports happen inside the functions, so ``import mlflow_sweep`` stays cheap.
"""
from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlflow_sweep.trials import SweepPhase, check_count

if TYPE_CHECKING:
    from mlflow_sweep.ledger import SweepState
    from mlflow_sweep.lifecycle import OpenSweep

_VERB = {"stop": "stopped", "pause": "paused", "resume": "resumed", "cancel": "cancelled"}
_EFFECT = {
    SweepPhase.STOPPED: "no new trial starts; running trials finish and agents exit",
    SweepPhase.PAUSED: "running trials finish; agents wait until 'mlflow sweep resume'",
    SweepPhase.CANCELLED: "running trials are being stopped (KILLED) and agents exit",
    SweepPhase.RUNNING: "agents claim trials again",
}
_RESUMABLE = (SweepPhase.PAUSED, SweepPhase.STOPPED, SweepPhase.CANCELLED)  # what 'resume' goes on from


@dataclass(frozen=True)
class ControlResult:
    """What a lifecycle command did: the sweep, its state afterwards, and a sentence for people.

    ``changed`` is False when the command wrote nothing. ``trials`` lists the trials ``retry``
    requeued.
    """

    sweep_id: str
    state: SweepPhase
    changed: bool
    message: str
    trials: tuple[int, ...] = ()

    def __str__(self) -> str:
        return self.message


def stop(sweep_id: str | None = None) -> ControlResult:
    """Stop a sweep: no new trial starts, running trials finish, agents exit 0.

    Args:
        sweep_id: the sweep's parent run ID; None means the most recently initialized sweep.
    """
    return _control(sweep_id, "stop")


def pause(sweep_id: str | None = None) -> ControlResult:
    """Pause a sweep: running trials finish, agents wait (they do not exit) until ``resume``.

    Args:
        sweep_id: the sweep's parent run ID; None means the most recently initialized sweep.
    """
    return _control(sweep_id, "pause")


def resume(sweep_id: str | None = None) -> ControlResult:
    """Resume a paused, stopped or cancelled sweep: agents claim trials again.

    Args:
        sweep_id: the sweep's parent run ID; None means the most recently initialized sweep.
    """
    return _control(sweep_id, "resume")


def cancel(sweep_id: str | None = None) -> ControlResult:
    """Cancel a sweep: running trials are stopped and end KILLED, agents exit.

    Args:
        sweep_id: the sweep's parent run ID; None means the most recently initialized sweep.
    """
    return _control(sweep_id, "cancel")


def retry(sweep_id: str | None = None) -> ControlResult:
    """Hand the points of the sweep's FAILED trials out again, before new ones, as new trials.

    Each retried point adds one trial to what the sweep runs; the new trial is tagged
    ``sweep.retry_of`` with the failed trial's index.

    Args:
        sweep_id: the sweep's parent run ID; None means the most recently initialized sweep.
    """
    from mlflow_sweep import lifecycle, policy
    from mlflow_sweep.ledger import Decision

    opened = lifecycle.open_sweep(sweep_id)
    lifecycle.reap_dead(opened.ledger)  # a trial whose agent died is FAILED, so it can be retried now

    def decide(state: SweepState) -> Decision[list[int]]:
        picked = policy.retry_candidates(opened.config, state.trials)
        event = {"event": "requeue", "trials": picked, "reason": "retry", "by": _who()} if picked else None
        return Decision(picked, event)

    committed = opened.ledger.commit(decide)
    picked, state = committed.value, committed.state
    if not picked:
        return _result(opened, state, False, "no failed trials to retry")
    shown = lifecycle.publish_state(opened)
    named = ", ".join(f"#{i}" for i in picked)
    message = f"{len(picked)} failed trial{'s' * (len(picked) != 1)} ({named}) will run again before new ones"
    if shown in _RESUMABLE:
        message += f"; the sweep is {shown}: 'mlflow sweep resume' lets agents run them"
    return _result(opened, state, True, message, tuple(picked), shown)


def update(sweep_id: str | None = None, *, run_cap: int) -> ControlResult:
    """Set the sweep's run_cap (raise or lower it); a done sweep with room for more trials runs again.

    Args:
        sweep_id: the sweep's parent run ID; None means the most recently initialized sweep.
        run_cap: the most trials the sweep runs in all (interrupted and retried trials aside).
    """
    from mlflow_sweep import lifecycle, policy
    from mlflow_sweep.ledger import Decision

    check_count(run_cap, "run_cap")
    opened = lifecycle.open_sweep(sweep_id)

    def decide(state: SweepState) -> Decision[int | None]:
        before = policy.run_cap(opened.config, state.controls)
        return Decision(before, None if before == run_cap else {"event": "run_cap", "run_cap": run_cap, "by": _who()})

    committed = opened.ledger.commit(decide)
    before, state = committed.value, committed.state
    if before == run_cap:
        return _result(opened, state, False, f"run_cap is already {run_cap}")
    shown = lifecycle.publish_state(opened)
    counted = len(policy.counted(state.trials))
    old = "the whole grid" if before is None else str(before)
    message = f"run_cap {old} -> {run_cap} ({counted} trial{'s' * (counted != 1)} counted so far); the sweep is {shown}"
    return _result(opened, state, True, message, shown=shown)


def _control(sweep_id: str | None, command: str) -> ControlResult:
    """Record the control state a command asks for, unless ``policy`` says it changes nothing."""
    from mlflow_sweep import lifecycle, policy
    from mlflow_sweep.ledger import Decision

    opened = lifecycle.open_sweep(sweep_id)

    def decide(state: SweepState) -> Decision[SweepPhase | str]:
        change = policy.control_change(command, state.controls, lifecycle.state_of(opened, state))
        # SweepPhase is a str Enum: test for it, not for str
        event = {"event": "control", "state": change.value, "by": _who()} if isinstance(change, SweepPhase) else None
        return Decision(change, event)

    committed = opened.ledger.commit(decide)
    change, state = committed.value, committed.state
    if not isinstance(change, SweepPhase):
        return _result(opened, state, False, change)
    shown = lifecycle.publish_state(opened)
    running = len(state.running())
    message = f"{_VERB[command]}: {_EFFECT.get(shown, 'it is done: nothing is left to run')}"
    if running and shown in _RESUMABLE:
        message += f" ({running} trial{'s' * (running != 1)} running now)"
    return _result(opened, state, True, message, shown=shown)


def _result(opened: OpenSweep, state: SweepState, changed: bool, message: str, trials: tuple[int, ...] = (),
            shown: SweepPhase | None = None) -> ControlResult:
    from mlflow_sweep import lifecycle

    name = shown or lifecycle.state_of(opened, state)
    return ControlResult(opened.sweep.run_id, name, changed, f"sweep {opened.sweep.run_id}: {message}", trials)


def _who() -> str:
    """Who gave the command, for the ledger's record: user@host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
