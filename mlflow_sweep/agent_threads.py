"""The agent's threads besides its main one, and the few values that cross between them.

The main thread runs the agent's loop and every trial's runner, and is the only one that writes
the agent's state. Besides it:

- the **signal handler** (Python runs it in the main thread, between two bytecodes) sets one
  flag, the agent's ``Interrupt``, and asks the running trial to stop;
- the **watch thread**, one per trial, is given a frozen ``Watch`` (the trial, its run, its stop
  request, when it started) and returns a verdict (``Cancelled()``, ``CutAt(band)`` or None),
  which the main thread reads after joining it (``WatchThread.finish``);
- the **heartbeat thread** is given the ledger, the agent id and the ``TrialSlot``, which holds the
  running trial as one reference written by the main thread only.

The one object two threads write is the running trial's ``runners.StopRequest``: the watch thread
and the signal handler ask, and whoever makes the trial end on that request obeys it.
"""
from __future__ import annotations

import logging
import math
import os
import socket
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from mlflow_sweep import hyperband
from mlflow_sweep.outcome import Cancelled, CutAt, Verdict
from mlflow_sweep.trials import SweepPhase

if TYPE_CHECKING:
    from mlflow_sweep.clock import Clock
    from mlflow_sweep.config import SweepConfig
    from mlflow_sweep.ledger import Ledger
    from mlflow_sweep.runners import StopRequest
    from mlflow_sweep.tracker import Tracker

log = logging.getLogger(__name__)


class Interrupt:
    """The agent's one flag: the first signal it got, or None.

    Set in the main thread only (by the signal handler, or when a function trial raises
    KeyboardInterrupt); its event wakes an agent that waits for a paused sweep.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.event = threading.Event()

    def set(self, signum: int) -> None:
        """Record ``signum`` unless a signal came before it."""
        if self.signum is None:
            self.signum = signum
        self.event.set()

    def is_set(self) -> bool:
        """Whether the agent was interrupted."""
        return self.event.is_set()


@dataclass(frozen=True)
class Running:
    """The trial the agent runs now, as the heartbeat thread and the signal handler see it."""

    index: int
    stop: StopRequest


class TrialSlot:
    """The running trial, or None: one reference, written by the main thread only and read whole."""

    def __init__(self) -> None:
        self.current: Running | None = None


@dataclass(frozen=True)
class Watch:
    """What the watch thread is given: the trial it watches, its run, its stop request, when it started."""

    index: int
    run_id: str
    stop: StopRequest
    started: float
    """``clock.monotonic()`` at the trial's start: the checks fall at fixed times from it."""


class Watcher:
    """The watch thread's work, with only what it needs: reads of the ledger and of the trial's metric.

    Every poll interval: is the sweep cancelled (an incremental read of the ledger)? Every hyperband
    interval (sweeps with ``early_terminate``): is the trial below the cut? Either asks the trial
    to stop and ends the watch with that verdict.
    """

    def __init__(self, *, ledger: Ledger, tracker: Tracker, config: SweepConfig, clock: Clock, poll_every: float,
                 check_every: float, interrupt: Callable[[], bool], say: Callable[[str], None]) -> None:
        """Prepare the watch of one agent's trials.

        Args:
            ledger: the sweep's ledger (read only).
            tracker: where the trial's metric history is read.
            config: the sweep's configuration (metric, ``early_terminate``).
            clock: what the thread waits with.
            poll_every: seconds between cancel checks.
            check_every: seconds between hyperband checks (used when ``early_terminate`` is set).
            interrupt: the runner's ``interrupt``; True when it reached a running trial.
            say: where progress lines go.
        """
        self.ledger, self.tracker, self.config, self.clock = ledger, tracker, config, clock
        self.check_every = check_every if config.early_terminate else None
        self.step = poll_every if self.check_every is None else min(poll_every, self.check_every)
        self.interrupt, self.say = interrupt, say

    def __call__(self, job: Watch, done: threading.Event) -> Verdict:
        """Watch ``job`` until ``done`` is set or a verdict is reached; return the verdict."""
        next_cut = None if self.check_every is None else job.started + self.check_every
        tick = job.started + self.step
        while not self.clock.wait(done, tick - self.clock.monotonic()):
            tick = next_tick(job.started, self.step, self.clock.monotonic())
            if job.stop.is_set():
                return None  # asked by a signal: nothing left to judge
            if self._cancelled():
                return self._ask(job, done, Cancelled(), f"the sweep was cancelled: stopping trial {job.index}")
            now = self.clock.monotonic()
            if next_cut is None or now < next_cut:
                continue
            next_cut = next_tick(job.started, self.check_every, now)  # type: ignore[arg-type]
            band = self._below_cut(job.index, job.run_id)
            if band is not None:
                return self._ask(job, done, CutAt(band),
                                 f"trial {job.index} is below the hyperband cut at iteration {band}: stopping it")
        return None

    def _ask(self, job: Watch, done: threading.Event, verdict: Verdict, message: str) -> Verdict:
        """Ask the trial to stop for ``verdict``; None when it ended meanwhile (then nothing is asked)."""
        if done.is_set():
            return None
        job.stop.ask()  # even when no process runs yet: a runner about to start one ends it at once
        if self.interrupt():
            job.stop.obey()
        self.say(message)
        return verdict

    def _cancelled(self) -> bool:
        try:
            return self.ledger.state().controls.state is SweepPhase.CANCELLED
        except Exception as exc:  # noqa: BLE001  a missed check is retried next interval; never end the trial for it
            log.warning("could not read the sweep's state: %s", exc)
            return False

    def _below_cut(self, index: int, run_id: str) -> int | None:
        """The band at which the running trial is below the cut, from its history and the ended trials'."""
        metric = self.config.metric
        assert metric is not None and self.config.early_terminate is not None  # config.py requires both
        try:
            history = self.tracker.metric_history(run_id, metric.name)
            state = self.ledger.state()
            trials = [*state.controls.priors, *state.trials]  # prior runs' histories set the cuts too
        except Exception as exc:  # noqa: BLE001  a missed check is retried next interval; never end the trial for it
            log.warning("trial %d: early-termination check skipped: %s", index, exc)
            return None
        return hyperband.stopping_band(self.config.early_terminate, metric, trials, index, history)


class WatchThread(threading.Thread):
    """Runs ``watch(job, done)`` while a trial runs; ``finish`` ends it and returns its verdict.

    The verdict is handed over by ``join``: the thread writes it before it ends, the main thread
    reads it only after joining.
    """

    def __init__(self, watch: Callable[[Watch, threading.Event], Verdict], job: Watch) -> None:
        super().__init__(name="mlflow-sweep-watch", daemon=True)
        self._watch, self._job = watch, job
        self._done = threading.Event()
        self._verdict: Verdict = None

    def run(self) -> None:
        self._verdict = self._watch(self._job, self._done)

    def finish(self) -> Verdict:
        """Tell the watch the trial is over, join it, and return its verdict."""
        self._done.set()
        self.join()
        return self._verdict


class Heartbeat:
    """A stoppable thread that rewrites the agent's heartbeat file every ``interval`` seconds.

    It knows the ledger, the agent's id and the ``TrialSlot`` only. ``poke`` asks for a beat now
    (a new trial started) without the main loop waiting for it.
    """

    def __init__(self, ledger: Ledger, agent_id: str, slot: TrialSlot, *, interval: float, clock: Clock) -> None:
        self.ledger, self.agent_id, self.slot, self.interval, self.clock = ledger, agent_id, slot, interval, clock
        self.info = {"host": socket.gethostname(), "pid": os.getpid(), "started": clock.time()}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mlflow-sweep-heartbeat", daemon=True)

    def start(self) -> None:
        """Beat now, then every ``interval`` seconds in the thread."""
        self._beat()
        self._thread.start()

    def poke(self) -> None:
        """Beat now (from the thread), without waiting for it."""
        self._wake.set()

    def stop(self, summary: Mapping[str, Any] | None = None) -> None:
        """End the thread, then beat once more saying so: the process may live on (a notebook's agent).

        Args:
            summary: what the agent did, kept in its last beat (e.g. its decisions and lost races).
        """
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout=5)
        self._beat(stopped=True, summary=summary)

    def _beat(self, stopped: bool = False, summary: Mapping[str, Any] | None = None) -> None:
        running = self.slot.current
        info = {**self.info, "trial": None if running is None else running.index, **(summary or {})}
        if stopped:
            info["stopped"] = True
        try:
            self.ledger.heartbeat(self.agent_id, info)
        except OSError as exc:  # a missed beat is retried; the timeout allows many
            log.warning("heartbeat failed: %s", exc)

    def _run(self) -> None:
        while True:
            self.clock.wait(self._wake, self.interval)
            self._wake.clear()
            if self._stopping.is_set():
                return
            self._beat()


def next_tick(start: float, step: float, now: float) -> float:
    """The first of ``start + step``, ``start + 2 step``, ... after ``now``.

    Ticks are fixed from the start, so a late wake-up does not shift the later ones, and a clock
    that jumped past several ticks gives one check, not a burst.
    """
    return start + step * (math.floor((now - start) / step) + 1)
