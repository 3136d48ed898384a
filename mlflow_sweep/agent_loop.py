"""The agent behind ``mlflow sweep run``: claim a trial, run it as a nested child run, record it.

The loop (SPEC §3, §4): reap trials of dead agents → claim (``policy`` decides on every event
before the claim's place in the ledger, and only one agent can take that place, so parallel
agents never share a grid point or overshoot run_cap) →
create the child run → hand the trial to a runner (``runners``) → record the outcome in MLflow,
then in the ledger. A heartbeat thread tells other agents this one is alive; while a trial runs,
a watch thread applies hyperband's cuts (issue 6) and stops the trial when the sweep is cancelled.

The sweep's lifecycle (SPEC §4b): ``policy`` says Done for a stopped or cancelled sweep, so the
agent exits 0 at its next claim; it says Wait for a paused one, and the agent then waits with
reads of the ledger until ``policy`` says something else. A trial ends KILLED when
the agent is interrupted (SIGINT/SIGTERM; its point is requeued, so another agent runs it
again), when the sweep is cancelled, or when hyperband stops it (both final).
"""
from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Iterator

from mlflow_sweep import hyperband, lifecycle, policy, samplers, settings, tracking
from mlflow_sweep.errors import SweepError
from mlflow_sweep.runners import CommandRunner
from mlflow_sweep.trials import DONE, Proposal, SweepPhase, Trial, TrialState

if TYPE_CHECKING:
    from mlflow_sweep.ledger import SweepState
    from mlflow_sweep.runners import TrialRunner

log = logging.getLogger(__name__)


class AgentStopped(SweepError):
    """The agent was interrupted (SIGINT, SIGTERM, or KeyboardInterrupt in a function trial).

    Its running trial was ended KILLED; ``result`` says what the agent did until then.
    """

    def __init__(self, signum: int, detail: str = "", result: AgentResult | None = None) -> None:
        self.signum, self.detail, self.result = signum, detail, result
        self.exit_code = 128 + signum
        super().__init__(signum, detail, result)

    def __str__(self) -> str:
        return f"agent stopped by {signal.Signals(self.signum).name}{self.detail}"


class TooManyFailures(SweepError):
    """The agent's last ``max_failures`` trials all failed."""


@dataclass(frozen=True)
class AgentResult:
    """What one agent did: trials it ran, how many failed, and why it stopped."""

    ran: int
    failed: int
    reason: str


def run_agent(sweep_id: str | None, *, count: int | None = None, max_failures: int = settings.MAX_FAILURES,
              say: Callable[[str], None] = lambda _: None, stream: IO[bytes] | None = None,
              runner: Callable[[lifecycle.OpenSweep], TrialRunner] | None = None) -> AgentResult:
    """Run trials of the sweep until it is done, ``count`` trials ran, or too many failed in a row.

    Args:
        sweep_id: the sweep's parent run ID; None means the most recently initialized sweep.
        count: stop after this many trials.
        max_failures: stop (TooManyFailures) after this many trials in a row failed.
        say: where progress lines go.
        stream: where the command's output is copied live (command trials).
        runner: builds the trial runner for the opened sweep; default: the sweep's command.
    """
    opened = lifecycle.open_sweep(sweep_id)
    make = runner or (lambda o: CommandRunner(o.sweep, o.config, stream))
    agent = _Agent(opened, make(opened), say)
    with agent.running():
        result = agent.loop(count, max_failures)
    try:
        lifecycle.publish_state(opened, only_ended=True)  # the last agent out marks the parent done (SPEC §4b)
    except SweepError as exc:  # the trials are recorded; the next command or finalize shows the state again
        say(f"could not show the sweep's state on its parent run: {exc}")
    return result


class _Agent:
    """One agent: its identity, its heartbeat, the trial it runs and the signals it got."""

    def __init__(self, opened: lifecycle.OpenSweep, runner: TrialRunner, say: Callable[[str], None]) -> None:
        self.sweep, self.ledger, self.config, self.seed = opened.sweep, opened.ledger, opened.config, opened.seed
        self.runner, self.say = runner, say
        self.agent_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        samplers.prepare(self.config.method)  # heavy imports before the first claim, not inside it
        self.signum: int | None = None
        self.trial_index: int | None = None
        self.killed: int | None = None
        self.stopped_at: int | None = None  # the hyperband band that stopped the running trial
        self.cancelled = False  # the running trial was stopped because the sweep was cancelled
        self.stop = threading.Event()  # the running trial's own: set when it must end
        self.scratch = Path(tempfile.mkdtemp(prefix="mlflow-sweep-"))  # output of trials without local artifacts
        self.check_every = settings.early_terminate_interval() if self.config.early_terminate else None
        self.poll_every = settings.poll_interval()
        self.hinted = False  # the missing-metric hint is said once per agent (#13)
        self.heartbeat = _Heartbeat(self)

    @contextlib.contextmanager
    def running(self) -> Iterator[_Agent]:
        """Signal handlers and heartbeat on for the agent's life, then everything restored."""
        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self.on_signal)
        self.heartbeat.start()
        try:
            yield self
        finally:
            self.heartbeat.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.runner.close()
            shutil.rmtree(self.scratch, ignore_errors=True)

    def loop(self, count: int | None, max_failures: int) -> AgentResult:
        ran = failed = streak = 0
        reason = "the sweep is done"
        while self.signum is None:
            if count is not None and ran >= count:
                reason = f"ran --count {count} trials"
                break
            step = self._claim()
            if not isinstance(step, Trial):
                reason = step
                break
            try:
                state = self._run(step)
            except BaseException:
                self._abandon(step)
                raise
            ran += 1
            failed += state is TrialState.FAILED
            streak = streak + 1 if state is TrialState.FAILED else 0
            if streak >= max_failures:
                raise TooManyFailures(
                    f"sweep {self.sweep.run_id}: agent stopped after {streak} failed trials in a row "
                    f"(last: trial {step.index}); see the output.log artifact of its child runs")
        if self.signum is not None:
            reason = f"stopped by {signal.Signals(self.signum).name}"
            raise AgentStopped(self.signum, self._stopped_detail(), AgentResult(ran, failed, reason))
        self.say(f"agent done: {reason}; ran {ran} trial{'s' * (ran != 1)}, {failed} failed")
        return AgentResult(ran, failed, reason)

    def _abandon(self, trial: Trial) -> None:
        """Record a trial the agent could not carry through (e.g. the store refused it) as FAILED."""
        with contextlib.suppress(Exception):
            if self.ledger.complete(trial.index, TrialState.FAILED, None):
                run_id = self.ledger.state().trials[trial.index].run_id
                if run_id:
                    tracking.end_run(run_id, TrialState.FAILED)

    def _claim(self) -> Trial | str:
        """The next claimed trial, or why there is none; waits while ``policy`` says Wait."""
        said = None
        while self.signum is None:
            lifecycle.reap_dead(self.ledger)
            claimed = self.ledger.claim(self._decide, self.agent_id)
            if claimed.trial is not None:
                return claimed.trial
            if isinstance(claimed.value, policy.Done):
                return claimed.value.reason
            if claimed.value.reason != said:
                said = claimed.value.reason
                self.say(f"waiting: {said}")
            self._wait()
        return "stopped by a signal"

    def _wait(self) -> None:
        """Sleep until a read of the ledger (only the events published since) no longer makes ``policy`` say Wait.

        A paused sweep may wait for hours: the agent only reads, once per poll interval, and
        claims again only when a claim may succeed.
        """
        while self.signum is None:
            time.sleep(self.poll_every)
            lifecycle.reap_dead(self.ledger)  # writes only when a trial is stale
            state = self.ledger.state()
            if not isinstance(policy.next_step(self.config, state.trials, self.seed, state.controls), policy.Wait):
                return

    def _decide(self, state: SweepState) -> policy.Step:
        """The ledger's claim callback (again after a lost race): what ``policy`` says for this state."""
        return policy.next_step(self.config, state.trials, self.seed, state.controls)

    def _stopped_detail(self) -> str:
        if self.killed is None:
            return ""
        return f"; trial {self.killed} ended KILLED (its point is handed out again)"

    def _run(self, trial: Trial) -> TrialState:
        """Run one claimed trial end to end and record its outcome; return its state."""
        started = time.monotonic()
        run_id, artifact_dir = tracking.start_trial(self.sweep, trial)
        self.ledger.start(trial.index, run_id)
        self.trial_index, self.stopped_at, self.stop = trial.index, None, threading.Event()
        self.cancelled = False
        if self.signum is not None:
            self.stop.set()  # the signal came between the claim and now
        self.heartbeat.poke()
        self.say(f"trial {trial.index} (run {run_id}): {_format_params(trial.params)}")
        output = (artifact_dir or self.scratch) / tracking.OUTPUT_ARTIFACT
        output.parent.mkdir(parents=True, exist_ok=True)
        with self._watching(trial.index, run_id):
            try:
                code = self.runner.run(trial, run_id, output, self.stop)
            except KeyboardInterrupt:  # a function trial's Ctrl-C (a notebook's stop button): as SIGINT
                self.interrupted(signal.SIGINT)
                code = 128 + signal.SIGINT
        state, requeue, tags = self._outcome(code)
        history = self._history(run_id)
        metric = None if history is None else self.config.metric.summarize(history)  # type: ignore[union-attr]
        # the ledger keeps the history only where hyperband pools it (issue 6), so it stays small
        kept = history if self.config.early_terminate else None
        counted = None if metric is None else (self.config.metric.name, metric)  # type: ignore[union-attr]
        hint = state is TrialState.FINISHED and history == []  # the hint lists the run's metrics
        settled = tracking.settle_trial(run_id, trial.params, counted, read=hint)
        if hint:
            self._hint_missing_metric(trial.index, settled.metrics)
        tracking.end_trial(run_id, state, None if artifact_dir else output, tags)
        self.ledger.complete(trial.index, state, metric, stopped_at=self.stopped_at, history=kept, requeue=requeue)
        self.trial_index = None
        if requeue is not None:
            self.killed = trial.index
        shown = "" if metric is None else f", {self.config.metric.name}={metric:g}"  # type: ignore[union-attr]
        early = "" if self.stopped_at is None else f", stopped early at iteration {self.stopped_at}"
        self.say(f"trial {trial.index} {state.value} (exit code {code}{shown}{early}) "
                 f"in {time.monotonic() - started:.1f} s")
        return state

    def _outcome(self, code: int) -> tuple[TrialState, str | None, dict[str, str] | None]:
        """The trial's state, why its point is requeued (or None), and the tags that say why it ended.

        Cancel and hyperband are final; an interrupted agent's trial is requeued (SPEC §4b). A
        function trial's KeyboardInterrupt is recorded by ``interrupted``, as a signal is, so it
        takes the same path.
        """
        if self.cancelled:
            return TrialState.KILLED, None, {tracking.KILLED_BY_TAG: "cancel"}
        if self.signum is not None:
            return TrialState.KILLED, "interrupted", {tracking.KILLED_BY_TAG: signal.Signals(self.signum).name}
        if self.stopped_at is not None:  # hyperband (issue 6)
            return TrialState.KILLED, None, {tracking.STOPPED_EARLY_TAG: str(self.stopped_at)}
        return (TrialState.FINISHED if code == 0 else TrialState.FAILED), None, None

    def _hint_missing_metric(self, index: int, logged: tuple[str, ...]) -> None:
        """Once per agent: a finished trial logged no ``metric.name`` to its run; say why that happens (#13)."""
        if self.hinted:
            return
        self.hinted = True
        name = self.config.metric.name  # type: ignore[union-attr]
        has = f"its run has {', '.join(sorted(logged))}" if logged else "its run has no metrics at all"
        self.say(f"trial {index} finished but logged no metric {name!r} to its run ({has}), so the sweep cannot "
                 "rank it. PyTorch Lightning's MLFlowLogger opens a run of its own unless given the trial's: "
                 "MLFlowLogger(run_id=os.environ[\"MLFLOW_RUN_ID\"], ...). Otherwise check the name the "
                 "script logs with mlflow.log_metric")

    def _history(self, run_id: str) -> list[float] | None:
        """The trial's values of the sweep's metric in logging order; None without a metric."""
        metric = self.config.metric
        if metric is None:
            return None
        return tracking.metric_history(run_id, metric.name)

    @contextlib.contextmanager
    def _watching(self, index: int, run_id: str) -> Iterator[None]:
        """While the trial runs, watch for a cancel and judge it by hyperband; joined before its outcome is read."""
        done = threading.Event()
        thread = threading.Thread(target=self._watch, args=(index, run_id, self.stop, done), daemon=True,
                                  name="mlflow-sweep-watch")
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def _watch(self, index: int, run_id: str, stop: threading.Event, done: threading.Event) -> None:
        """Every poll interval: is the sweep cancelled (a cheap incremental read)? Every hyperband interval: the cut."""
        step = self.poll_every if self.check_every is None else min(self.poll_every, self.check_every)
        next_cut = None if self.check_every is None else time.monotonic() + self.check_every
        while not done.wait(step):
            if stop.is_set():
                return
            if self._cancelled():
                if not done.is_set():
                    # Cancelled even when interrupt() finds no process: the runner may be about to
                    # launch it and then ends it at once because ``stop`` is set (SPEC §4b).
                    self.cancelled = True
                    stop.set()
                    self.runner.interrupt()
                    self.say(f"the sweep was cancelled: stopping trial {index}")
                return
            if next_cut is None or time.monotonic() < next_cut:
                continue
            next_cut = time.monotonic() + self.check_every  # type: ignore[operator]
            band = self._below_cut(index, run_id)
            if band is not None and not done.is_set():
                stop.set()
                if self.runner.interrupt():  # False: it ended on its own meanwhile
                    self.stopped_at = band
                    self.say(f"trial {index} is below the hyperband cut at iteration {band}: stopping it")
                return

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
            history = tracking.metric_history(run_id, metric.name)
            trials = self.ledger.state().trials
        except Exception as exc:  # noqa: BLE001  a missed check is retried next interval; never end the trial for it
            log.warning("trial %d: early-termination check skipped: %s", index, exc)
            return None
        return hyperband.stopping_band(self.config.early_terminate, metric, trials, index, history)

    def interrupted(self, signum: int) -> None:
        """Record that the agent was interrupted: its trial ends KILLED and it claims no more (SPEC §4a)."""
        if self.signum is None:
            self.signum = signum
        self.stop.set()

    def on_signal(self, signum: int, _frame: Any) -> None:
        """First SIGINT/SIGTERM: stop the trial gently; a second one: kill it now.

        A function trial runs in this thread: its runner raises KeyboardInterrupt into it.
        """
        again = self.signum is not None
        self.interrupted(signum)
        if again:
            self.runner.kill()
        else:
            self.say(f"{signal.Signals(signum).name} received: stopping the running trial")
            self.runner.interrupt()


class _Heartbeat:
    """A stoppable thread that rewrites the agent's heartbeat file every few seconds.

    ``poke`` asks for a beat now (a new trial started) without the main loop waiting for it.
    """

    def __init__(self, agent: _Agent) -> None:
        self.agent = agent
        self.interval = min(5.0, settings.heartbeat_timeout() / 4)
        self.stopped = False
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name="mlflow-sweep-heartbeat", daemon=True)
        self.info = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}

    def start(self) -> None:
        self._beat()
        self.thread.start()

    def poke(self) -> None:
        self.wake.set()

    def stop(self) -> None:
        """End the thread, then beat once more saying so: the process may live on (a notebook's agent)."""
        self.stopped = True
        self.wake.set()
        self.thread.join(timeout=5)
        self._beat(stopped=True)

    def _beat(self, stopped: bool = False) -> None:
        info = {**self.info, "trial": self.agent.trial_index, **({"stopped": True} if stopped else {})}
        try:
            self.agent.ledger.heartbeat(self.agent.agent_id, info)
        except OSError as exc:  # a missed beat is retried; the timeout allows many
            log.warning("heartbeat failed: %s", exc)

    def _run(self) -> None:
        while True:
            self.wake.wait(self.interval)
            self.wake.clear()
            if self.stopped:
                return
            self._beat()


def _format_params(params: dict[str, Any] | Any) -> str:
    return " ".join(f"{name}={value!r}" if isinstance(value, str) else f"{name}={value}"
                    for name, value in params.items())
