"""The sweep's lifecycle commands: stop, pause, resume, cancel, retry, update, enqueue.

Each one opens the sweep, publishes its event in the ledger, decided on the freshest state (so
every agent on every host sees it at its next claim), shows the new state on the parent run, and
returns a ``ControlResult``. A command that would change nothing (``stop`` on a stopped sweep,
``retry`` with no failed trial) writes nothing and says why. The CLI calls these and prints the
message. ``change``, ``requeue_failed``, ``set_run_cap``, ``add_points`` and ``set_config`` do the
same on a sweep already opened (with any tracker). Heavy imports happen inside the functions, so
``import mlflow_sweep`` stays cheap.

Points to enqueue and a new config version are checked against the config in effect inside the
commit, on the state the event is published after, so a concurrent ``update --config`` cannot let
through a point or a version that does not fit; a refusal writes nothing anywhere (ledger, parent
run, artifacts) and raises with every problem.
"""
from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from mlflow_sweep.errors import UsageError
from mlflow_sweep.trials import SweepPhase, check_count

if TYPE_CHECKING:
    from mlflow_sweep.config import SweepConfig
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
    requeued, ``points`` the numbers ``enqueue`` gave its points, ``version`` the config version in
    effect afterwards (``update --config``).
    """

    sweep_id: str
    state: SweepPhase
    changed: bool
    message: str
    trials: tuple[int, ...] = ()
    points: tuple[int, ...] = ()
    version: int | None = None

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
    from mlflow_sweep import lifecycle

    return requeue_failed(lifecycle.open_sweep(sweep_id))


def requeue_failed(opened: OpenSweep) -> ControlResult:
    """``retry`` on an opened sweep.

    Args:
        opened: the sweep.
    """
    from mlflow_sweep import lifecycle, policy
    from mlflow_sweep.ledger import Decision

    lifecycle.reap_dead(opened)  # a trial whose agent died is FAILED, so it can be retried now

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


def update(sweep_id: str | None = None, *, run_cap: int | None = None,
           config: Mapping[str, Any] | str | os.PathLike[str] | None = None) -> ControlResult:
    """Change a live sweep: its run_cap, or its whole config (search space, method, command, ...).

    A new config is checked as at ``init`` and takes effect for every trial claimed after it;
    running trials finish as they are. Old trials stay history where they fit the new space (a
    parameter added with ``default:`` or a single ``value:`` gives them that value): ``bayes``
    learns from them and a grid skips the points they cover. Each version is an event in the
    ledger and an artifact of the parent run (``config_versions/v<N>/``). A change that cannot
    apply (the metric, the seed, the experiment, ``early_terminate``) raises ConfigError with the
    reasons, and nothing changes.

    Args:
        sweep_id: the sweep's parent run ID; None means the most recently initialized sweep.
        run_cap: the most trials the sweep runs in all (interrupted and retried trials aside); with
            ``config``, it replaces the file's.
        config: the new config, a dict or the path of a YAML or JSON file in W&B sweep syntax.
    """
    from mlflow_sweep import lifecycle

    if run_cap is None and config is None:
        raise UsageError("update needs run_cap (the most trials the sweep runs) or config (a new sweep file)")
    if run_cap is not None:
        check_count(run_cap, "run_cap")
    if config is None:
        return set_run_cap(lifecycle.open_sweep(sweep_id), run_cap)  # type: ignore[arg-type]
    from mlflow_sweep.api import checked_config

    new = checked_config(config)  # every check before the sweep is even opened: a bad file changes nothing
    return set_config(lifecycle.open_sweep(sweep_id), new, config, run_cap=run_cap)


def set_config(opened: OpenSweep, new: SweepConfig, given: Mapping[str, Any] | str | os.PathLike[str], *,
               run_cap: int | None = None) -> ControlResult:
    """``update(config=...)`` on an opened sweep: publish the new version, keep it on the parent run.

    Args:
        opened: the sweep.
        new: the new config, checked.
        given: what the user gave (a file's path is kept as the artifact; a dict as JSON).
        run_cap: replaces the new config's run_cap.
    """
    from dataclasses import replace

    from mlflow_sweep import lifecycle
    from mlflow_sweep.errors import ConfigError
    from mlflow_sweep.ledger import Decision
    from mlflow_sweep.versions import compare

    if run_cap is not None:
        new = replace(new, run_cap=run_cap, raw={**new.raw, "run_cap": run_cap})
    what = f"update of sweep {opened.sweep.run_id}"

    def decide(state: SweepState) -> Decision[Any]:
        comparison = compare(opened.config_in(state), new, opened.seed)
        if comparison.refused or not comparison.changes:
            return Decision(comparison)
        event = {"event": "config", "version": len(state.configs) + 1, "config": new.raw, "by": _who()}
        return Decision(comparison, event)

    committed = opened.ledger.commit(decide)
    comparison, state = committed.value, committed.state
    if comparison.refused:
        raise ConfigError(_source(given), comparison.refused, what)
    if committed.event is None:
        return _result(opened, state, False, "the new config changes nothing; nothing written",
                       version=state.controls.version)
    version = state.controls.version
    _keep_version(opened, version, given)
    shown = lifecycle.publish_state(opened)
    lines = [f"config version {version} is in effect for every trial claimed from now on:",
             *(f"  {line}" for line in comparison.changes), _history_line(opened, state, new),
             f"the sweep is {shown}"]
    return _result(opened, state, True, "\n".join(lines), shown=shown, version=version)


def check_update(sweep_id: str | None, new: SweepConfig, source: str) -> str:
    """What ``update --config`` would do with ``new`` (checked already), written nowhere: ``validate --sweep-id``.

    Raises ConfigError with the reasons when the new version could not apply.

    Args:
        sweep_id: the sweep's parent run ID; None means the most recently initialized sweep.
        new: the checked config.
        source: how to name it in messages (the file).
    """
    from mlflow_sweep import lifecycle
    from mlflow_sweep.errors import ConfigError
    from mlflow_sweep.versions import compare

    opened = lifecycle.open_sweep(sweep_id)
    state = opened.ledger.state()
    comparison = compare(opened.config_in(state), new, opened.seed)
    name = f"sweep {opened.sweep.run_id}"
    if comparison.refused:
        raise ConfigError(source, comparison.refused, f"update of {name}")
    if not comparison.changes:
        return f"as an update of {name}: it changes nothing"
    lines = [f"as an update of {name} ('mlflow sweep update --config {source}'), version "
             f"{state.controls.version + 1} would change:", *(f"  {line}" for line in comparison.changes),
             _history_line(opened, state, new)]
    return "\n".join(lines)


def _source(given: Any) -> str:
    from mlflow_sweep.api import DICT_SOURCE

    return DICT_SOURCE if isinstance(given, Mapping) else os.fspath(given)


def _keep_version(opened: OpenSweep, version: int, given: Mapping[str, Any] | str | os.PathLike[str]) -> None:
    """The new version as the user wrote it, among the parent run's artifacts; the ledger has it already."""
    import tempfile
    from pathlib import Path

    from mlflow_sweep.api import CONFIG_ARTIFACT, as_json
    from mlflow_sweep.errors import SweepError, TrackingError

    try:
        if isinstance(given, Mapping):
            with tempfile.TemporaryDirectory(prefix="mlflow-sweep-") as tmp:
                path = Path(tmp) / CONFIG_ARTIFACT
                path.write_text(as_json(given))
                opened.tracker.log_config_version(opened.sweep, version, str(path))
        else:
            opened.tracker.log_config_version(opened.sweep, version, os.fspath(given))
    except SweepError as exc:
        raise TrackingError(f"sweep {opened.sweep.run_id}: config version {version} is in effect (the ledger "
                            f"has it), but its copy on the parent run could not be made: {exc}") from None


def _history_line(opened: OpenSweep, state: SweepState, new: SweepConfig) -> str:
    """How much of what the sweep knows stays history in the new space."""
    from mlflow_sweep import policy

    version = state.controls.version
    ended = [t for t in state.trials if t.state.is_terminal]
    fit = sum(1 for t in ended if policy.in_space(new, t, version) is not None)
    text = f"{fit} of {len(ended)} ended trials fit the new space and stay history"
    priors = state.controls.priors
    if priors:
        kept = sum(1 for t in priors if policy.in_space(new, t, version) is not None)
        text += f", and {kept} of {len(priors)} prior runs"
    return text


def enqueue(sweep_id: str | None = None, points: Sequence[Mapping[str, Any]] | Mapping[str, Any] | str | None = None
            ) -> ControlResult:
    """Run these points before any new one, in order, each exactly once (Optuna's ``enqueue_trial``).

    Each point maps parameter names to values (nested blocks as mappings, or dotted names);
    parameters it leaves out are sampled. A point outside the search space, or naming no
    parameter, is refused with its path, and nothing is enqueued. Enqueued trials count toward
    run_cap, and a grid does not run again a point an enqueued trial covers.

    Args:
        sweep_id: the sweep's parent run ID; None means the most recently initialized sweep.
        points: a point, a list of points, or JSON/YAML text or a file's path holding them.
    """
    from mlflow_sweep import lifecycle

    given, source = _points(points)
    return add_points(lifecycle.open_sweep(sweep_id), given, source)


def _points(points: Any) -> tuple[list[Any], str]:
    from mlflow_sweep import sweepfile

    source = "points"
    if isinstance(points, (str, os.PathLike)):
        points, source = sweepfile.read_points(os.fspath(points))
    if isinstance(points, Mapping):
        points = [points]
    if not isinstance(points, (list, tuple)) or not points:
        raise UsageError(f"enqueue needs a point or a list of points, such as '{{\"lr\": 0.01}}', but got {points!r}")
    return list(points), source


def add_points(opened: OpenSweep, points: Sequence[Any] | Mapping[str, Any], source: str = "points") -> ControlResult:
    """``enqueue`` on an opened sweep.

    Args:
        opened: the sweep.
        points: a point or a list of points, as given.
        source: how to name them in messages (a file's path).
    """
    from mlflow_sweep import lifecycle, policy
    from mlflow_sweep.errors import PointError
    from mlflow_sweep.ledger import Decision
    from mlflow_sweep.points import check_points

    points = [points] if isinstance(points, Mapping) else list(points)

    def decide(state: SweepState) -> Decision[Any]:
        checked, problems = check_points(opened.config_in(state), points)
        if problems:
            return Decision(problems)
        return Decision(len(state.controls.enqueued), {"event": "enqueue", "points": checked, "by": _who()})

    committed = opened.ledger.commit(decide)
    if committed.event is None:
        raise PointError(source, committed.value, f"points for sweep {opened.sweep.run_id}")
    first, state = committed.value, committed.state
    numbers = tuple(range(first, first + len(points)))
    shown = lifecycle.publish_state(opened)
    config = opened.config_in(state)
    waiting = len(policy.enqueued(config, state.trials, state.controls))
    message = (f"{len(points)} point{'s' * (len(points) != 1)} enqueued ({waiting} waiting in all); "
               "they run before any new point")
    return _result(opened, state, True, message + _enqueue_hint(opened, state, shown), shown=shown, points=numbers)


def _enqueue_hint(opened: OpenSweep, state: SweepState, shown: SweepPhase) -> str:
    """Why enqueued points will not run yet, and what lets them."""
    from mlflow_sweep import policy

    if shown in _RESUMABLE:
        return f"; the sweep is {shown}: 'mlflow sweep resume' lets agents run them"
    cap = policy.run_cap(opened.config_in(state), state.controls)
    if cap is not None and len(policy.counted(state.trials)) >= cap:
        return (f"; run_cap {cap} is reached, so they wait: 'mlflow sweep update --run-cap N' lets them run "
                "(enqueued trials count toward run_cap)")
    return ""


def set_run_cap(opened: OpenSweep, run_cap: int) -> ControlResult:
    """``update`` on an opened sweep.

    Args:
        opened: the sweep.
        run_cap: the new run_cap.
    """
    from mlflow_sweep import lifecycle, policy
    from mlflow_sweep.ledger import Decision

    check_count(run_cap, "run_cap")

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
    from mlflow_sweep import lifecycle

    return change(lifecycle.open_sweep(sweep_id), command)


def change(opened: OpenSweep, command: str) -> ControlResult:
    """Record the control state a command asks for, unless ``policy`` says it changes nothing.

    Args:
        opened: the sweep.
        command: ``stop``, ``pause``, ``resume`` or ``cancel``.
    """
    from mlflow_sweep import lifecycle, policy
    from mlflow_sweep.ledger import Decision

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
            shown: SweepPhase | None = None, points: tuple[int, ...] = (), version: int | None = None) -> ControlResult:
    from mlflow_sweep import lifecycle

    name = shown or lifecycle.state_of(opened, state)
    return ControlResult(opened.sweep.run_id, name, changed, f"sweep {opened.sweep.run_id}: {message}", trials,
                         points, version)


def _who() -> str:
    """Who gave the command, for the ledger's record: user@host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
