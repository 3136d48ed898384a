"""The agent's settings from the environment (README "Agent settings"), each checked when read."""
from __future__ import annotations

import os

from mlflow_sweep.errors import UsageError

HEARTBEAT_TIMEOUT = "MLFLOW_SWEEP_HEARTBEAT_TIMEOUT"
EARLY_TERMINATE_INTERVAL = "MLFLOW_SWEEP_EARLY_TERMINATE_INTERVAL"
KILL_GRACE = "MLFLOW_SWEEP_KILL_GRACE"
POLL_INTERVAL = "MLFLOW_SWEEP_POLL_INTERVAL"
LOCK_TIMEOUT = "MLFLOW_SWEEP_LOCK_TIMEOUT"


def seconds(name: str, default: float, *, zero: bool = False) -> float:
    """A positive number of seconds from environment variable ``name``, or ``default`` if unset.

    Args:
        name: the environment variable.
        default: the value when it is unset or empty.
        zero: accept 0 too.
    """
    raw = os.environ.get(name, "")
    if not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{name} must be a number of seconds, but got {raw!r}") from None
    if not (value > 0 or (zero and value == 0)) or value == float("inf"):
        raise UsageError(f"{name} must be {'zero or ' * zero}positive, but got {raw!r}")
    return value


def heartbeat_timeout() -> float:
    """Seconds of agent silence after which its trial is dead (SPEC §4a)."""
    return seconds(HEARTBEAT_TIMEOUT, 120.0)


def early_terminate_interval() -> float:
    """Seconds between two hyperband checks of a running trial (issue 6)."""
    return seconds(EARLY_TERMINATE_INTERVAL, 5.0)


def kill_grace() -> float:
    """Seconds between SIGTERM and SIGKILL when a trial is stopped."""
    return seconds(KILL_GRACE, 10.0)


def poll_interval() -> float:
    """Seconds an agent waits before asking again for a grid point held by a running trial."""
    return seconds(POLL_INTERVAL, 1.0)


def lock_timeout() -> float:
    """Seconds an agent waits for the ledger's claim lock before it claims without it (exact, only slower).

    0 turns the lock off: agents race for every ledger event, which is exact but wastes decisions.
    """
    return seconds(LOCK_TIMEOUT, 30.0, zero=True)
