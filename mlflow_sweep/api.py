"""The Python API: sweeps and agents from a script or a notebook, the W&B way.

    import mlflow, mlflow_sweep

    sweep_id = mlflow_sweep.sweep(config)              # a dict, or a YAML/JSON file
    def train(params):                                 # or train(), reading mlflow_sweep.params()
        mlflow.log_metric("loss", fit(params))         # logs into the trial's child run
    mlflow_sweep.agent(sweep_id, function=train, count=5)
    report = mlflow_sweep.finalize(sweep_id)           # .best_run_id, .best_params, .best_value, ...
    state = mlflow_sweep.status(sweep_id)              # .state, .finished, .failed, .killed, .running

The CLI (``mlflow sweep init|run|finalize|status``) calls these same functions and only prints.
Everything heavy is imported inside the functions, so ``import mlflow_sweep`` stays cheap.
"""
from __future__ import annotations

import copy
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from mlflow_sweep.errors import SweepError, UsageError
from mlflow_sweep.settings import MAX_FAILURES
from mlflow_sweep.trials import check_count

if TYPE_CHECKING:
    from mlflow_sweep.agent_loop import AgentResult
    from mlflow_sweep.config import SweepConfig
    from mlflow_sweep.device_agents import DevicesResult
    from mlflow_sweep.progress import SweepStatus
    from mlflow_sweep.results import SweepReport
    from mlflow_sweep.tracker import Tracker
    from mlflow_sweep.warmstart import PriorChoice

DICT_SOURCE = "sweep config"
"""How a config given as a dict is named in messages (a file is named by its path)."""
CONFIG_ARTIFACT = "sweep_config.json"
"""The artifact a config given as a dict is logged as on the parent run."""


@dataclass(frozen=True)
class Created:
    """A new sweep: its ID, the checked config (with the run name MLflow gave it), the config's warnings,
    and the prior runs it starts from (None when none were asked for)."""

    sweep_id: str
    config: SweepConfig
    warnings: tuple[str, ...]
    priors: PriorChoice | None = None


def sweep(config: Mapping[str, Any] | str | os.PathLike[str] | None = None, experiment_name: str | None = None, *,
          project: str | None = None, entity: str | None = None,
          sweep: Mapping[str, Any] | str | os.PathLike[str] | None = None,
          prior_runs: Sequence[str] | None = None, prior_experiment: str | None = None,
          prior_filter: str | None = None) -> str:
    """Create a sweep (a parent MLflow run and its ledger) and return its ID, as ``mlflow sweep init``.

    ``wandb.sweep(sweep=config, project=..., entity=..., prior_runs=[...])`` works as it is:
    ``sweep`` and ``project`` are W&B's names for ``config`` and ``experiment_name``.

    Args:
        config: the sweep configuration in W&B sweep syntax: a dict, or the path of a YAML or JSON file.
        experiment_name: the MLflow experiment; default: the config's ``experiment_name`` (or ``project``),
            else ``Default``.
        project: W&B's name for ``experiment_name``.
        entity: W&B's team or user; MLflow has none, so it is ignored with a warning.
        sweep: W&B's name for ``config``.
        prior_runs: IDs of MLflow runs to start from (W&B's ``prior_runs``): history for the search,
            never run again, never changed, not counted toward run_cap.
        prior_experiment: start from the runs of this experiment too (those ``prior_filter`` matches).
        prior_filter: MLflow's search syntax, e.g. ``"metrics.val_loss < 1 and params.opt = 'adam'"``.

    Raises:
        ConfigError: the config is invalid; the message lists every problem with its path, and
            nothing was created in MLflow.
        TrackingError: a prior run or experiment does not exist; nothing was created.

    The config's warnings (an ignored ``entity``, ...) are issued as Python warnings; a config
    without ``program`` or ``command`` is the function agent's usual case here, so it gets none.
    When prior runs were left out, what ``init`` prints about them (how many, and why) is a warning too.
    """
    from mlflow_sweep.config import NO_COMMAND

    config = _either(config, sweep, "config", "sweep")
    if config is None:
        raise UsageError("sweep() needs a config: a dict, or the path of a YAML or JSON file")
    created = create_sweep(config, _either(experiment_name, project, "experiment_name", "project"),
                           prior_runs=prior_runs, prior_experiment=prior_experiment, prior_filter=prior_filter)
    if entity is not None:
        warnings.warn("entity is ignored (W&B only)", UserWarning, stacklevel=2)
    for message in created.warnings:
        if message != NO_COMMAND:
            warnings.warn(message, UserWarning, stacklevel=2)
    if created.priors is not None and created.priors.left_out:
        warnings.warn(created.priors.summary(), UserWarning, stacklevel=2)
    return created.sweep_id


def create_sweep(config: Mapping[str, Any] | str | os.PathLike[str], experiment_name: str | None = None, *,
                 prior_runs: Sequence[str] | None = None, prior_experiment: str | None = None,
                 prior_filter: str | None = None) -> Created:
    """``sweep`` with what ``mlflow sweep init`` prints: the normalized config, its warnings, the prior runs.

    Args:
        config: a dict, or the path of a YAML or JSON file.
        experiment_name: overrides the config's experiment.
        prior_runs: as ``sweep``.
        prior_experiment: as ``sweep``.
        prior_filter: as ``sweep``.
    """
    from mlflow_sweep import lifecycle

    checked = checked_config(config, experiment_name)  # every check before MLflow is touched: a bad config creates nothing
    priors = choose_priors(checked, prior_runs, prior_experiment, prior_filter)  # reads only; creates nothing
    used = () if priors is None else priors.used
    if isinstance(config, Mapping):
        with tempfile.TemporaryDirectory(prefix="mlflow-sweep-") as tmp:
            path = Path(tmp) / CONFIG_ARTIFACT
            path.write_text(as_json(config))
            created = lifecycle.init_sweep(checked, str(path), priors=used)
    else:
        created = lifecycle.init_sweep(checked, os.fspath(config), priors=used)
    named = checked if checked.sweep_name else replace(checked, sweep_name=created.name)
    return Created(created.run_id, named, tuple(checked.warnings), priors)


def choose_priors(config: SweepConfig, run_ids: Sequence[str] | None, experiment: str | None,
                  filter_string: str | None, *, tracker: Tracker | None = None) -> PriorChoice | None:
    """The prior runs a new sweep starts from (``warmstart.choose``); None when none were asked for.

    Args:
        config: the checked config of the new sweep.
        run_ids: runs named one by one.
        experiment: an experiment whose runs (those ``filter_string`` matches) are candidates too.
        filter_string: MLflow's search syntax; only with ``experiment``.
        tracker: the tracking store; default: MLflow.
    """
    from mlflow_sweep import warmstart

    if isinstance(run_ids, str):
        run_ids = [run_ids]
    if filter_string and not experiment:
        raise UsageError("--prior-filter needs --prior-experiment NAME: the experiment whose runs it filters")
    if not run_ids and not experiment:
        return None
    if tracker is None:
        from mlflow_sweep.tracking import MLFLOW

        tracker = MLFLOW
    metrics = [m.name for m in config.objectives]
    records = tracker.read_runs([str(r) for r in run_ids or ()], metrics)
    if experiment:
        records += tracker.search_runs(experiment, filter_string, metrics)
    return warmstart.choose(config, records)


def checked_config(config: Mapping[str, Any] | str | os.PathLike[str], experiment_name: str | None = None) -> SweepConfig:
    """A config given as a dict or a file's path, checked as ``init`` checks it (ConfigError with every problem).

    Args:
        config: a dict, or the path of a YAML or JSON file.
        experiment_name: overrides the config's experiment.
    """
    from mlflow_sweep.config import config_from_dict, load_config

    if isinstance(config, Mapping):
        checked = config_from_dict(copy.deepcopy(dict(config)), DICT_SOURCE)
    elif isinstance(config, (str, os.PathLike)):
        checked = load_config(config)
    else:
        raise UsageError(f"config must be a dict or the path of a YAML or JSON file, but got {type(config).__name__}")
    if experiment_name is None:
        return checked
    if not isinstance(experiment_name, str) or not experiment_name.strip():
        raise UsageError(f"experiment_name must be a non-empty string, but got {experiment_name!r}")
    return replace(checked, experiment_name=experiment_name, raw={**checked.raw, "experiment_name": experiment_name})


def _either(ours: Any, wandbs: Any, name: str, wandb_name: str) -> Any:
    """One argument given under our name or W&B's; both with different values is a mistake."""
    if ours is not None and wandbs is not None and ours != wandbs:
        raise UsageError(f"give {name} or {wandb_name} (W&B's name for it), not both")
    return ours if ours is not None else wandbs


def as_json(config: Mapping[str, Any]) -> str:
    """A config given as a dict, as the JSON text kept on the parent run."""
    import json

    return json.dumps(config, indent=2, default=str) + "\n"


def agent(sweep_id: str | None = None, function: Callable[..., Any] | None = None, count: int | None = None,
          max_failures: int = MAX_FAILURES, *, gpus: str | int | Sequence[int | str] | None = None,
          gpus_per_trial: int = 1, project: str | None = None,
          entity: str | None = None) -> AgentResult | DevicesResult:
    """Run trials of a sweep until it is done, ``count`` trials ran, or too many failed in a row.

    Any number of agents may run one sweep at once, from Python or ``mlflow sweep run``: together
    they run exactly ``run_cap`` trials (or the whole grid, each point once).

    Args:
        sweep_id: the sweep's ID; default: the most recently created sweep in the tracking store.
        function: the trial, called in this process with no argument or with the trial's params
            (a dict; nested blocks as dicts). While it runs, the trial's child run is where
            ``mlflow.log_*`` and ``with mlflow.start_run():`` log. Without a function, each trial
            runs the sweep's command, as ``mlflow sweep run`` does.
        count: stop after this many trials (with ``gpus``: each agent).
        max_failures: stop after this many trials in a row failed (with ``gpus``: each agent).
        gpus: run one agent per device (or group of ``gpus_per_trial``), as ``mlflow sweep run --gpus``:
            ``"all"``, or devices such as ``"0,1,2,3"`` or ``[0, 1, 2, 3]``. Each agent is a process of its
            own running the sweep's command, whose trials see only its devices through
            ``CUDA_VISIBLE_DEVICES``. Not with ``function``: a function trial runs in this process.
        gpus_per_trial: devices per trial (per agent) with ``gpus``.
        project: accepted as in ``wandb.agent`` and not needed: the sweep ID alone names the sweep.
        entity: likewise.

    Returns:
        What the agent did: ``ran``, ``failed``, ``reason``. Ctrl-C (KeyboardInterrupt, a notebook's
        stop button) ends the running trial KILLED and returns here too. With ``gpus``, a
        ``DevicesResult``: each agent's ``devices``, ``exit_code`` and ``last_line``, and ``signum``
        when a signal (Ctrl-C) stopped them.

    Raises:
        TooManyFailures: ``max_failures`` trials in a row failed (each one's output is on its run).
        AgentsFailed: with ``gpus``, some agent exited non-zero; the message names each one and why.
        SweepError: no such sweep, or the tracking store or ledger cannot be used.

    A function's exception ends its trial FAILED, with the traceback shown and kept in the
    run's ``output.log``; the agent goes on. Progress lines go to stderr.
    """
    from mlflow_sweep.agent_loop import AgentStopped

    if gpus is not None or gpus_per_trial != 1:
        return _agents_on_devices(sweep_id, function, count, max_failures, gpus, gpus_per_trial)
    try:
        return run_trials(sweep_id, function=function, count=count, max_failures=max_failures)
    except AgentStopped as stopped:
        _say(str(stopped))
        assert stopped.result is not None
        return stopped.result


def run_trials(sweep_id: str | None = None, *, function: Callable[..., Any] | None = None,
               count: int | None = None, max_failures: int = MAX_FAILURES, stream: Any = None) -> AgentResult:
    """``agent``, except that an interrupt raises AgentStopped (the CLI's ``run`` exits 128 + signal).

    Args:
        sweep_id: as ``agent``.
        function: as ``agent``.
        count: as ``agent``.
        max_failures: as ``agent``.
        stream: where a command's output is copied (bytes); default: ``sys.stdout`` as text.
    """
    from mlflow_sweep import agent_loop
    from mlflow_sweep.runners import CommandRunner, FunctionRunner, takes_params

    if function is not None:
        takes_params(function)  # a function of the wrong shape fails before any trial is claimed
    count = None if count is None else check_count(count, "count")
    max_failures = check_count(max_failures, "max_failures")
    if function is None:
        sink = stream if stream is not None else _TextSink()
        make = lambda o: CommandRunner(o.sweep, o.config, sink, versions=o.config_at)  # noqa: E731
    else:
        make = lambda o: FunctionRunner(o.sweep, o.config, function, o.tracker, versions=o.config_at)  # noqa: E731
    return agent_loop.run_agent(None if sweep_id is None else str(sweep_id), count=count,
                                max_failures=max_failures, say=_say, runner=make)


def _agents_on_devices(sweep_id: str | None, function: Callable[..., Any] | None, count: int | None,
                       max_failures: int, gpus: Any, gpus_per_trial: int) -> DevicesResult:
    """``agent(..., gpus=...)``: command agents on device groups; an interrupt returns, a failed agent raises."""
    from mlflow_sweep.device_agents import AgentsFailed

    if function is not None:
        raise UsageError(
            "gpus= starts agents that run the sweep's command; a function trial runs in this process instead. "
            "Pin this process's device before anything uses the GPU: os.environ['CUDA_VISIBLE_DEVICES'] = '1' "
            "at the top of the notebook (before importing torch), or choose it in the function "
            "(torch.device('cuda:1'))")
    result = run_on_devices(sweep_id, gpus, gpus_per_trial=gpus_per_trial, count=count, max_failures=max_failures)
    if result.signum is None and result.exit_code != 0:
        raise AgentsFailed(result)
    return result


def run_on_devices(sweep_id: str | None, gpus: Any, *, gpus_per_trial: int = 1, count: int | None = None,
                   max_failures: int = MAX_FAILURES, out: Any = None, err: Any = None) -> DevicesResult:
    """One command agent per device group (``mlflow sweep run --gpus``); return how each ended.

    Everything is checked before an agent starts: the counts, the devices (``all`` is looked up
    now), and that they split into groups of ``gpus_per_trial``.

    Args:
        sweep_id: as ``agent``.
        gpus: ``all``, or the devices (``0,1,2,3``, a sequence of ints).
        gpus_per_trial: devices per agent.
        count: trials per agent.
        max_failures: failed trials in a row after which an agent stops.
        out: where the agents' stdout lines go (bytes); default: ``sys.stdout`` as text.
        err: where their stderr lines go; default: ``sys.stderr`` as text.
    """
    from mlflow_sweep import device_agents, devices

    if gpus is None:
        raise UsageError("--gpus-per-trial needs --gpus (e.g. --gpus all --gpus-per-trial 2)")
    count = None if count is None else check_count(count, "count")
    max_failures = check_count(max_failures, "max_failures")
    plan = devices.plan(gpus, gpus_per_trial)
    argv = device_agents.agent_argv(None if sweep_id is None else str(sweep_id), count, max_failures)
    return device_agents.run_agents(plan.groups, argv, out=out if out is not None else _TextSink(),
                                    err=err if err is not None else _TextSink("stderr"), say=_say,
                                    source=plan.source)


def params() -> dict[str, Any]:
    """The running trial's parameters: nested ``parameters:`` blocks as dicts, values as sampled.

    Works in a function trial (any thread of it) and in a command trial started by an agent
    (from ``MLFLOW_SWEEP_PARAMS_FILE``).

    Raises:
        SweepError: called outside a trial.
    """
    from mlflow_sweep.runners import current_trial

    trial = current_trial()
    if trial is not None:
        return copy.deepcopy(dict(trial.params))
    path = os.environ.get("MLFLOW_SWEEP_PARAMS_FILE")
    if path:
        import json

        try:
            return json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise SweepError(f"mlflow_sweep.params(): cannot read the trial's params from {path}: {exc}") from None
    raise SweepError("mlflow_sweep.params() is only available inside a trial: call it from the function "
                     "that mlflow_sweep.agent(sweep_id, function=...) runs")


def should_stop() -> bool:
    """True once the running trial should end early: hyperband judged it, or the sweep was cancelled.

    A long function trial checks it between steps and returns; the trial then ends KILLED (with
    the tag ``sweep.stopped_early`` when hyperband decided). A function that never asks runs to its
    end and is recorded as it ended (the tag ``sweep.stop_asked`` says a stop was asked). False
    outside a function trial.
    """
    from mlflow_sweep.runners import current_trial

    trial = current_trial()
    if trial is None or not trial.stop.is_set():
        return False
    trial.stop.obey()  # the function sees the request and, as asked, ends
    return True


def finalize(sweep_id: str | None = None) -> SweepReport:
    """Analyse a sweep and record the results on its parent run, as ``mlflow sweep finalize``; print nothing.

    The importance table, PNG plots and the best trial are logged on the parent run. The report
    has ``best_run_id``, ``best_params`` (shaped as ``params()``), ``best_value``, ``importance``
    (one row per parameter, most important first), ``counts``, ``plots``; ``print(report)``
    prints what the CLI prints.

    Args:
        sweep_id: the sweep's ID; default: the most recently created sweep.
    """
    from mlflow_sweep import results

    return results.finalize_sweep(None if sweep_id is None else str(sweep_id))


def status(sweep_id: str | None = None) -> SweepStatus:
    """A sweep's state and its trials by state, as ``mlflow sweep status`` shows them; print nothing.

    The result has ``state`` (``running``, ``done``, ...), ``finished``, ``failed``, ``killed``,
    ``running``, ``trials``, ``run_cap``, ``best_run_id``, ``best_value``, ``live_agents``;
    ``print(result)`` prints what the CLI prints.

    Args:
        sweep_id: the sweep's ID; default: the most recently created sweep.
    """
    from mlflow_sweep import progress

    return progress.sweep_status(None if sweep_id is None else str(sweep_id))


def _say(message: str) -> None:
    """Agent progress, on stderr as the CLI's (read at each call: a notebook may swap the stream)."""
    stream = sys.stderr
    if stream is not None:
        print(f"[mlflow-sweep] {message}", file=stream, flush=True)


class _TextSink:
    """A command's output bytes, decoded and written to ``sys.stdout`` (or ``sys.stderr``) as it is at each write.

    A notebook's ``sys.stdout`` is a text stream without ``.buffer``, so the CLI's byte stream will not do.
    """

    def __init__(self, name: str = "stdout") -> None:
        import codecs

        self._name = name
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def write(self, data: bytes) -> int:
        text = self._decoder.decode(data)
        stream = getattr(sys, self._name)
        if text and stream is not None:
            stream.write(text)
        return len(data)

    def flush(self) -> None:
        stream = getattr(sys, self._name)
        if stream is not None:
            stream.flush()

