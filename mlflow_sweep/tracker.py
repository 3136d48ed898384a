"""What the sweep needs of a tracking store, as an interface: MLflow is the implementation users see.

The agent loop, the lifecycle commands, ``status`` and ``finalize`` reach the tracking store only
through a ``Tracker``, carried by the opened sweep (``lifecycle.OpenSweep``). ``tracking.MlflowTracker``
is the real one (and ``tracking`` stays the only module that imports mlflow);
``memory_tracker.MemoryTracker`` keeps runs in a dict, so every decision of an agent can be tested
in milliseconds and a crowd of light agents can exercise the ledger without a store.

This module also owns how a sweep looks in any store: the tags of its runs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ContextManager, Mapping, Protocol, Sequence

if TYPE_CHECKING:
    from mlflow_sweep.config import SweepConfig
    from mlflow_sweep.trials import SweepPhase, Trial, TrialState

SWEEP_TAG = "sweep"
PARAMS_TAG = "sweep.params"
COUNTED_PREFIX = "sweep."
"""The metric ``sweep.<metric name>`` on a child run is the value the sweep counted for it, so sorting
the child runs in the UI gives the sweep's own ranking."""
STATE_TAG = "sweep.state"
OUTPUT_ARTIFACT = "output.log"
STOPPED_EARLY_TAG = "sweep.stopped_early"
"""The hyperband iteration at which the trial was stopped."""
KILLED_BY_TAG = "sweep.killed_by"
"""SIGINT or SIGTERM (the agent was interrupted; the point runs again) or cancel (final)."""
STOP_ASKED_TAG = "sweep.stop_asked"
"""The agent asked the trial to stop (cancel, a hyperband cut, a signal), but it ended on its own: a
function trial that never calls ``should_stop()``, or a command that was already exiting."""
REAPED_TAG = "sweep.reaped"
"""Why the trial was marked dead: its agent went silent (killed, its machine lost)."""
RETRY_OF_TAG = "sweep.retry_of"
"""The index of the trial whose point this trial runs again."""
DEVICES_TAG = "sweep.devices"
"""The trial's GPUs under ``run --gpus`` (its agent's ``MLFLOW_SWEEP_DEVICES``)."""
CONFIG_VERSION_TAG = "sweep.config_version"
"""On the parent run: the version of the config in effect (1 until ``mlflow sweep update --config``)."""


def config_version_dir(version: int) -> str:
    """Where version ``version`` (2 and later) of a sweep's config is kept among the parent run's artifacts."""
    return f"config_versions/v{version}"
NOTE_TAG = "mlflow.note.content"
PARENT_TAG = "mlflow.parentRunId"


@dataclass(frozen=True)
class Sweep:
    """A sweep as the tracking store knows it: the parent run and where its ledger lives."""

    run_id: str
    experiment_id: str
    name: str
    tracking_uri: str
    ledger_dir: Path


@dataclass(frozen=True)
class RunRecord:
    """A run as a prior run of a new sweep is read: its status, params (MLflow's text), tags, metric history."""

    run_id: str
    status: str
    params: Mapping[str, str]
    tags: Mapping[str, str]
    histories: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    """The values logged under each metric asked for (the sweep's objectives), in logging order."""


@dataclass(frozen=True)
class Settled:
    """What ``settle_trial`` found and did: the params it filled in, the metrics the run holds."""

    filled: tuple[str, ...]
    metrics: tuple[str, ...]


def counted_metric(name: str) -> str:
    """The child-run metric holding the value the sweep counted for metric ``name``."""
    return f"{COUNTED_PREFIX}{name}"


def param_text(value: Any) -> str:
    """A value as a param: the text the command line got (``str()``, as W&B writes it)."""
    return str(value)


def trial_tags(sweep: Sweep, trial: Trial) -> dict[str, str]:
    """The tags a trial's child run is created with: its parent, sweep, index, agent and sampled values.

    The values go in the tag ``sweep.params`` and not in params, so the trial's own ``log_params``
    never meets a value the agent logged (argparse's ``1.0`` against the sweep's ``1``).
    """
    tags = {PARENT_TAG: sweep.run_id, "sweep.id": sweep.run_id, "sweep.trial": str(trial.index),
            "sweep.agent": trial.agent_id or "", PARAMS_TAG: json.dumps(dict(trial.params), default=str)}
    if trial.retry_of is not None:
        tags[RETRY_OF_TAG] = str(trial.retry_of)
    return tags


class Tracker(Protocol):
    """The tracking store as a sweep uses it: the parent run, trials' child runs, their metrics."""

    def find_sweep(self, sweep_id: str | None) -> Sweep:
        """The sweep with this parent run ID, or the most recently created one; TrackingError if none."""

    def create_sweep(self, config: SweepConfig, config_path: str) -> Sweep:
        """Create the parent run (its ledger not yet written), keeping the config file with it."""

    def start_trial(self, sweep: Sweep, trial: Trial) -> tuple[str, Path | None]:
        """Create the trial's child run (``trial_tags``); return its ID and local artifact directory, if any."""

    def settle_trial(self, run_id: str, params: Mapping[str, Any],
                     counted: tuple[str, float] | Mapping[str, float] | None = None, *, read: bool = True) -> Settled:
        """At a trial's end: log the params it did not log itself, and the counted value as ``sweep.<name>``
        (a sweep with several objectives: each objective's, given by name).

        With ``read=False`` the run's metrics need not be listed (``Settled.metrics`` may be empty).
        """

    def end_trial(self, run_id: str, state: TrialState, output: Path | None = None,
                  tags: Mapping[str, str] | None = None) -> None:
        """Keep the trial's captured ``output`` (when not already in its artifacts), set ``tags``, end the run."""

    def fail_trial(self, sweep: Sweep, trial: Trial, reason: str) -> str:
        """Create the child run of a trial whose agent died before making one, ended FAILED with ``reason``.

        The run carries the trial's params, the tag ``sweep.reaped`` and the reason as its note; returns its ID.
        """

    def metric_history(self, run_id: str, name: str) -> list[float]:
        """The values a run logged under ``name``, in the order they were logged."""

    def metric_names(self, run_id: str) -> tuple[str, ...]:
        """The metrics a run has, sorted, without the sweep's own ``sweep.<name>``."""

    def set_sweep_state(self, run_id: str, state: SweepPhase) -> None:
        """Show a sweep's state on its parent run: tag ``sweep.state`` and its status (``state.parent_status``)."""

    def record_outcome(self, sweep: Sweep, *, best: Trial | None, metric_name: str | None, table: str,
                       plot_dir: Path, ledger_path: Path, ledger_copy: Path | None = None,
                       tags: Mapping[str, str] | None = None) -> None:
        """Store finalize's table, plots, best trial and ``tags`` on the parent run (again: replaced, not duplicated)."""

    def trial_run_active(self, sweep: Sweep, run_id: str) -> ContextManager[None]:
        """While a function trial runs in this process, make the store's logging calls go to its child run."""

    def read_runs(self, run_ids: Sequence[str], metrics: Sequence[str]) -> list[RunRecord]:
        """The runs with these IDs, in order, each with its history of every metric named.

        A run ID the store does not know is a TrackingError naming it; nothing is written.
        """

    def search_runs(self, experiment_name: str, filter_string: str | None, metrics: Sequence[str]) -> list[RunRecord]:
        """Every active run of an experiment that matches MLflow's search filter, oldest first, with histories.

        An unknown experiment is a TrackingError; a filter MLflow cannot parse is a UsageError.
        """

    def log_config_version(self, sweep: Sweep, version: int, config_path: str) -> None:
        """Keep a new version of the sweep's config on its parent run (``config_version_dir``) and tag the version."""
