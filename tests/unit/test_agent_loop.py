"""Every decision of the agent, in milliseconds: a real ledger in tmp_path, tracking in memory, a
stand-in runner (or the real function runner), and a clock the test drives.

Signals are delivered by calling the handler the agent installed, as Python would call it; the
watch thread's checks and the heartbeat fall at virtual times the trials themselves move to.
"""
from __future__ import annotations

import signal
import tempfile
import threading
import time

import pytest

from mlflow_sweep import agent_loop, control, lifecycle, runners
from mlflow_sweep.agent_loop import AgentSettings, AgentStopped, TooManyFailures
from mlflow_sweep.errors import LedgerError, TrackingError, UsageError
from mlflow_sweep.ledger import Ledger
from mlflow_sweep.memory_tracker import MemoryTracker
from mlflow_sweep.outcome import Cancelled, CutAt, outcome
from mlflow_sweep.runners import FunctionRunner
from mlflow_sweep.trials import TrialState
from tests.unit.agent_doubles import REAL_WAIT, ManualClock, StandIn, memory_sweep, until_stopped

pytestmark = pytest.mark.timeout(60)

RANDOM = {"method": "random", "parameters": {"x": {"min": 0.0, "max": 1.0}}}
GRID = {"method": "grid", "parameters": {"x": {"values": [1, 2, 3]}}}
SETTINGS = AgentSettings(poll_every=1.0, check_every=5.0, heartbeat_timeout=120.0)


@pytest.fixture(autouse=True)
def _no_agent_settings(monkeypatch):
    for name in ("MLFLOW_SWEEP_POLL_INTERVAL", "MLFLOW_SWEEP_EARLY_TERMINATE_INTERVAL",
                 "MLFLOW_SWEEP_HEARTBEAT_TIMEOUT", "MLFLOW_SWEEP_KILL_GRACE", "MLFLOW_SWEEP_LOCK_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)


def agent(opened, runner, said=None, **options):
    """``run_agent`` on the opened sweep: settings from the (clean) environment, progress into ``said``."""
    said = [] if said is None else said
    return agent_loop.run_agent(opened.sweep.run_id, runner=lambda _: runner, tracker=opened.tracker,
                                clock=opened.clock, say=said.append, **options)


def trials(opened):
    return Ledger(opened.ledger.directory).state().trials


def runs(opened):
    """The sweep's child runs by trial index (the last made for each trial)."""
    return {int(r.tags["sweep.trial"]): r for r in opened.tracker.children(opened.sweep.run_id)}


def logging(opened, values_of):
    """A trial that logs ``values_of(trial)`` under the sweep's metric and exits 0."""
    def behave(trial, run_id, stop):
        for value in values_of(trial):
            opened.tracker.log_metric(run_id, "loss", value)
        return 0
    return behave


# -- claiming and recording ------------------------------------------------------------------------


def test_an_agent_claims_runs_and_records_every_trial_up_to_run_cap(tmp_path):
    opened = memory_sweep(tmp_path, {**RANDOM, "run_cap": 3, "metric": {"name": "loss"}})
    said: list[str] = []
    result = agent(opened, StandIn(logging(opened, lambda t: [t.params["x"] + 1, t.params["x"]])), said)
    ledger, made = trials(opened), runs(opened)
    assert (result.ran, result.failed, result.reason) == (3, 0, "run_cap 3 reached")
    assert [(t.state, t.metric) for t in ledger] == [(TrialState.FINISHED, t.params["x"]) for t in ledger]
    for trial in ledger:
        run = made[trial.index]
        assert (run.run_id, run.status, run.params) == (trial.run_id, "FINISHED", {"x": str(trial.params["x"])})
        assert run.metrics["sweep.loss"] == [trial.metric] and run.artifacts["output.log"] == f"trial {trial.index}\n"
    assert opened.tracker.runs[opened.sweep.run_id].tags["sweep.state"] == "done"  # the last agent out says so
    assert said[-1] == "agent done: run_cap 3 reached; ran 3 trials, 0 failed"


def test_count_limits_what_one_agent_runs(tmp_path):
    opened = memory_sweep(tmp_path, {**RANDOM, "run_cap": 5})
    result = agent(opened, StandIn(), count=2)
    assert (result.ran, result.reason, len(trials(opened))) == (2, "ran --count 2 trials", 2)
    assert opened.tracker.runs[opened.sweep.run_id].tags["sweep.state"] == "running"  # others may go on


def test_too_many_failures_in_a_row_stop_the_agent_and_each_failure_is_recorded(tmp_path):
    opened = memory_sweep(tmp_path, {**RANDOM, "run_cap": 6})
    runner = StandIn(lambda trial, run_id, stop: 3)
    with pytest.raises(TooManyFailures, match="agent stopped after 2 failed trials in a row"):
        agent(opened, runner, max_failures=2)
    assert [t.state for t in trials(opened)] == [TrialState.FAILED] * 2
    assert [r.status for r in runs(opened).values()] == ["FAILED"] * 2
    assert runner.closed  # closed on the way out, too
    [beat] = Ledger(opened.ledger.directory).agents()  # its last beat says it exited, not died
    assert (beat["stopped"], beat["trial"]) == (True, None)


def test_the_metric_target_ends_claims_once_a_finished_trial_reaches_it(tmp_path):
    opened = memory_sweep(tmp_path, {"method": "grid", "parameters": {"acc": {"values": [0.5, 0.95, 0.1]}},
                                     "metric": {"name": "loss", "goal": "maximize", "target": 0.9}})
    result = agent(opened, StandIn(logging(opened, lambda t: [t.params["acc"]])))
    assert (result.ran, result.reason) == (2, "metric target 0.9 reached")


@pytest.mark.parametrize(("summary", "counted"), [("best", 0.1), ("last", 0.4)])
def test_the_counted_value_follows_metric_summary(tmp_path, summary, counted):
    opened = memory_sweep(tmp_path, {**RANDOM, "run_cap": 1, "metric": {"name": "loss", "summary": summary}})
    agent(opened, StandIn(logging(opened, lambda t: [0.3, 0.1, float("nan"), 0.4])))
    [trial] = trials(opened)
    assert (trial.metric, runs(opened)[0].metrics["sweep.loss"]) == (counted, [counted])


def test_a_finished_trial_without_the_metric_gets_the_hint_once(tmp_path):
    opened = memory_sweep(tmp_path, {**RANDOM, "run_cap": 2, "metric": {"name": "loss"}})
    said: list[str] = []
    agent(opened, StandIn(lambda trial, run_id, stop: opened.tracker.log_metric(run_id, "acc", 1.0) or 0), said)
    hints = [line for line in said if "logged no metric 'loss'" in line]
    assert len(hints) == 1 and "its run has acc" in hints[0]


# -- signals ------------------------------------------------------------------------------------------


def _signal(sig: int, times: int = 1):
    """A trial during which the agent gets ``sig`` (``times`` times), delivered as Python would."""
    def behave(trial, run_id, stop):
        for _ in range(times):
            signal.getsignal(sig)(sig, None)
        return until_stopped()(trial, run_id, stop)
    return behave


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_the_trial_killed_requeues_it_and_stops_the_agent(tmp_path, sig):
    opened = memory_sweep(tmp_path, {**RANDOM, "run_cap": 2, "seed": 3})
    runner = StandIn(_signal(sig))
    before = signal.getsignal(sig)
    with pytest.raises(AgentStopped) as stopped:
        agent(opened, runner)
    [trial] = trials(opened)
    name = signal.Signals(sig).name
    assert (stopped.value.exit_code, stopped.value.result.ran, runner.interrupts, runner.kills) == (128 + sig, 1, 1, 0)
    assert str(stopped.value) == f"agent stopped by {name}; trial 0 ended KILLED (its point is handed out again)"
    assert (trial.state, trial.requeued) == (TrialState.KILLED, "interrupted")
    assert (runs(opened)[0].status, runs(opened)[0].tags["sweep.killed_by"]) == ("KILLED", name)
    assert signal.getsignal(sig) is before  # the agent's handler is gone with it

    # the interrupted trial does not count: the next agent runs its point again, then one more
    agent(opened, StandIn())
    later = trials(opened)
    assert [(t.state, t.retry_of) for t in later] == [(TrialState.KILLED, None), (TrialState.FINISHED, 0),
                                                      (TrialState.FINISHED, None)]
    assert later[1].params == later[0].params and runs(opened)[1].tags["sweep.retry_of"] == "0"


def test_a_second_signal_kills_the_trial_at_once(tmp_path):
    opened = memory_sweep(tmp_path, {**RANDOM, "run_cap": 2})
    runner = StandIn(_signal(signal.SIGINT, times=2))
    with pytest.raises(AgentStopped):
        agent(opened, runner)
    assert (runner.interrupts, runner.kills) == (1, 1)


def test_a_signal_before_the_trial_starts_keeps_it_from_starting(tmp_path):
    class Interrupting(MemoryTracker):
        def start_trial(self, sweep, trial):  # the signal lands between the claim and the child run
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
            return super().start_trial(sweep, trial)

    opened = memory_sweep(tmp_path, {**RANDOM, "run_cap": 2}, tracker=Interrupting(tmp_path))
    runner = StandIn()
    with pytest.raises(AgentStopped):
        agent(opened, runner)
    assert (runner.started, [(t.state, t.requeued) for t in trials(opened)]) == \
        ([], [(TrialState.KILLED, "interrupted")])


def test_a_trial_that_ends_on_its_own_as_the_signal_lands_is_recorded_as_it_ended(tmp_path):
    opened = memory_sweep(tmp_path, {**RANDOM, "run_cap": 2})

    def behave(trial, run_id, stop):
        runner._running = False  # the command has exited; the signal reaches no process
        signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
        return 0

    runner = StandIn(behave)
    with pytest.raises(AgentStopped) as stopped:
        agent(opened, runner)
    [trial] = trials(opened)
    assert (trial.state, trial.requeued, runs(opened)[0].tags["sweep.stop_asked"]) == \
        (TrialState.FINISHED, None, "SIGINT")
    assert str(stopped.value) == "agent stopped by SIGINT"


def test_keyboard_interrupt_in_a_function_trial_is_an_interrupt_of_the_agent(tmp_path):
    opened = memory_sweep(tmp_path, {**RANDOM, "run_cap": 3})
    calls: list[int] = []

    def train():
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # what a notebook's stop button raises in the running cell

    runner = FunctionRunner(opened.sweep, opened.config, train, opened.tracker)
    with pytest.raises(AgentStopped) as stopped:
        agent(opened, runner)
    assert (stopped.value.result.ran, [t.state for t in trials(opened)]) == \
        (2, [TrialState.FINISHED, TrialState.KILLED])
    assert trials(opened)[1].requeued == "interrupted"
    assert "trial interrupted (KeyboardInterrupt)" in runs(opened)[1].artifacts["output.log"]


def test_sigint_reaches_a_function_trial_in_the_agents_own_thread(tmp_path):
    opened = memory_sweep(tmp_path, {**RANDOM, "run_cap": 3})

    def train():
        signal.getsignal(signal.SIGINT)(signal.SIGINT, None)  # raises KeyboardInterrupt here, as Ctrl-C would
        raise AssertionError("the function went on after Ctrl-C")

    with pytest.raises(AgentStopped):
        agent(opened, FunctionRunner(opened.sweep, opened.config, train, opened.tracker))
    [trial] = trials(opened)
    assert (trial.state, trial.requeued, runs(opened)[0].tags["sweep.killed_by"]) == \
        (TrialState.KILLED, "interrupted", "SIGINT")


# -- the watch thread: cancel and hyperband ------------------------------------------------------


def _cancel_during(opened, then):
    """A trial during which the sweep is cancelled (as from another host), one poll interval passes,
    then ``then`` runs."""
    def behave(trial, run_id, stop):
        control.change(lifecycle.open_sweep(opened.sweep.run_id, tracker=opened.tracker, clock=opened.clock),
                       "cancel")
        opened.clock.advance(1.0)
        return then(trial, run_id, stop)
    return behave


def test_a_cancel_seen_by_the_watch_thread_kills_the_trial_for_good(tmp_path):
    opened = memory_sweep(tmp_path, {**RANDOM, "run_cap": 5})
    said: list[str] = []
    runner = StandIn(_cancel_during(opened, until_stopped()))
    result = agent(opened, runner, said)
    [trial] = trials(opened)
    assert (trial.state, trial.requeued, runs(opened)[0].tags["sweep.killed_by"]) == \
        (TrialState.KILLED, None, "cancel")
    assert (result.ran, result.reason, runner.interrupts) == (1, "the sweep is cancelled", 1)
    assert "the sweep was cancelled: stopping trial 0" in said
    assert opened.tracker.runs[opened.sweep.run_id].status == "KILLED"


def test_a_cancel_that_lands_before_the_command_starts_still_ends_the_trial_killed(tmp_path):
    """No process to interrupt yet: the request stays asked, and the runner ends the trial as it launches it."""
    opened = memory_sweep(tmp_path, {**RANDOM, "run_cap": 5})

    def launching(trial, run_id, stop):
        runner._running = False  # still starting the command: interrupt() reaches nothing
        assert stop.wait(REAL_WAIT)
        stop.obey()  # what CommandRunner does when it finds the request right after Popen
        return -15

    runner = StandIn(_cancel_during(opened, launching))
    agent(opened, runner)
    assert (runner.interrupts, trials(opened)[0].state, runs(opened)[0].tags["sweep.killed_by"]) == \
        (1, TrialState.KILLED, "cancel")


def test_a_cancel_reaches_a_real_commands_process_group(tmp_path):
    """The real CommandRunner: the watch thread's interrupt SIGTERMs the running command's group."""
    opened = memory_sweep(tmp_path, {**RANDOM, "run_cap": 5, "command": f"touch {tmp_path}/started; sleep 60 ${{x}}"})

    def cancel_once_started():  # from another thread, as another host would: the agent's thread waits on the command
        deadline = time.monotonic() + REAL_WAIT
        while not (tmp_path / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        control.change(lifecycle.open_sweep(opened.sweep.run_id, tracker=opened.tracker, clock=opened.clock), "cancel")
        opened.clock.advance(1.0)

    threading.Thread(target=cancel_once_started, daemon=True).start()
    runner = runners.CommandRunner(opened.sweep, opened.config)
    result = agent(opened, runner)
    [trial] = trials(opened)
    assert (result.reason, trial.state, runs(opened)[0].tags["sweep.killed_by"]) == \
        ("the sweep is cancelled", TrialState.KILLED, "cancel")
    assert runner.workdir is None  # closed by the agent on its way out


def test_a_command_asked_to_stop_before_it_starts_is_not_started(tmp_path):
    class Interrupting(MemoryTracker):
        def start_trial(self, sweep, trial):
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
            return super().start_trial(sweep, trial)

    opened = memory_sweep(tmp_path, {**RANDOM, "run_cap": 2, "command": f"touch {tmp_path}/started ${{x}}"},
                          tracker=Interrupting(tmp_path))
    with pytest.raises(AgentStopped):
        agent(opened, runners.CommandRunner(opened.sweep, opened.config))
    assert (trials(opened)[0].requeued, (tmp_path / "started").exists()) == ("interrupted", False)


def test_a_function_trial_sees_a_cancel_through_should_stop(tmp_path):
    import mlflow_sweep

    opened = memory_sweep(tmp_path, {**RANDOM, "run_cap": 5})
    seen: list[bool] = []

    def train():
        control.change(lifecycle.open_sweep(opened.sweep.run_id, tracker=opened.tracker, clock=opened.clock), "cancel")
        opened.clock.advance(1.0)
        runners.current_trial().stop.wait(REAL_WAIT)
        seen.append(mlflow_sweep.should_stop())

    agent(opened, FunctionRunner(opened.sweep, opened.config, train, opened.tracker))
    assert (seen, runs(opened)[0].status, runs(opened)[0].tags["sweep.killed_by"]) == ([True], "KILLED", "cancel")


HYPERBAND = {"method": "grid", "metric": {"name": "loss"},
             "early_terminate": {"type": "hyperband", "min_iter": 3, "eta": 3},
             "parameters": {"lr": {"values": [0.1, 0.2, 4.0]}}}


def _curve(lr: float) -> list[float]:
    return [2.0 + lr * t for t in range(3)] if lr > 1 else [1.0 / (t + 1) for t in range(9)]


def _hyperband_trial(opened, then):
    """Good rates log their whole curve and finish; a diverging one logs 3 values, a check interval
    passes, then ``then`` runs."""
    def behave(trial, run_id, stop):
        for value in _curve(trial.params["lr"]):
            opened.tracker.log_metric(run_id, "loss", value)
        if trial.params["lr"] < 1:
            return 0
        opened.clock.advance(5.0)
        return then(trial, run_id, stop)
    return behave


def test_hyperband_stops_a_command_trial_below_the_cut(tmp_path):
    opened = memory_sweep(tmp_path, HYPERBAND)
    said: list[str] = []
    agent(opened, StandIn(_hyperband_trial(opened, until_stopped())), said)
    cut = trials(opened)[2]
    assert (cut.state, cut.stopped_at, cut.history, cut.metric) == (TrialState.KILLED, 3, (2.0, 6.0, 10.0), 2.0)
    assert [t.state for t in trials(opened)[:2]] == [TrialState.FINISHED] * 2
    assert (runs(opened)[2].status, runs(opened)[2].tags["sweep.stopped_early"]) == ("KILLED", "3")
    assert "trial 2 is below the hyperband cut at iteration 3: stopping it" in said


def test_hyperband_stops_a_function_trial_that_asks_should_stop(tmp_path):
    import mlflow_sweep

    opened = memory_sweep(tmp_path, HYPERBAND)

    def train(params):
        run_id = runners.current_trial().run_id
        _hyperband_trial(opened, lambda *a: runners.current_trial().stop.wait(REAL_WAIT))(
            runners.current_trial(), run_id, None)
        assert mlflow_sweep.should_stop() is (params["lr"] > 1)

    agent(opened, FunctionRunner(opened.sweep, opened.config, train, opened.tracker))
    cut = trials(opened)[2]
    assert (cut.state, cut.stopped_at, runs(opened)[2].tags["sweep.stopped_early"]) == (TrialState.KILLED, 3, "3")


def test_a_function_trial_that_never_asks_should_stop_runs_to_its_end_and_is_finished(tmp_path):
    """Hyperband asked it to stop, but the function ran to its end: FINISHED, with a note, not KILLED."""
    opened = memory_sweep(tmp_path, HYPERBAND)
    said: list[str] = []

    def train(params):
        trial = runners.current_trial()
        _hyperband_trial(opened, lambda *a: trial.stop.wait(REAL_WAIT))(trial, trial.run_id, None)
        opened.tracker.log_metric(trial.run_id, "loss", 1.5)  # the rest of its work, after the cut was asked

    agent(opened, FunctionRunner(opened.sweep, opened.config, train, opened.tracker), said)
    ran = trials(opened)[2]
    run = runs(opened)[2]
    assert (ran.state, ran.stopped_at, ran.metric) == (TrialState.FINISHED, None, 1.5)
    assert (run.status, "sweep.stopped_early" in run.tags, run.tags["sweep.stop_asked"]) == \
        ("FINISHED", False, "hyperband at iteration 3")
    assert ("trial 2 ended on its own although asked to stop (hyperband at iteration 3); a function trial "
            "stops early only where it calls mlflow_sweep.should_stop()") in said


# -- reaping, requeue, retry, run_cap, pause -----------------------------------------------------


def _ghost_claims(opened, *, with_run: bool):
    """Another agent (never heard of again) claims the next trial, and maybe makes its child run."""
    claimed = opened.ledger.claim(lambda state: agent_loop.policy.next_step(
        opened.config, state.trials, opened.seed, state.controls), "ghost-1-aaaaaa").trial
    if with_run:
        run_id, _ = opened.tracker.start_trial(opened.sweep, claimed)
        opened.ledger.start(claimed.index, run_id)
    return opened.ledger.state().trials[claimed.index]


def test_a_dead_agents_trial_is_reaped_failed_and_its_grid_point_handed_out_again(tmp_path):
    opened = memory_sweep(tmp_path, GRID)
    ghost = _ghost_claims(opened, with_run=True)
    opened.clock.advance(121)
    agent(opened, StandIn())
    ledger = trials(opened)
    run = opened.tracker.runs[ghost.run_id]
    assert (ledger[0].params["x"], ledger[0].state, ledger[0].dead) == (1, TrialState.FAILED, True)
    assert sorted((t.params["x"], t.state) for t in ledger[1:]) == [(x, TrialState.FINISHED) for x in (1, 2, 3)]
    assert (run.status, run.params, run.tags["sweep.reaped"]) == \
        ("FAILED", {"x": "1"}, "its agent ghost-1-aaaaaa sent no heartbeat for 120 s")


def test_a_trial_whose_agent_died_before_its_child_run_gets_a_failed_run_when_reaped(tmp_path):
    """Every trial the ledger counts appears in the tracking store, with the reason."""
    opened = memory_sweep(tmp_path, {**RANDOM, "run_cap": 3})
    _ghost_claims(opened, with_run=False)
    opened.clock.advance(121)
    agent(opened, StandIn())
    ledger, made = trials(opened), runs(opened)
    assert [t.state for t in ledger] == [TrialState.FAILED, TrialState.FINISHED, TrialState.FINISHED]
    assert (sorted(made), ledger[0].run_id) == ([0, 1, 2], made[0].run_id)
    assert (made[0].status, made[0].params, made[0].tags["sweep.reaped"]) == \
        ("FAILED", {"x": str(ledger[0].params["x"])}, "its agent ghost-1-aaaaaa sent no heartbeat for 120 s")
    assert made[0].tags["mlflow.note.content"]


def test_a_trial_reaped_while_its_agent_lost_its_heartbeats_ends_failed_as_the_ledger_counts_it(tmp_path, monkeypatch):
    opened = memory_sweep(tmp_path, {**RANDOM, "run_cap": 1})

    def lost(*_):  # the shared filesystem is away for this agent: no beat gets through
        raise OSError("Stale file handle")

    monkeypatch.setattr(Ledger, "heartbeat", lost)
    said: list[str] = []

    def behave(trial, run_id, stop):
        opened.clock.advance(200)
        other = lifecycle.open_sweep(opened.sweep.run_id, tracker=opened.tracker, clock=opened.clock)
        assert [t.index for t in lifecycle.reap_dead(other)] == [0]  # what any other agent does at its claim
        return 0

    result = agent(opened, StandIn(behave), said)
    [trial] = trials(opened)
    assert (result.ran, result.failed, trial.state, trial.dead) == (1, 1, TrialState.FAILED, True)
    assert (runs(opened)[0].status, "reaped as dead while it ran" in runs(opened)[0].tags["sweep.reaped"]) == \
        ("FAILED", True)
    assert any("recorded FAILED, as the ledger counts it" in line for line in said)


def test_a_failing_heartbeat_write_does_not_stop_the_agent(tmp_path, monkeypatch):
    opened = memory_sweep(tmp_path, {**RANDOM, "run_cap": 2})
    monkeypatch.setattr(Ledger, "heartbeat", lambda *_: (_ for _ in ()).throw(OSError("EIO")))
    assert agent(opened, StandIn()).ran == 2


def test_retry_hands_failed_points_out_again_before_new_ones(tmp_path):
    opened = memory_sweep(tmp_path, GRID)
    agent(opened, StandIn(lambda trial, run_id, stop: 1 if trial.params["x"] == 2 else 0))
    retried = control.requeue_failed(opened)
    agent(opened, StandIn())
    ledger = trials(opened)
    assert (retried.changed, retried.trials) == (True, (1,))
    assert [(t.params["x"], t.state, t.retry_of) for t in ledger] == \
        [(1, TrialState.FINISHED, None), (2, TrialState.FAILED, None), (3, TrialState.FINISHED, None),
         (2, TrialState.FINISHED, 1)]
    assert runs(opened)[3].tags["sweep.retry_of"] == "1"
    assert control.requeue_failed(opened).message.endswith("no failed trials to retry")


def test_update_of_run_cap_gives_a_done_sweep_exactly_the_difference(tmp_path):
    opened = memory_sweep(tmp_path, {**RANDOM, "run_cap": 2})
    agent(opened, StandIn())
    parent = opened.tracker.runs[opened.sweep.run_id]
    before = (parent.status, parent.tags["sweep.state"])
    updated = control.set_run_cap(opened, 5)
    reopened = (parent.status, parent.tags["sweep.state"])
    said: list[str] = []
    result = agent(opened, StandIn(), said)
    assert (before, reopened, (parent.status, parent.tags["sweep.state"])) == \
        (("FINISHED", "done"), ("RUNNING", "running"), ("FINISHED", "done"))
    assert (result.ran, len(trials(opened)), "run_cap 2 -> 5" in updated.message) == (3, 5, True)


def test_a_paused_agent_waits_reading_only_and_claims_when_resumed(tmp_path, monkeypatch):
    opened = memory_sweep(tmp_path, {**RANDOM, "run_cap": 1})
    control.change(opened, "pause")
    attempts: list[float] = []
    reads: list[float] = []
    claim, state = Ledger.claim, Ledger.state
    monkeypatch.setattr(Ledger, "claim", lambda *a: (attempts.append(opened.clock.monotonic()), claim(*a))[1])
    monkeypatch.setattr(Ledger, "state", lambda *a: (reads.append(opened.clock.monotonic()), state(*a))[1])
    opened.clock.call_at(300.0, lambda: control.change(opened, "resume"))  # five minutes of pause
    said: list[str] = []
    result = agent(opened, StandIn(), said)
    [trial] = trials(opened)
    resumed = attempts[1]
    # one claim while paused, then only reads until the resume; then the claim, and the one that finds run_cap.
    # The reads back off while nothing happens: at most 10 poll intervals apart, jittered by half
    assert (result.ran, attempts, trial.started) == (1, [0.0, resumed, resumed], opened.clock.EPOCH + resumed)
    assert 300.0 <= resumed <= 300.0 + 15 * SETTINGS.poll_every
    assert 15 <= len({t for t in reads if 0 < t < 300}) <= 45  # looks at the ledger; one a second would be 300
    assert said.count("waiting: the sweep is paused (mlflow sweep resume goes on)") == 1


def test_a_stopped_sweep_runs_nothing_and_the_agent_exits_saying_so(tmp_path):
    opened = memory_sweep(tmp_path, {**RANDOM, "run_cap": 3})
    control.change(opened, "stop")
    result = agent(opened, StandIn())
    assert (result.ran, result.reason, trials(opened)) == (0, "the sweep is stopped", ())


# -- the store or the ledger refuses ----------------------------------------------------------------


def test_a_trial_the_store_refuses_is_recorded_failed_and_the_error_goes_up(tmp_path):
    class Refusing(MemoryTracker):
        def start_trial(self, sweep, trial):
            raise TrackingError("the tracking store (memory:) refused start trial: experiment deleted")

    opened = memory_sweep(tmp_path, GRID, tracker=Refusing(tmp_path))
    with pytest.raises(TrackingError, match="refused start trial"):
        agent(opened, StandIn())
    assert [t.state for t in trials(opened)] == [TrialState.FAILED]


def test_a_child_run_is_ended_failed_when_the_ledger_refuses_its_start(tmp_path, monkeypatch):
    opened = memory_sweep(tmp_path, GRID)

    def refused(*_):
        raise LedgerError("events/00000002.json: Input/output error")

    monkeypatch.setattr(Ledger, "start", refused)
    with pytest.raises(LedgerError):
        agent(opened, StandIn())
    assert [r.status for r in runs(opened).values()] == ["FAILED"]  # not left RUNNING
    assert [t.state for t in trials(opened)] == [TrialState.FAILED]


# -- settings, temporary files, a stored config ------------------------------------------------


def test_a_bad_setting_is_refused_before_anything_is_made(tmp_path, monkeypatch):
    opened = memory_sweep(tmp_path, {**RANDOM, "run_cap": 2})
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("MLFLOW_SWEEP_POLL_INTERVAL", "abc")
    made: list[object] = []
    with pytest.raises(UsageError, match="MLFLOW_SWEEP_POLL_INTERVAL must be a number of seconds, but got 'abc'"):
        agent_loop.run_agent(opened.sweep.run_id, tracker=opened.tracker, clock=opened.clock,
                             runner=lambda o: made.append(runners.CommandRunner(o.sweep, o.config)) or made[0])
    assert (list(scratch.iterdir()), made, trials(opened)) == ([], [], ())


def test_the_runner_is_closed_when_the_agent_fails_to_start(tmp_path, monkeypatch):
    opened = memory_sweep(tmp_path, {**RANDOM, "run_cap": 2})
    runner = StandIn()
    monkeypatch.setattr(agent_loop.samplers, "prepare", lambda method: (_ for _ in ()).throw(ImportError("skopt")))
    with pytest.raises(ImportError):
        agent(opened, runner)
    assert runner.closed


def test_a_command_runner_makes_its_work_directory_at_its_first_trial_and_close_removes_it(tmp_path):
    opened = memory_sweep(tmp_path, {**RANDOM, "run_cap": 1, "command": "true ${x}"})
    runner = runners.CommandRunner(opened.sweep, opened.config)
    assert runner.workdir is None
    agent_loop.run(opened, runner, agent_settings=SETTINGS)
    made = runner.workdir
    assert made is not None and made.is_dir()
    runner.close()
    assert not made.exists() and trials(opened)[0].state is TrialState.FINISHED


def test_a_stored_config_opens_even_when_todays_rules_would_refuse_it(tmp_path, monkeypatch):
    """A rule tightened in a later release must not make a running sweep impossible to open."""
    from mlflow_sweep import schema
    from mlflow_sweep.errors import Problem

    opened = memory_sweep(tmp_path, {**RANDOM, "run_cap": 1, "metric": {"name": "loss", "summary": "last"}})
    monkeypatch.setattr(schema, "validate", lambda data: [Problem("method", "a rule of a later release")])
    reopened = lifecycle.open_sweep(opened.sweep.run_id, tracker=opened.tracker, clock=opened.clock)
    assert reopened.config.raw == opened.config.raw and reopened.config.metric == opened.config.metric
    assert agent(opened, StandIn()).ran == 1


# -- the outcome, as a table ------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "verdict", "signum", "obeyed", "expected"), [
    (0, None, None, False, ("FINISHED", None, {})),
    (1, None, None, False, ("FAILED", None, {})),
    (-15, Cancelled(), None, True, ("KILLED", None, {"sweep.killed_by": "cancel"})),
    (-15, Cancelled(), signal.SIGINT, True, ("KILLED", None, {"sweep.killed_by": "cancel"})),
    (-15, None, signal.SIGTERM, True, ("KILLED", "interrupted", {"sweep.killed_by": "SIGTERM"})),
    (-15, CutAt(9), None, True, ("KILLED", None, {"sweep.stopped_early": "9"})),
    (0, CutAt(9), None, True, ("KILLED", None, {"sweep.stopped_early": "9"})),  # should_stop() heeded
    (0, CutAt(9), None, False, ("FINISHED", None, {"sweep.stop_asked": "hyperband at iteration 9"})),
    (2, Cancelled(), None, False, ("FAILED", None, {"sweep.stop_asked": "cancel"})),
    (0, None, signal.SIGINT, False, ("FINISHED", None, {"sweep.stop_asked": "SIGINT"})),
])
def test_outcome(code, verdict, signum, obeyed, expected):
    ended = outcome(code, verdict, signum, obeyed)
    assert (ended.state.value, ended.requeue, dict(ended.tags)) == expected
    assert ended.stopped_at == (verdict.band if isinstance(verdict, CutAt) and obeyed and signum is None else None)


def test_settings_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("MLFLOW_SWEEP_HEARTBEAT_TIMEOUT", "8")
    monkeypatch.setenv("MLFLOW_SWEEP_POLL_INTERVAL", "0.5")
    read = AgentSettings.from_env()
    assert (read.poll_every, read.check_every, read.heartbeat_timeout, read.heartbeat_every) == (0.5, 5.0, 8.0, 2.0)


def test_the_manual_clock_keeps_virtual_time():
    clock = ManualClock()
    fired: list[float] = []
    clock.call_at(2.0, lambda: fired.append(clock.monotonic()))
    clock.sleep(5)
    assert (fired, clock.monotonic(), clock.time() - clock.EPOCH) == ([2.0], 5.0, 5.0)
