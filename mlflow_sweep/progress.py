"""``mlflow sweep status``: a plain summary from the ledger alone (cheap: no run is read).

``render_status`` is pure (the clock and the process check are passed in); ``sweep_status`` does the I/O
and returns a ``SweepStatus`` (what ``mlflow_sweep.status`` gives a script, and the text the CLI prints).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Collection, Mapping, Sequence

from mlflow_sweep.analysis import best_trial, count_states, pareto_front
from mlflow_sweep.policy import counted, queue, target_reached, target_text
from mlflow_sweep.report import format_value, render_counts
from mlflow_sweep.trials import SweepPhase, Trial, TrialState, trial_label

if TYPE_CHECKING:
    from mlflow_sweep.config import SweepConfig
    from mlflow_sweep.ledger import Conflict
    from mlflow_sweep.replay import ConfigVersion
    from mlflow_sweep.tracker import Tracker

MAX_AGENTS_SHOWN = 50


@dataclass(frozen=True)
class SweepStatus:
    """A sweep's state and trials by state, as ``mlflow_sweep.status`` returns it; ``str()`` is the CLI's text."""

    sweep_id: str
    state: SweepPhase
    """From ``policy.sweep_state``: ``running``, ``paused``, ``stopped``, ``cancelled`` or ``done``."""
    finished: int
    failed: int
    killed: int
    running: int
    run_cap: int | None
    best_run_id: str | None
    best_value: float | None
    live_agents: int
    text: str
    pareto_front: int | None = None
    """A sweep with several objectives: how many trials are on the Pareto front so far (else None)."""
    prior_runs: int = 0
    """Prior runs the sweep started from (history only; the best may be one of them)."""
    enqueued: int = 0
    """Enqueued points waiting to run."""
    config_version: int = 1
    """The config version in effect (``mlflow sweep update --config`` adds one)."""

    @property
    def trials(self) -> int:
        """Every trial claimed so far, in any state."""
        return self.finished + self.failed + self.killed + self.running

    def __str__(self) -> str:
        return self.text

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython shows the status text, as the CLI prints it."""
        printer.text(self.text)


def sweep_status(sweep_id: str | None, *, tracker: Tracker | None = None) -> SweepStatus:
    """A sweep's state, trials by state, best so far and live agents, with the text to print.

    Args:
        sweep_id: the sweep's parent run ID; None means the most recently initialized sweep.
        tracker: the tracking store; default: MLflow.
    """
    from mlflow_sweep import lifecycle, policy, settings

    opened = lifecycle.open_sweep(sweep_id, tracker=tracker)
    sweep, ledger = opened.sweep, opened.ledger
    lifecycle.reap_dead(opened)  # status reaps dead trials too, so it never shows a dead agent's trial running
    agents, state = ledger.agents(), ledger.state()
    trials, config, controls = state.trials, opened.config_in(state), state.controls
    now, timeout, exited = opened.clock.time(), settings.heartbeat_timeout(), _exited_here(agents)
    run_cap, sweep_state = policy.run_cap(config, controls), lifecycle.state_of(opened, state)
    waiting = len(policy.enqueued(config, trials, controls))
    text = render_status(f"{sweep.name} ({sweep.run_id})", config, trials, agents, now=now, timeout=timeout,
                         exited=exited, conflicts=state.conflicts, state=sweep_state, run_cap=run_cap,
                         priors=controls.priors, enqueued=waiting, version=state.configs[-1])
    counts = count_states(trials)
    best = best_trial([*controls.priors, *trials], config.metric.goal) if config.metric else None
    return SweepStatus(
        sweep_id=sweep.run_id, state=sweep_state,
        finished=counts["finished"], failed=counts["failed"], killed=counts["killed"], running=counts["running"],
        run_cap=run_cap, best_run_id=best.run_id if best else None,
        best_value=float(best.metric) if best and best.metric is not None else None,
        live_agents=sum(1 for a in agents if _live(a, now, timeout, exited)), text=text,
        pareto_front=len(pareto_front([*controls.priors, *trials], config.metrics)) if config.metrics else None,
        prior_runs=len(controls.priors), enqueued=waiting, config_version=controls.version)


def _live(record: Mapping[str, Any], now: float, timeout: float, exited: Collection[str]) -> bool:
    """An agent that beat within ``timeout`` and has not stopped (its last beat says so) or exited."""
    return _kind(record, now, timeout, exited) == "live"


def _kind(record: Mapping[str, Any], now: float, timeout: float, exited: Collection[str]) -> str:
    """``live``; ``exited`` when its last heartbeat says it stopped; else ``died`` (gone or silent)."""
    if record.get("stopped"):
        return "exited"
    beat = record.get("beat")
    recent = isinstance(beat, (int, float)) and now - beat <= timeout
    return "live" if recent and str(record.get("agent")) not in exited else "died"


def sweep_list() -> str:
    """Every sweep in the tracking store, newest first, one row each (``mlflow sweep list``).

    The state comes from ``policy.sweep_state`` (the one place a sweep's state is decided), the
    trials and best value from each sweep's ledger; a ledger that cannot be read shows why.
    """
    from mlflow_sweep import tracking

    uri = tracking.tracking_uri()
    missing = tracking.missing_store(uri)
    if missing is not None:
        return f"No sweeps: there is no tracking store at {missing} (tracking URI {uri})."
    sweeps = tracking.list_sweeps()
    if not sweeps:
        return f"No sweeps in the tracking store ({uri}); 'mlflow sweep init CONFIG' creates one."
    header = ("ID", "NAME", "EXPERIMENT", "METHOD", "STATE", "TRIALS", "BEST")
    rows = [header, *(_list_row(sweep, run) for sweep, run in sweeps)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join([*lines, f"{len(sweeps)} sweep{'s' * (len(sweeps) != 1)} in {uri}"])


def _list_row(sweep: Any, run: Any) -> tuple[str, ...]:
    """ID, name, experiment, method, state, trials done/cap, best so far of one sweep."""
    from mlflow_sweep import policy
    from mlflow_sweep.config import stored_config
    from mlflow_sweep.errors import SweepError
    from mlflow_sweep.ledger import Ledger

    head = (sweep.run_id, sweep.name, run.experiment_name)
    try:
        state = Ledger(sweep.ledger_dir).state()
        config = stored_config(state.config, f"sweep {sweep.run_id}")
        seed = int(state.header["seed"])
    except (SweepError, OSError, KeyError, TypeError, ValueError) as exc:
        return (*head, run.tags.get("sweep.method", "?"), "?", "?", f"ledger unreadable: {exc}")
    trials = state.trials
    done = sum(1 for t in counted(trials) if t.state is not TrialState.RUNNING)  # requeued ones do not count
    cap = policy.run_cap(config, state.controls)
    cap = cap if cap is not None else config.grid_size()
    return (*head, config.method, policy.sweep_state(config, trials, seed, state.controls),
            f"{done}/{cap if cap is not None else '-'}", _best_cell(config, [*state.controls.priors, *trials]))


def _best_cell(config: SweepConfig, trials: Sequence[Trial]) -> str:
    if config.metrics:
        return f"front of {len(pareto_front(trials, config.metrics))}"
    metric = config.metric
    best = best_trial(trials, metric.goal) if metric else None
    if metric is None or best is None:
        return "-"
    return f"{metric.name}={format_value(best.metric)} ({'prior run' if best.prior else f'#{best.index}'})"


def _exited_here(agents: Sequence[Mapping[str, Any]]) -> set[str]:
    """Agents on this host whose process is gone (their last beat may still look recent)."""
    import os
    import socket

    host, gone = socket.gethostname(), set()
    for record in agents:
        pid = record.get("pid")
        if record.get("host") == host and isinstance(pid, int) and pid > 0:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                gone.add(str(record.get("agent")))
            except PermissionError:
                pass  # alive, owned by another user
    return gone


_STATE_HINTS = {
    SweepPhase.PAUSED: "running trials finish, agents wait; 'mlflow sweep resume' goes on",
    SweepPhase.STOPPED: "no new trials; 'mlflow sweep resume' starts it again",
    SweepPhase.CANCELLED: "'mlflow sweep resume' starts it again",
    SweepPhase.DONE: "'mlflow sweep update --run-cap N', 'update --config FILE', 'enqueue' or 'retry' runs more",
}


def render_status(title: str, config: SweepConfig, trials: Sequence[Trial], agents: Sequence[Mapping[str, Any]],
                  *, now: float, timeout: float, exited: Collection[str] = (),
                  conflicts: Sequence[Conflict] = (), state: SweepPhase = SweepPhase.RUNNING,
                  run_cap: int | None = None, priors: Sequence[Trial] = (), enqueued: int = 0,
                  version: ConfigVersion | None = None) -> str:
    """Format the status (pure).

    Args:
        title: how to name the sweep, e.g. "name (run id)".
        config: the sweep's configuration (method, metric, run_cap, parameters).
        trials: every trial in the ledger.
        agents: heartbeat records ({"agent", "host", "pid", "beat", "trial", ...}; "stopped" once
            the agent has exited cleanly).
        now: the current time (Unix seconds).
        timeout: seconds of silence after which an agent counts as gone.
        exited: ids of agents whose process is known to be gone although their last beat is recent.
        conflicts: claims the ledger dropped because an earlier claim had their trial number.
        state: the sweep's phase (``policy.sweep_state``).
        run_cap: the run_cap in effect (after ``update --run-cap``); None: the config's.
        priors: the prior runs the sweep started from (``Controls.priors``).
        enqueued: how many enqueued points wait to run.
        version: the config version in effect; shown when it is not the first.
    """
    metric = config.metric
    head = f"Sweep {title}: method {config.method}, " + (
        f"metric {metric.name} ({metric.goal})" if metric else
        "metrics " + ", ".join(f"{m.name} ({m.goal})" for m in config.metrics) if config.metrics else "no metric")
    hint = _STATE_HINTS.get(state)
    lines = [head, f"State: {state}" + (f" ({hint})" if hint else "")]
    if version is not None and version.number > 1:
        lines.append(f"Config: version {version.number}, set {_ago(now - (version.time or now))}"
                     + (f" by {version.by}" if version.by else "") + " (mlflow sweep update --config)")
    lines += [f"Progress: {_progress(config, trials, run_cap, priors)}", f"Trials: {_by_state(trials)}"]
    if priors:
        lines.append(f"Prior runs: {len(priors)} (history for the search: never run here, not counted toward run_cap)")
    if enqueued:
        lines.append(f"Enqueued: {enqueued} point{'s' * (enqueued != 1)} wait{'s' * (enqueued == 1)} to run "
                     "before any new point")
    lines += _conflicts(conflicts)
    lines += _best(config, [*priors, *trials])
    running = {t.agent_id: t.index for t in trials if t.state is TrialState.RUNNING}
    lines += _agents(agents, now, timeout, set(exited), running)
    return "\n".join(lines)


def _progress(config: SweepConfig, trials: Sequence[Trial], run_cap: int | None, priors: Sequence[Trial] = ()) -> str:
    """Claimed trials against run_cap or the grid; requeued trials do not count (their points run again)."""
    claimed, cap = len(counted(trials)), run_cap if run_cap is not None else config.run_cap
    size = config.grid_size()
    if cap is not None:
        text = f"{claimed} of run_cap {cap} trials claimed ({100 * min(claimed, cap) // cap}%)"
    elif size:
        covered = _covered(config, priors)
        text = (f"{claimed} trials claimed for a grid of {size} points"
                + (f", {covered} covered by prior runs" if covered else "") + " (dead trials' points are run again)")
    else:
        text = f"{claimed} trials claimed (no run_cap)"
    requeued, waiting = len(trials) - claimed, len(queue(trials))
    if requeued:
        text += f", not counting {requeued} interrupted or retried"
    if waiting:
        text += f"; {waiting} of their points wait{'s' * (waiting == 1)} to run again"
    return text


def _covered(config: SweepConfig, priors: Sequence[Trial]) -> int:
    """How many grid points the prior runs cover in the config in effect."""
    if not priors or config.method != "grid":
        return 0
    from mlflow_sweep.points import fit
    from mlflow_sweep.samplers.grid import point_of

    placed = (fit(config, t.params).params for t in priors)
    return len({point_of(config, params) for params in placed if params is not None} - {None})


def _by_state(trials: Sequence[Trial]) -> str:
    text = render_counts(count_states(trials)).split(": ", 1)[1]
    dead = sum(1 for t in trials if t.dead)
    return text + (f" ({dead} failed because their agent went silent)" if dead else "")


def _conflicts(conflicts: Sequence[Conflict]) -> list[str]:
    """One line when two claims of one trial number reached the ledger (old v1 ledgers written without a
    common lock): it says the replay resolved them."""
    if not conflicts:
        return []
    numbers = ", ".join(f"#{c.trial}" for c in conflicts[:10]) + (", …" if len(conflicts) > 10 else "")
    many = len(conflicts) != 1
    return [f"Conflicts: {len(conflicts)} claim{'s' * many} of a trial number already taken ({numbers}) "
            f"{'were' if many else 'was'} dropped; the first claim in the ledger keeps each trial, "
            f"and nothing needs repair"]


def _best(config: SweepConfig, trials: Sequence[Trial]) -> list[str]:
    if config.metrics:
        return _front(config, trials)
    metric = config.metric
    if metric is None:
        return ["Best so far: n/a (no metric configured)"]
    best = best_trial(trials, metric.goal)
    if best is None:
        return [f"Best so far: none yet (no finished trial with a value for {metric.name!r})"]
    params = ", ".join(f"{k}={format_value(v)}" for k, v in best.params.items())
    which = (f"{trial_label(best)} (not run by this sweep)" if best.prior
             else f"#{best.index} (run {best.run_id or 'unknown'})")
    lines = [f"Best so far: {which} {metric.name} = {format_value(best.metric)}", f"  {params}" if params else ""]
    if metric.reached(float(best.metric)):
        lines.append(f"Target {metric.name} {'>=' if metric.goal == 'maximize' else '<='} "
                     f"{format_value(metric.target)} reached: no new trials will start")
    return [line for line in lines if line]


def _front(config: SweepConfig, trials: Sequence[Trial]) -> list[str]:
    """The Pareto front's size so far and its trials (several objectives have no single best)."""
    front = pareto_front(trials, config.metrics)
    if not front:
        return ["Pareto front so far: none yet (no finished trial with a value for every objective)"]
    shown = ", ".join(trial_label(t) for t in front[:20]) + (", …" if len(front) > 20 else "")
    lines = [f"Pareto front so far: {len(front)} trial{'s' * (len(front) != 1)} ({shown})"]
    if target_reached(config, trials):
        lines.append(f"{target_text(config)[0].upper()}{target_text(config)[1:]} reached by one trial: "
                     "no new trials will start")
    return lines


def _agents(agents: Sequence[Mapping[str, Any]], now: float, timeout: float, exited: set[str],
            running: Mapping[str | None, int]) -> list[str]:
    """A table of live agents, newest beat first, then how many exited cleanly and how many died.

    An agent that exits writes a last heartbeat saying so (``stopped``); one whose process is gone
    without it, or that has been silent for ``timeout`` seconds, died. An agent's trial
    comes from the ledger (current) before its heartbeat (up to a beat old).
    """
    kinds = [_kind(a, now, timeout, exited) for a in agents]
    alive = sorted((a for a, k in zip(agents, kinds) if k == "live"), key=lambda a: -float(a["beat"]))
    counts = [f"{kinds.count('exited')} exited", f"{kinds.count('died')} died (gone without exiting cleanly)"]
    lines = ["Agents: " + ", ".join([f"{len(alive)} live", *(c for c in counts if not c.startswith("0 "))])]
    if not alive:
        return lines
    rows = [(str(a.get("agent", "?")), str(a.get("host", "?")), str(a.get("pid", "?")),
             _ago(now - float(a["beat"])), _trial_of(a, running)) for a in alive[:MAX_AGENTS_SHOWN]]
    header = ("agent", "host", "pid", "last heartbeat", "trial")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    if len(alive) > MAX_AGENTS_SHOWN:
        lines.append(f"  … and {len(alive) - MAX_AGENTS_SHOWN} more")
    return lines


def _trial_of(record: Mapping[str, Any], running: Mapping[str | None, int]) -> str:
    trial = running.get(record.get("agent"), record.get("trial"))
    return "-" if trial is None else f"#{trial}"


def _ago(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"
