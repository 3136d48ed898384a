"""Test doubles for the agent: a clock the test drives and a runner whose trials are Python callables.

With them (and ``MemoryTracker``, a real ledger in tmp_path) every decision of the agent runs in
milliseconds: a 120 s heartbeat timeout or a 5 s hyperband interval is virtual time.
"""
from __future__ import annotations

import heapq
import itertools
import threading
from pathlib import Path
from typing import Any, Callable

from mlflow_sweep import lifecycle
from mlflow_sweep.config import config_from_dict
from mlflow_sweep.memory_tracker import MemoryTracker
from mlflow_sweep.runners import STOPPED_CODE, StopRequest
from mlflow_sweep.trials import Trial

REAL_WAIT = 10.0
"""Real seconds a double waits for something that must happen at once (a bound, never reached when all is well)."""


class ManualClock:
    """Virtual time for one test.

    Time moves only when the test's own thread (the one that made the clock, which runs the agent's
    loop and its trials) sleeps or waits — instantly, by the time asked — or calls ``advance``.
    Another thread's wait (the agent's watch and heartbeat threads) ends when virtual time passes
    its deadline or its event is set. ``call_at`` runs a function when virtual time reaches a moment
    (a command given "while the agent waits").
    """

    EPOCH = 1_700_000_000.0

    def __init__(self) -> None:
        self._now = 0.0
        self._driver = threading.get_ident()
        self._cond = threading.Condition()
        self._alarms: list[tuple[float, int, Callable[[], Any]]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self.EPOCH + self._now

    def monotonic(self) -> float:
        return self._now

    def call_at(self, when: float, function: Callable[[], Any]) -> None:
        """Run ``function`` (in the advancing thread) once virtual time reaches ``when``."""
        heapq.heappush(self._alarms, (when, next(self._order), function))

    def advance(self, seconds: float) -> None:
        """Move virtual time forward, running the alarms that fall due on the way."""
        target = self._now + max(seconds, 0.0)
        while self._alarms and self._alarms[0][0] <= target:
            when, _, function = heapq.heappop(self._alarms)
            self._set(max(when, self._now))
            function()
        self._set(target)

    def sleep(self, seconds: float) -> None:
        if threading.get_ident() == self._driver:
            self.advance(seconds)
        else:
            self.wait(threading.Event(), seconds)

    def wait(self, event: threading.Event, timeout: float) -> bool:
        if event.is_set():
            return True
        if threading.get_ident() == self._driver:
            self.advance(timeout)
            return event.is_set()
        deadline = self._now + timeout
        while not event.is_set():
            with self._cond:
                if self._now >= deadline:
                    return False
                self._cond.wait(0.002)  # woken by advance; an event set meanwhile is seen within 2 ms
        return True

    def _set(self, now: float) -> None:
        with self._cond:
            self._now = now
            self._cond.notify_all()


Behave = Callable[[Trial, str, StopRequest], int]


class StandIn:
    """A ``TrialRunner`` whose trial is ``behave(trial, run_id, stop) -> exit code``.

    It keeps the runner's contract: a trial asked to stop before it starts is not started. While
    ``behave`` runs, ``interrupt`` and ``kill`` reach it (True), as they reach a running command.
    """

    def __init__(self, behave: Behave = lambda trial, run_id, stop: 0) -> None:
        self.behave = behave
        self.started: list[int] = []
        self.interrupts = 0
        self.kills = 0
        self.closed = False
        self._running = False

    def run(self, trial: Trial, run_id: str, output: Path, stop: StopRequest) -> int:
        if stop.is_set():
            stop.obey()
            return STOPPED_CODE
        self.started.append(trial.index)
        output.write_text(f"trial {trial.index}\n")
        self._running = True
        try:
            return self.behave(trial, run_id, stop)
        finally:
            self._running = False

    def interrupt(self) -> bool:
        self.interrupts += 1
        return self._running

    def kill(self) -> bool:
        self.kills += 1
        return self._running

    def close(self) -> None:
        self.closed = True


def until_stopped(code: int = -15) -> Behave:
    """A trial that runs until it is asked to stop (at most ``REAL_WAIT`` real seconds), then exits ``code``."""
    def behave(trial: Trial, run_id: str, stop: StopRequest) -> int:
        assert stop.wait(REAL_WAIT), "the trial was never asked to stop"
        return code
    return behave


def memory_sweep(tmp_path: Path, config: dict[str, Any], *, clock: ManualClock | None = None,
                 tracker: MemoryTracker | None = None) -> lifecycle.OpenSweep:
    """A sweep made with ``init`` (a checked config, a real ledger in tmp_path) on a MemoryTracker."""
    tracker = tracker or MemoryTracker(tmp_path / "sweeps")
    clock = clock or ManualClock()
    checked = config_from_dict({"command": "true", **config}, "sweep.yaml")
    sweep = lifecycle.init_sweep(checked, "sweep.yaml", tracker=tracker, clock=clock)
    return lifecycle.open_sweep(sweep.run_id, tracker=tracker, clock=clock)
