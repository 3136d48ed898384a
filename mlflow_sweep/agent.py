"""The agent behind ``mlflow sweep run``: claim a trial, run it as a nested child run, record it.

The loop (SPEC §3, §4): reap trials of dead agents → claim under the ledger lock (the sampler
decides inside the lock, so parallel agents never share a grid point or overshoot run_cap) →
create the child run → launch the command in its own process group with MLFLOW_RUN_ID set →
tee its output live and into the run's ``output.log`` → record the outcome in MLflow, then in
the ledger. A heartbeat thread tells other agents this one is alive.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable

from mlflow_sweep import command, hyperband, samplers, settings, tracking
from mlflow_sweep.errors import SweepError
from mlflow_sweep.ledger import Ledger, SweepState
from mlflow_sweep.trials import DONE, Proposal, Trial, TrialState

if TYPE_CHECKING:
    from mlflow_sweep.config import Metric, SweepConfig

log = logging.getLogger(__name__)

STOPPED_EARLY_TAG = "sweep.stopped_early"


class AgentStopped(SweepError):
    """The agent was stopped by a signal; its running trial was ended KILLED."""

    def __init__(self, signum: int, detail: str) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"agent stopped by {signal.Signals(signum).name}{detail}")


class TooManyFailures(SweepError):
    """The agent's last ``max_failures`` trials all failed."""


@dataclass(frozen=True)
class AgentResult:
    """What one agent did: trials it ran, how many failed, and why it stopped."""

    ran: int
    failed: int
    reason: str


def init_sweep(config: SweepConfig, config_path: str) -> tracking.Sweep:
    """Create the parent run and the sweep's ledger; the seed is drawn now when the file has none."""
    seed = config.seed if config.seed is not None else secrets.randbits(31)
    sweep = tracking.create_sweep(config, config_path)
    header = {"config": config.raw, "seed": seed, "sweep_id": sweep.run_id, "created": time.time()}
    Ledger.create(sweep.ledger_dir, header)
    return sweep


def open_sweep(sweep_id: str | None) -> tuple[tracking.Sweep, Ledger, SweepConfig, int]:
    """Find a sweep and rebuild its config and seed from the ledger header."""
    from mlflow_sweep.config import config_from_dict

    sweep = tracking.find_sweep(sweep_id)
    ledger = Ledger(sweep.ledger_dir)
    header = ledger.state().header
    return sweep, ledger, config_from_dict(header["config"], f"sweep {sweep.run_id}"), int(header["seed"])


def reap_dead(ledger: Ledger) -> list[Trial]:
    """Mark trials whose agent went silent as dead in the ledger and FAILED in MLflow."""
    reaped = ledger.reap(settings.heartbeat_timeout())
    for trial in reaped:
        if trial.run_id:
            tracking.end_run(trial.run_id, TrialState.FAILED)
    return reaped


def target_reached(metric: Metric | None, trials: tuple[Trial, ...]) -> bool:
    """True once a finished trial's metric reaches ``metric.target`` (SPEC §4a)."""
    if metric is None:
        return False
    return any(metric.reached(t.metric) for t in trials if t.state is TrialState.FINISHED and t.metric is not None)


def make_decide(config: SweepConfig, seed: int) -> Callable[[SweepState], Proposal | Any]:
    """The ledger's critical-section callback: run_cap, target, then the sampler."""

    def decide(state: SweepState) -> Proposal | Any:
        trials = state.trials
        if config.run_cap is not None and len(trials) >= config.run_cap:
            return DONE
        if target_reached(config.metric, trials):
            return DONE
        return samplers.propose(config, trials, seed, len(trials))

    return decide


def run_agent(sweep_id: str | None, *, count: int | None = None, max_failures: int = 5,
              say: Callable[[str], None] = lambda _: None, stream: IO[bytes] | None = None) -> AgentResult:
    """Run trials of the sweep until it is done, ``count`` trials ran, or too many failed in a row."""
    sweep, ledger, config, seed = open_sweep(sweep_id)
    agent = _Agent(sweep, ledger, config, seed, say, stream)
    with agent.running():
        return agent.loop(count, max_failures)


class _Agent:
    """One agent process: its identity, its heartbeat, the trial it runs and the signals it got."""

    def __init__(self, sweep: tracking.Sweep, ledger: Ledger, config: SweepConfig, seed: int,
                 say: Callable[[str], None], stream: IO[bytes] | None) -> None:
        self.sweep, self.ledger, self.config, self.seed = sweep, ledger, config, seed
        self.say, self.stream = say, stream
        self.agent_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.decide = make_decide(config, seed)
        samplers.prepare(config.method)  # heavy imports before the first claim, not inside the lock
        self.proc: subprocess.Popen[bytes] | None = None
        self.signum: int | None = None
        self.trial_index: int | None = None
        self.killed: int | None = None
        self.stopped_at: int | None = None  # the hyperband band that stopped the running trial
        self.check_every = settings.early_terminate_interval() if config.early_terminate else None
        self.workdir = Path(tempfile.mkdtemp(prefix="mlflow-sweep-"))
        self.heartbeat = _Heartbeat(self)

    def running(self) -> _Running:
        return _Running(self)

    def loop(self, count: int | None, max_failures: int) -> AgentResult:
        ran = failed = streak = 0
        reason = "the sweep is done"
        while self.signum is None:
            if count is not None and ran >= count:
                reason = f"ran --count {count} trials"
                break
            trial = self._claim()
            if trial is None:
                reason = self._done_reason()
                break
            try:
                state = self._run(trial)
            except BaseException:
                self._abandon(trial)
                raise
            ran += 1
            failed += state is TrialState.FAILED
            streak = streak + 1 if state is TrialState.FAILED else 0
            if streak >= max_failures:
                raise TooManyFailures(
                    f"sweep {self.sweep.run_id}: agent stopped after {streak} failed trials in a row "
                    f"(last: trial {trial.index}); see the output.log artifact of its child runs")
        if self.signum is not None:
            raise AgentStopped(self.signum, self._stopped_detail())
        self.say(f"agent done: {reason}; ran {ran} trial{'s' * (ran != 1)}, {failed} failed")
        return AgentResult(ran, failed, reason)

    def _abandon(self, trial: Trial) -> None:
        """Record a trial the agent could not carry through (e.g. the store refused it) as FAILED."""
        with contextlib.suppress(Exception):
            if self.ledger.complete(trial.index, TrialState.FAILED, None):
                run_id = self.ledger.state().trials[trial.index].run_id
                if run_id:
                    tracking.end_run(run_id, TrialState.FAILED)

    def _claim(self) -> Trial | None:
        """Claim the next trial; while only other agents' running trials hold the grid, wait.

        A grid point held by a trial whose agent dies comes back after the heartbeat timeout
        (SPEC §4), so an agent that found the grid taken waits for running trials to end.
        """
        while self.signum is None:
            reap_dead(self.ledger)
            trial = self.ledger.claim(self.decide, self.agent_id)
            if trial is not None or not self._grid_points_held():
                return trial
            time.sleep(settings.poll_interval())
        return None

    def _grid_points_held(self) -> bool:
        trials = self.ledger.state().trials
        capped = self.config.run_cap is not None and len(trials) >= self.config.run_cap
        running = any(t.state is TrialState.RUNNING for t in trials)
        return running and not capped and not target_reached(self.config.metric, trials)

    def _done_reason(self) -> str:
        trials = self.ledger.state().trials
        if target_reached(self.config.metric, trials):
            return f"metric target {self.config.metric.target} reached"  # type: ignore[union-attr]
        if self.config.run_cap is not None and len(trials) >= self.config.run_cap:
            return f"run_cap {self.config.run_cap} reached"
        return "every grid point is taken"

    def _stopped_detail(self) -> str:
        return "" if self.killed is None else f"; trial {self.killed} ended KILLED"

    def _run(self, trial: Trial) -> TrialState:
        """Run one claimed trial end to end and record its outcome; return its state."""
        started = time.monotonic()
        run_id, artifact_dir = tracking.start_trial(self.sweep, trial)
        self.ledger.start(trial.index, run_id)
        self.trial_index, self.stopped_at = trial.index, None
        self.heartbeat.poke()
        self.say(f"trial {trial.index} (run {run_id}): {_format_params(trial.params)}")
        output = (artifact_dir / tracking.OUTPUT_ARTIFACT) if artifact_dir else self.workdir / tracking.OUTPUT_ARTIFACT
        output.parent.mkdir(parents=True, exist_ok=True)
        code = self._execute(trial, run_id, output)
        state = self._state(code)
        history = self._history(run_id)
        metric = None if history is None else self.config.metric.summarize(history)  # type: ignore[union-attr]
        # the ledger keeps the history only where hyperband pools it (issue 6), so it stays small
        kept = history if self.config.early_terminate else None
        tags = None if self.stopped_at is None else {STOPPED_EARLY_TAG: str(self.stopped_at)}
        tracking.end_trial(run_id, state, None if artifact_dir else output, tags)
        self.ledger.complete(trial.index, state, metric, stopped_at=self.stopped_at, history=kept)
        self.trial_index = None
        if self.signum is not None:
            self.killed = trial.index
        shown = "" if metric is None else f", {self.config.metric.name}={metric:g}"  # type: ignore[union-attr]
        early = "" if self.stopped_at is None else f", stopped early at iteration {self.stopped_at}"
        self.say(f"trial {trial.index} {state.value} (exit code {code}{shown}{early}) "
                 f"in {time.monotonic() - started:.1f} s")
        return state

    def _state(self, code: int) -> TrialState:
        if self.signum is not None or self.stopped_at is not None:  # a signal, or hyperband (issue 6)
            return TrialState.KILLED
        return TrialState.FINISHED if code == 0 else TrialState.FAILED

    def _history(self, run_id: str) -> list[float] | None:
        """The trial's values of the sweep's metric in logging order; None without a metric."""
        metric = self.config.metric
        if metric is None:
            return None
        return tracking.metric_history(run_id, metric.name)

    def _execute(self, trial: Trial, run_id: str, output: Path) -> int:
        """Launch the command in its own process group, tee its output, return its exit code."""
        json_file = self.workdir / f"params-{trial.index}.json"
        json_file.write_text(json.dumps(command.nest(trial.params)))
        argv = command.build_argv(self.config, trial.params, interpreter=sys.executable, json_file=str(json_file))
        env = self._env(trial, run_id, json_file)
        with open(output, "wb") as sink:
            try:
                self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                             stderr=subprocess.STDOUT, env=env, start_new_session=True)
            except OSError as exc:
                sink.write(f"mlflow-sweep: could not start {argv[0]!r}: {exc}\n".encode())
                return 127
            tee = threading.Thread(target=_tee, args=(self.proc.stdout, sink, self.stream), daemon=True)
            tee.start()
            if self.signum is not None:
                self._terminate()
            code = self._wait(trial.index, run_id)
            tee.join()
        self.proc = None
        return code

    def _wait(self, index: int, run_id: str) -> int:
        """Wait for the command; with ``early_terminate``, judge it by hyperband every interval (issue 6)."""
        assert self.proc is not None
        if self.check_every is None:
            return self.proc.wait()
        while True:
            try:
                return self.proc.wait(timeout=self.check_every)
            except subprocess.TimeoutExpired:
                pass
            if self.stopped_at is None and self.signum is None:
                band = self._below_cut(index, run_id)
                if band is not None and self._terminate():  # False: it ended on its own meanwhile
                    self.stopped_at = band
                    self.say(f"trial {index} is below the hyperband cut at iteration {band}: stopping it")

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

    def _env(self, trial: Trial, run_id: str, json_file: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("MLFLOW_EXPERIMENT_NAME", None)  # the child run's experiment is the sweep's
        env.update({
            "MLFLOW_RUN_ID": run_id,
            "MLFLOW_TRACKING_URI": self.sweep.tracking_uri,
            "MLFLOW_EXPERIMENT_ID": self.sweep.experiment_id,
            "MLFLOW_SWEEP_ID": self.sweep.run_id,
            "MLFLOW_SWEEP_TRIAL": str(trial.index),
            "MLFLOW_SWEEP_PARAMS_FILE": str(json_file),
            "PYTHONUNBUFFERED": "1",
        })
        return env

    def on_signal(self, signum: int, _frame: Any) -> None:
        """First SIGINT/SIGTERM: stop the trial gently; a second one: kill it now."""
        again = self.signum is not None
        self.signum = signum
        if again:
            self._kill(signal.SIGKILL)
        else:
            self.say(f"{signal.Signals(signum).name} received: stopping the running trial")
            self._terminate()

    def _terminate(self) -> bool:
        """SIGTERM the trial's process group, then SIGKILL after the grace period; False if it had ended."""
        proc = self.proc
        if not self._kill(signal.SIGTERM, proc):
            return False
        grace = settings.kill_grace()
        # bound to this process: after an early stop the agent goes on, and the timer must not
        # SIGKILL the next trial's command (issue 6)
        timer = threading.Timer(grace, self._kill, args=(signal.SIGKILL, proc))
        timer.daemon = True
        timer.start()
        return True

    def _kill(self, sig: int, proc: subprocess.Popen[bytes] | None = None) -> bool:
        proc = proc or self.proc
        if proc is None or proc.poll() is not None:
            return False
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return False
        return True


class _Running:
    """Context for an agent's life: signal handlers and heartbeat on, then everything restored."""

    def __init__(self, agent: _Agent) -> None:
        self.agent = agent
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _Agent:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self.agent.on_signal)
        self.agent.heartbeat.start()
        return self.agent

    def __exit__(self, *exc: object) -> None:
        self.agent.heartbeat.stop()
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        shutil.rmtree(self.agent.workdir, ignore_errors=True)


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
        self.stopped = True
        self.wake.set()
        self.thread.join(timeout=5)

    def _beat(self) -> None:
        info = {**self.info, "trial": self.agent.trial_index}
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


def _tee(source: IO[bytes] | None, sink: IO[bytes], stream: IO[bytes] | None) -> None:
    """Copy the command's output into the artifact file and, live, to the agent's stdout."""
    if source is None:
        return
    fd = source.fileno()
    while chunk := os.read(fd, 65536):
        sink.write(chunk)
        sink.flush()
        if stream is not None:
            stream.write(chunk)
            stream.flush()
    source.close()


def _format_params(params: dict[str, Any] | Any) -> str:
    return " ".join(f"{name}={value!r}" if isinstance(value, str) else f"{name}={value}"
                    for name, value in params.items())
