"""The agent's settings: each environment variable with its default and meaning, checked when read.

This table is their one owner: ``--help`` shows the defaults from it, and README's "Agent
settings" describes the same variables.
"""
from __future__ import annotations

import os

from mlflow_sweep.errors import UsageError

HEARTBEAT_TIMEOUT = "MLFLOW_SWEEP_HEARTBEAT_TIMEOUT"
KILL_GRACE = "MLFLOW_SWEEP_KILL_GRACE"
EARLY_TERMINATE_INTERVAL = "MLFLOW_SWEEP_EARLY_TERMINATE_INTERVAL"
POLL_INTERVAL = "MLFLOW_SWEEP_POLL_INTERVAL"
LOCK_TIMEOUT = "MLFLOW_SWEEP_LOCK_TIMEOUT"
SECONDS = {
    HEARTBEAT_TIMEOUT: (120.0, "seconds of silence after which an agent's trial counts as dead"),
    KILL_GRACE: (10.0, "seconds between SIGTERM and SIGKILL when a trial is stopped"),
    EARLY_TERMINATE_INTERVAL: (5.0, "seconds between hyperband checks of a running trial"),
    POLL_INTERVAL: (1.0, "seconds between an agent's looks at the ledger while it waits or runs a trial "
                         "(a paused sweep, cancel)"),
    LOCK_TIMEOUT: (30.0, "seconds an agent waits for the ledger's claim lock before it claims without it "
                         "(still exact, only slower); 0 turns the lock off"),
}
"""Each variable's default and what it means, in the order ``--help`` lists them."""
MAY_BE_ZERO = frozenset({LOCK_TIMEOUT})
"""The settings for which 0 means something (no lock); the others must be positive."""
MAX_FAILURES = 5
"""An agent stops after this many trials in a row failed (``--max-failures``)."""


def seconds(name: str) -> float:
    """A number of seconds from environment variable ``name``, or its default if unset.

    Args:
        name: the environment variable, one of ``SECONDS``; positive, or also 0 when in ``MAY_BE_ZERO``.
    """
    raw = os.environ.get(name, "")
    if not raw.strip():
        return SECONDS[name][0]
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{name} must be a number of seconds, but got {raw!r}") from None
    zero = name in MAY_BE_ZERO
    if not (value > 0 or (zero and value == 0)) or value == float("inf"):
        raise UsageError(f"{name} must be {'zero or ' * zero}positive, but got {raw!r}")
    return value


def heartbeat_timeout() -> float:
    """Seconds of agent silence after which its trial is dead and any agent, status or finalize reaps it."""
    return seconds(HEARTBEAT_TIMEOUT)


def early_terminate_interval() -> float:
    """Seconds between two hyperband checks of a running trial."""
    return seconds(EARLY_TERMINATE_INTERVAL)


def kill_grace() -> float:
    """Seconds between SIGTERM and SIGKILL when a trial is stopped."""
    return seconds(KILL_GRACE)


def poll_interval() -> float:
    """Seconds an agent waits before asking again for a grid point held by a running trial."""
    return seconds(POLL_INTERVAL)


def lock_timeout() -> float:
    """Seconds an agent waits for the ledger's claim lock before it claims without it (exact, only slower).

    0 turns the lock off: agents race for every ledger event, which is exact but wastes decisions.
    """
    return seconds(LOCK_TIMEOUT)
