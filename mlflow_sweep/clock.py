"""Time as the agent sees it: one small interface, so tests can drive it instead of sleeping.

An agent waits in four places: between looks at a paused sweep (the poll interval), in its watch
thread (cancel checks and hyperband cuts), in its heartbeat thread, and when it measures how long
a trial took. Each goes through a ``Clock``. ``SYSTEM`` is the real one; a test passes a clock whose
time moves only when the test (or a sleeping agent) moves it, so a 120 s heartbeat timeout or a
5 s hyperband interval costs no real second.
"""
from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Wall time, a monotonic time, and the two ways of waiting the agent uses."""

    def time(self) -> float:
        """Seconds since the epoch (written into ledger events and heartbeats)."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going back (durations and deadlines)."""

    def sleep(self, seconds: float) -> None:
        """Pause the calling thread for ``seconds``."""

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Wait until ``event`` is set or ``timeout`` seconds passed; return whether it is set."""


class SystemClock:
    """The machine's clock: ``time.time``, ``time.monotonic``, ``time.sleep`` and ``Event.wait``."""

    def time(self) -> float:
        """Seconds since the epoch."""
        return time.time()

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """``time.sleep(seconds)``."""
        time.sleep(seconds)

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """``event.wait(timeout)``."""
        return event.wait(timeout)


SYSTEM = SystemClock()
