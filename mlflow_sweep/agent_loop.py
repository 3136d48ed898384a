"""The agent behind ``mlflow sweep run``: claim a trial, run it as a nested child run, record it.

The loop: reap trials of dead agents → claim (``policy`` decides on every event before the
claim's place in the ledger, and only one agent can take that place, so parallel agents never
share a grid point or overshoot run_cap) → create the child run → hand the trial to a runner
(``runners``) → record the outcome in the tracking store, then in the ledger. In that order: an
agent killed in between leaves a RUNNING trial, which is reaped FAILED in both, never a finished
trial whose run stays RUNNING.

The sweep's lifecycle: ``policy`` says Done for a stopped or cancelled sweep, so the agent exits 0
at its next claim; it says Wait for a paused one, and the agent then waits with reads of the
ledger until ``policy`` says something else. A trial ends KILLED when it was stopped because the
agent was interrupted (SIGINT/SIGTERM: its point is requeued, so another agent runs it again),
because the sweep was cancelled, or because hyperband cut it (both final); ``outcome`` decides.

The agent's other threads (watch, heartbeat) and the values that cross between threads are in
``agent_threads``; in short, the main thread alone writes the agent's state, the watch thread
returns a verdict, and the running trial's ``StopRequest`` is the one object two threads write.
"""
from __future__ import annotations

import contextlib
import os
import random
import secrets
import signal
import socket
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Iterator

from mlflow_sweep import lifecycle, policy, samplers, settings
from mlflow_sweep.agent_threads import Heartbeat, Interrupt, Running, TrialSlot, Watch, Watcher, WatchThread
from mlflow_sweep.clock import SYSTEM, Clock
from mlflow_sweep.errors import SweepError
from mlflow_sweep.outcome import Outcome, Verdict, outcome
from mlflow_sweep.runners import CommandRunner, StopRequest
from mlflow_sweep.tracker import OUTPUT_ARTIFACT, REAPED_TAG, STOP_ASKED_TAG
from mlflow_sweep.trials import Trial, TrialState

if TYPE_CHECKING:
    from mlflow_sweep.ledger import SweepState
    from mlflow_sweep.runners import TrialRunner
    from mlflow_sweep.tracker import Tracker


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


@dataclass(frozen=True)
class AgentSettings:
    """The agent's settings, read once before it makes anything (a bad one then leaves nothing behind)."""

    poll_every: float
    """Seconds between looks at the ledger while waiting (paused sweep) or running a trial (cancel)."""
    check_every: float
    """Seconds between two hyperband checks of a running trial (sweeps with ``early_terminate``)."""
    heartbeat_timeout: float
    """Seconds of silence after which an agent's trial is dead."""

    @property
    def heartbeat_every(self) -> float:
        """Seconds between two heartbeats: several per timeout, so a missed beat is harmless."""
        return min(5.0, self.heartbeat_timeout / 4)

    @classmethod
    def from_env(cls) -> AgentSettings:
        """Each setting from its environment variable (UsageError naming it when it is not valid)."""
        return cls(settings.poll_interval(), settings.early_terminate_interval(), settings.heartbeat_timeout())


@dataclass(frozen=True)
class _Done:
    """A trial run and recorded in the tracking store, not yet in the ledger."""

    outcome: Outcome
    code: int
    metric: float | None
    history: list[float] | None
    values: dict[str, float] | None = None
    """A sweep with several objectives: each one's counted value (``SweepConfig.count``)."""




def run_agent(sweep_id: str | None, *, count: int | None = None, max_failures: int = settings.MAX_FAILURES,
              say: Callable[[str], None] = lambda _: None, stream: IO[bytes] | None = None,
              runner: Callable[[lifecycle.OpenSweep], TrialRunner] | None = None,
              tracker: Tracker | None = None, clock: Clock = SYSTEM) -> AgentResult:
    """Run trials of the sweep until it is done, ``count`` trials ran, or too many failed in a row.

    Args:
        sweep_id: the sweep's parent run ID; None means the most recently initialized sweep.
        count: stop after this many trials.
        max_failures: stop (TooManyFailures) after this many trials in a row failed.
        say: where progress lines go.
        stream: where the command's output is copied live (command trials).
        runner: builds the trial runner for the opened sweep; default: the sweep's command.
        tracker: the tracking store; default: MLflow.
        clock: what the agent waits with and writes into the ledger.
    """
    agent_settings = AgentSettings.from_env()  # first: a bad setting leaves nothing behind
    opened = lifecycle.open_sweep(sweep_id, tracker=tracker, clock=clock)
    make = runner or (lambda o: CommandRunner(o.sweep, o.config, stream, versions=o.config_at))
    with contextlib.closing(make(opened)) as trial_runner:  # closed on every path: its temporary files go
        result = run(opened, trial_runner, count=count, max_failures=max_failures, say=say,
                     agent_settings=agent_settings)
    try:
        lifecycle.publish_state(opened, only_ended=True)  # the last agent out shows the sweep ended
    except SweepError as exc:  # the trials are recorded; the next command or finalize shows the state again
        say(f"could not show the sweep's state on its parent run: {exc}")
    return result


def run(opened: lifecycle.OpenSweep, runner: TrialRunner, *, count: int | None = None,
        max_failures: int = settings.MAX_FAILURES, say: Callable[[str], None] = lambda _: None,
        agent_settings: AgentSettings | None = None, agent_id: str | None = None) -> AgentResult:
    """One agent on an opened sweep, with a runner the caller made (and closes).

    Args:
        opened: the sweep, with the tracker and clock the agent uses.
        runner: runs each trial.
        count: stop after this many trials.
        max_failures: stop (TooManyFailures) after this many trials in a row failed.
        say: where progress lines go.
        agent_settings: the agent's settings; default: from the environment.
        agent_id: the agent's id in the ledger; default: host, process and a random part.
    """
    agent = Agent(opened, runner, say=say, settings=agent_settings or AgentSettings.from_env(), agent_id=agent_id)
    with agent.running() as scratch:
        return agent.loop(count, max_failures, scratch)


class Agent:
    """One agent on one sweep. Everything it holds is set at construction but ``interrupt`` (the
    signal flag), ``slot`` (the running trial), ``hinted`` and ``decisions``, all written by the main thread."""

    def __init__(self, opened: lifecycle.OpenSweep, runner: TrialRunner, *, say: Callable[[str], None],
                 settings: AgentSettings, agent_id: str | None = None) -> None:
        self.opened, self.runner, self.say, self.settings = opened, runner, say, settings
        self.ledger, self.config, self.tracker, self.clock = opened.ledger, opened.config, opened.tracker, opened.clock
        self.agent_id = agent_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        samplers.prepare(self.config.method)  # heavy imports before the first claim, not inside it
        self.interrupt = Interrupt()
        self.slot = TrialSlot()
        self.hinted = False  # the missing-metric hint is said once per agent
        self.decisions = 0  # policy's decisions, for the last heartbeat: a crowd's lost races show there
        self.heartbeat = Heartbeat(self.ledger, self.agent_id, self.slot, interval=settings.heartbeat_every,
                                   clock=self.clock)
        self.watcher = Watcher(ledger=self.ledger, tracker=self.tracker, config=self.config, clock=self.clock,
                               poll_every=settings.poll_every, check_every=settings.check_every,
                               interrupt=runner.interrupt, say=say)

    @contextlib.contextmanager
    def running(self) -> Iterator[Path]:
        """Signal handlers, heartbeat and a scratch directory for the agent's life; then all restored, removed."""
        previous: dict[int, Any] = {}
        with tempfile.TemporaryDirectory(prefix="mlflow-sweep-") as scratch:  # output of trials without local artifacts
            if threading.current_thread() is threading.main_thread():
                for sig in (signal.SIGINT, signal.SIGTERM):
                    previous[sig] = signal.signal(sig, self.on_signal)
            try:
                self.heartbeat.start()
                try:
                    yield Path(scratch)
                finally:
                    self.heartbeat.stop({"decisions": self.decisions, "races_lost": self.ledger.races_lost})
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    def loop(self, count: int | None, max_failures: int, scratch: Path) -> AgentResult:
        """Claim and run trials until the sweep, ``count`` or a signal says stop."""
        ran = failed = streak = 0
        requeued: int | None = None
        reason = "the sweep is done"
        while not self.interrupt.is_set():
            if count is not None and ran >= count:
                reason = f"ran --count {count} trials"
                break
            step = self._claim()
            if not isinstance(step, Trial):
                reason = step
                break
            ended = self._run(step, scratch)
            ran += 1
            failed += ended.state is TrialState.FAILED
            streak = streak + 1 if ended.state is TrialState.FAILED else 0
            if ended.requeue is not None:
                requeued = step.index
            if streak >= max_failures:
                raise TooManyFailures(
                    f"sweep {self.opened.sweep.run_id}: agent stopped after {streak} failed trials in a row "
                    f"(last: trial {step.index}); see the output.log artifact of its child runs")
        if self.interrupt.signum is not None:
            reason = f"stopped by {signal.Signals(self.interrupt.signum).name}"
            detail = "" if requeued is None else f"; trial {requeued} ended KILLED (its point is handed out again)"
            raise AgentStopped(self.interrupt.signum, detail, AgentResult(ran, failed, reason))
        self.say(f"agent done: {reason}; ran {ran} trial{'s' * (ran != 1)}, {failed} failed")
        return AgentResult(ran, failed, reason)

    # -- claiming ---------------------------------------------------------------------------

    def _claim(self) -> Trial | str:
        """The next claimed trial, or why there is none; waits while ``policy`` says Wait."""
        said = None
        while not self.interrupt.is_set():
            lifecycle.reap_dead(self.opened, self.settings.heartbeat_timeout)
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
        """Wait until a read of the ledger (only the events published since) no longer makes ``policy`` say Wait.

        A paused sweep may wait for hours: the agent only reads, and claims again only when a claim
        may succeed. The pause between reads is jittered and grows while nothing is published (up
        to ten poll intervals), so hundreds of idle agents neither read in step nor hammer the
        filesystem. A signal ends the wait at once.
        """
        delay, seen = self.settings.poll_every, self.ledger.state().applied
        while not self.clock.wait(self.interrupt.event, delay * random.uniform(0.5, 1.5)):
            lifecycle.reap_dead(self.opened, self.settings.heartbeat_timeout)  # writes only when a trial is stale
            state = self.ledger.state()
            if not isinstance(self._decide(state), policy.Wait):
                return
            quiet = state.applied == seen
            delay = min(delay * 1.5, 10 * self.settings.poll_every) if quiet else self.settings.poll_every
            seen = state.applied

    def _decide(self, state: SweepState) -> policy.Step:
        """The ledger's claim callback (again after a lost race): what ``policy`` says for this state,
        under the config version in effect in it (``mlflow sweep update --config``)."""
        self.decisions += 1
        config = self.opened.config_in(state)
        if config.method != self.config.method:  # a new version changed the method: import what it needs (cheap once done)
            samplers.prepare(config.method)
        return policy.next_step(config, state.trials, self.opened.seed, state.controls)

    # -- running one trial --------------------------------------------------------------------

    def _run(self, trial: Trial, scratch: Path) -> Outcome:
        """Run one claimed trial end to end and record its outcome (as the ledger counts it)."""
        started = self.clock.monotonic()
        run_id = None
        try:
            run_id, artifact_dir = self.tracker.start_trial(self.opened.sweep, trial)
            done = self._carry(trial, run_id, artifact_dir or scratch, artifact_dir is None, started)
            # the ledger keeps the history only where hyperband pools it across trials, so it stays small
            kept = done.history if self.config.early_terminate else None
            accepted = self.ledger.complete(trial.index, done.outcome.state, done.metric,
                                            stopped_at=done.outcome.stopped_at, history=kept,
                                            requeue=done.outcome.requeue, metrics=done.values)
        except BaseException:
            self._abandon(trial.index, run_id)
            raise
        ended = done.outcome if accepted else self._reaped_meanwhile(trial.index, run_id)
        self._report(trial.index, ended, done.code, done.metric, started, done.values)
        return ended

    def _carry(self, trial: Trial, run_id: str, directory: Path, keep_output: bool, started: float) -> _Done:
        """Record the run in the ledger, run the trial, settle and end its run; return how it ended."""
        self.ledger.start(trial.index, run_id)
        stop = StopRequest()
        self.slot.current = Running(trial.index, stop)  # before reading the flag: a later signal finds the trial
        try:
            if self.interrupt.is_set():
                stop.ask()  # the signal came between the claim and now
            self.heartbeat.poke()
            self.say(f"trial {trial.index} (run {run_id}): {_format_params(trial.params)}")
            output = directory / OUTPUT_ARTIFACT
            output.parent.mkdir(parents=True, exist_ok=True)
            code, verdict = self._execute(trial, run_id, output, stop, started)
        finally:
            self.slot.current = None
        ended = outcome(code, verdict, self.interrupt.signum, stop.obeyed)
        history = self._history(run_id)
        metric = None if history is None else self.config.metric.summarize(history)  # type: ignore[union-attr]
        counted = None if metric is None else (self.config.metric.name, metric)  # type: ignore[union-attr]
        values = self._values(run_id)  # several objectives: each one's counted value, logged and in the ledger
        hint = ended.state is TrialState.FINISHED and history == []  # the hint lists the run's metrics
        settled = self.tracker.settle_trial(run_id, trial.params, values or counted, read=hint)
        if hint:
            self._hint_missing_metric(trial.index, settled.metrics)
        kept = output if keep_output and output.exists() else None  # a trial stopped before it started has none
        self.tracker.end_trial(run_id, ended.state, kept, ended.tags)
        return _Done(ended, code, metric, history, values)

    def _execute(self, trial: Trial, run_id: str, output: Path, stop: StopRequest, started: float
                 ) -> tuple[int, Verdict]:
        """The runner's exit code and the watch thread's verdict, once both are done."""
        watch = WatchThread(self.watcher, Watch(trial.index, run_id, stop, started))
        watch.start()
        try:
            code = self.runner.run(trial, run_id, output, stop)
        except KeyboardInterrupt:  # a function trial's Ctrl-C (a notebook's stop button): as SIGINT
            self.interrupt.set(signal.SIGINT)
            stop.ask()
            stop.obey()
            code = 128 + signal.SIGINT
        finally:
            verdict = watch.finish()
        return code, verdict

    def _values(self, run_id: str) -> dict[str, float] | None:
        """Each objective's counted value for a sweep with several (``metrics:``); None for one or none."""
        if not self.config.metrics:
            return None
        return self.config.count({m.name: self.tracker.metric_history(run_id, m.name) for m in self.config.metrics})

    def _history(self, run_id: str) -> list[float] | None:
        """The trial's values of the sweep's metric in logging order; None without a metric."""
        metric = self.config.metric
        if metric is None:
            return None
        return self.tracker.metric_history(run_id, metric.name)

    def _abandon(self, index: int, run_id: str | None) -> None:
        """Record a trial the agent could not carry through (the store refused it, the ledger failed) as
        FAILED, in the ledger and on its run, as far as either still answers."""
        with contextlib.suppress(Exception):
            self.ledger.complete(index, TrialState.FAILED, None)
        if run_id is not None:
            with contextlib.suppress(Exception):
                self.tracker.end_trial(run_id, TrialState.FAILED)

    def _reaped_meanwhile(self, index: int, run_id: str) -> Outcome:
        """The ledger refused the trial's end: another agent had reaped it, this agent's heartbeats
        unseen for the timeout (a network partition, a stalled filesystem). The ledger counts it dead,
        FAILED; its run says the same, and why."""
        why = (f"reaped as dead while it ran: this agent's heartbeats were not seen for "
               f"{self.settings.heartbeat_timeout:g} s")
        self.tracker.end_trial(run_id, TrialState.FAILED, None, {REAPED_TAG: why})
        self.say(f"trial {index} was {why}; recorded FAILED, as the ledger counts it")
        return Outcome(TrialState.FAILED, tags={REAPED_TAG: why})

    def _report(self, index: int, ended: Outcome, code: int, metric: float | None, started: float,
                values: dict[str, float] | None = None) -> None:
        shown = "" if metric is None else f", {self.config.metric.name}={metric:g}"  # type: ignore[union-attr]
        shown += "".join(f", {name}={value:g}" for name, value in (values or {}).items())
        early = "" if ended.stopped_at is None else f", stopped early at iteration {ended.stopped_at}"
        self.say(f"trial {index} {ended.state.value} (exit code {code}{shown}{early}) "
                 f"in {self.clock.monotonic() - started:.1f} s")
        asked = ended.tags.get(STOP_ASKED_TAG)
        if asked is not None:
            hint = getattr(self.runner, "stop_hint", "")
            self.say(f"trial {index} ended on its own although asked to stop ({asked}){hint}")

    def _hint_missing_metric(self, index: int, logged: tuple[str, ...]) -> None:
        """Once per agent: a finished trial logged no ``metric.name`` to its run; say why that happens."""
        if self.hinted:
            return
        self.hinted = True
        name = self.config.metric.name  # type: ignore[union-attr]
        has = f"its run has {', '.join(sorted(logged))}" if logged else "its run has no metrics at all"
        self.say(f"trial {index} finished but logged no metric {name!r} to its run ({has}), so the sweep cannot "
                 "rank it. PyTorch Lightning's MLFlowLogger opens a run of its own unless given the trial's: "
                 "MLFlowLogger(run_id=os.environ[\"MLFLOW_RUN_ID\"], ...). Otherwise check the name the "
                 "script logs with mlflow.log_metric")

    # -- signals --------------------------------------------------------------------------------

    def on_signal(self, signum: int, _frame: Any) -> None:
        """First SIGINT/SIGTERM: stop the trial gently; a second one: kill it now.

        A function trial runs in this thread: its runner raises KeyboardInterrupt into it.
        """
        again = self.interrupt.is_set()
        self.interrupt.set(signum)
        running = self.slot.current
        if running is not None:
            running.stop.ask()
        if not again:
            self.say(f"{signal.Signals(signum).name} received: stopping the running trial")
        if (self.runner.kill() if again else self.runner.interrupt()) and running is not None:
            running.stop.obey()


def _format_params(params: dict[str, Any] | Any) -> str:
    return " ".join(f"{name}={value!r}" if isinstance(value, str) else f"{name}={value}"
                    for name, value in params.items())
