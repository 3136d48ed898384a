"""A tracking store in this process's memory: runs are dicts, nothing is written but the ledger.

``MemoryTracker`` implements ``tracker.Tracker`` the way MLflow behaves for a sweep (child runs
with the same tags, params filled in at the end, the counted metric ``sweep.<name>``, the parent's
state), so an agent runs on it unchanged. Two uses:

- tests of the agent's decisions, in milliseconds, without MLflow or subprocesses;
- a crowd of light agents in separate processes exercising the ledger: each process has its own
  tracker, and a sweep made elsewhere is found by its ledger directory under ``root``.

Every method is safe to call from several threads (an agent's watch thread reads metric histories
while its trial logs them).
"""
from __future__ import annotations

import contextlib
import json
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from mlflow_sweep.errors import TrackingError, UsageError
from mlflow_sweep.journal import LEDGER_NAME
from mlflow_sweep.tracker import (CONFIG_VERSION_TAG, COUNTED_PREFIX, NOTE_TAG, OUTPUT_ARTIFACT, PARENT_TAG, REAPED_TAG,
                                  STATE_TAG, SWEEP_TAG, RunRecord, Settled, Sweep, config_version_dir, counted_metric,
                                  param_text, trial_tags)
from mlflow_sweep.trials import SweepPhase

if TYPE_CHECKING:
    import os

    from mlflow_sweep.config import SweepConfig
    from mlflow_sweep.trials import Trial, TrialState


@dataclass
class MemoryRun:
    """One run: what MLflow would hold for it."""

    run_id: str
    name: str
    experiment_id: str = "0"
    status: str = "RUNNING"
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    """Artifact name -> its text (the trial's ``output.log``, finalize's table)."""


class MemoryTracker:
    """Runs in a dict; sweeps' ledgers in directories under ``root``."""

    def __init__(self, root: str | os.PathLike[str] | None = None, uri: str = "memory:") -> None:
        """Start with no run.

        Args:
            root: where ``create_sweep`` puts a new sweep's ledger (``root/<sweep id>``), and where
                ``find_sweep`` looks for a sweep this tracker did not create (another process's).
            uri: the tracking URI a command trial is given.
        """
        self.root = None if root is None else Path(root)
        self.uri = uri
        self.runs: dict[str, MemoryRun] = {}
        self._sweeps: dict[str, Sweep] = {}
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"MemoryTracker(root={str(self.root)!r}, runs={len(self.runs)})"

    # -- for tests and harnesses ----------------------------------------------------------------

    def add_sweep(self, sweep: Sweep) -> None:
        """Know a sweep made elsewhere (its ledger exists), with a parent run of its own here."""
        with self._lock:
            self._sweeps[sweep.run_id] = sweep
            self.runs.setdefault(sweep.run_id, MemoryRun(sweep.run_id, sweep.name, sweep.experiment_id,
                                                         tags={SWEEP_TAG: "True", STATE_TAG: "running"}))

    def log_metric(self, run_id: str, name: str, value: float) -> None:
        """Log one value of a metric, as a trial's ``mlflow.log_metric`` would."""
        with self._lock:
            self._run(run_id).metrics.setdefault(name, []).append(float(value))

    def add_run(self, params: Mapping[str, str], metrics: Mapping[str, list[float]] | None = None, *,
                status: str = "FINISHED", experiment_id: str = "0") -> MemoryRun:
        """A run made outside any sweep (a prior run): its params as MLflow keeps them (text), its metrics."""
        run = MemoryRun(uuid.uuid4().hex, "run", experiment_id, status, params=dict(params),
                        metrics={k: list(v) for k, v in (metrics or {}).items()})
        with self._lock:
            self.runs[run.run_id] = run
        return run

    def children(self, sweep_id: str) -> list[MemoryRun]:
        """The sweep's child runs, ordered by trial index (then creation)."""
        with self._lock:
            runs = [r for r in self.runs.values() if r.tags.get(PARENT_TAG) == sweep_id]
        return sorted(runs, key=lambda r: int(r.tags.get("sweep.trial", -1)))

    # -- tracker.Tracker -------------------------------------------------------------------------

    def find_sweep(self, sweep_id: str | None) -> Sweep:
        """A sweep this tracker knows or whose ledger is under ``root``; None: the latest one known."""
        with self._lock:
            if sweep_id is None:
                if not self._sweeps:
                    raise TrackingError(f"no sweep found in the tracking store ({self.uri})")
                return list(self._sweeps.values())[-1]
            if sweep_id not in self._sweeps and self.root is not None and (self.root / sweep_id / LEDGER_NAME).exists():
                self.add_sweep(Sweep(sweep_id, "0", sweep_id, self.uri, self.root / sweep_id))
            if sweep_id not in self._sweeps:
                raise TrackingError(f"no sweep with ID {sweep_id!r} in the tracking store ({self.uri})")
            return self._sweeps[sweep_id]

    def create_sweep(self, config: SweepConfig, config_path: str) -> Sweep:
        """A parent run, its ledger directory ``root/<run id>`` (not yet written), the config file's text kept."""
        if self.root is None:
            raise TrackingError("a MemoryTracker needs a root directory to create sweeps in")
        run_id = uuid.uuid4().hex
        sweep = Sweep(run_id, "0", config.sweep_name or f"sweep-{run_id[:6]}", self.uri, self.root / run_id)
        with self._lock:
            self.add_sweep(sweep)
            run = self.runs[run_id]
            run.tags["sweep.method"] = config.method
            if config.description:
                run.tags[NOTE_TAG] = config.description
            path = Path(config_path)
            run.artifacts[path.name] = path.read_text() if path.is_file() else ""
        return sweep

    def start_trial(self, sweep: Sweep, trial: Trial) -> tuple[str, Path | None]:
        """A RUNNING child run with the trial's tags; it has no artifact directory."""
        run = MemoryRun(uuid.uuid4().hex, f"{sweep.name}-{trial.index}", sweep.experiment_id,
                        tags=trial_tags(sweep, trial))
        with self._lock:
            self.runs[run.run_id] = run
        return run.run_id, None

    def settle_trial(self, run_id: str, params: Mapping[str, Any],
                     counted: tuple[str, float] | Mapping[str, float] | None = None, *, read: bool = True) -> Settled:
        """Fill in the params the trial did not log; log the counted value as ``sweep.<name>``."""
        with self._lock:
            run = self._run(run_id)
            missing = [name for name in params if name not in run.params]
            run.params.update({name: param_text(params[name]) for name in missing})
            settled = Settled(tuple(missing), tuple(run.metrics))  # as the run was before this call
            pairs = [] if counted is None else counted.items() if isinstance(counted, Mapping) else [counted]
            for name, value in pairs:
                run.metrics.setdefault(counted_metric(name), []).append(float(value))
            return settled

    def end_trial(self, run_id: str, state: TrialState, output: Path | None = None,
                  tags: Mapping[str, str] | None = None) -> None:
        """Keep the output's text, set the tags and the status."""
        text = None if output is None else Path(output).read_text(errors="replace")
        with self._lock:
            run = self._run(run_id)
            if text is not None:
                run.artifacts[OUTPUT_ARTIFACT] = text
            run.tags.update(tags or {})
            run.status = state.value

    def fail_trial(self, sweep: Sweep, trial: Trial, reason: str) -> str:
        """A FAILED child run for a trial whose agent died before making one."""
        run = MemoryRun(uuid.uuid4().hex, f"{sweep.name}-{trial.index}", sweep.experiment_id, status="FAILED",
                        tags={**trial_tags(sweep, trial), REAPED_TAG: reason, NOTE_TAG: reason},
                        params={name: param_text(value) for name, value in trial.params.items()})
        with self._lock:
            self.runs[run.run_id] = run
        return run.run_id

    def metric_history(self, run_id: str, name: str) -> list[float]:
        """The values logged under ``name``, in order."""
        with self._lock:
            return list(self._run(run_id).metrics.get(name, []))

    def metric_names(self, run_id: str) -> tuple[str, ...]:
        """The run's metrics, sorted, without ``sweep.<name>``."""
        with self._lock:
            return tuple(sorted(k for k in self._run(run_id).metrics if not k.startswith(COUNTED_PREFIX)))

    def set_sweep_state(self, run_id: str, state: SweepPhase) -> None:
        """The parent's tag ``sweep.state`` and status."""
        phase = SweepPhase(state)
        with self._lock:
            run = self._run(run_id)
            run.tags[STATE_TAG] = phase.value
            run.status = phase.parent_status.value

    def record_outcome(self, sweep: Sweep, *, best: Trial | None, metric_name: str | None, table: str,
                       plot_dir: Path, ledger_path: Path, ledger_copy: Path | None = None,
                       tags: Mapping[str, str] | None = None) -> None:
        """The table as an artifact, the plots' names, the tags, the best trial's tags and metric."""
        with self._lock:
            run = self._run(sweep.run_id)
            run.tags.update(tags or {})
            run.artifacts["sweep_summary.txt"] = table
            run.artifacts.update({f"plots/{p.name}": "" for p in sorted(Path(plot_dir).glob("*.png"))})
            if best is not None:
                if best.run_id:
                    run.tags["sweep.best_run_id"] = best.run_id
                run.tags["sweep.best_params"] = json.dumps(dict(best.params), default=str)
                if metric_name and best.metric is not None:
                    run.metrics[f"best_{metric_name}"] = [float(best.metric)]

    @contextlib.contextmanager
    def trial_run_active(self, sweep: Sweep, run_id: str) -> Iterator[None]:
        """Nothing to switch: a function trial logs with ``log_metric(run_id, ...)``."""
        yield

    def read_runs(self, run_ids: Sequence[str], metrics: Sequence[str]) -> list[RunRecord]:
        """The runs with these IDs; TrackingError for one this tracker does not hold."""
        with self._lock:
            missing = [run_id for run_id in run_ids if run_id not in self.runs]
            if missing:
                raise TrackingError(f"prior run {missing[0]!r}: no such run in the tracking store ({self.uri})")
            return [self._record(self.runs[run_id], metrics) for run_id in run_ids]

    def search_runs(self, experiment_name: str, filter_string: str | None, metrics: Sequence[str]) -> list[RunRecord]:
        """Every run of the experiment (its id, or "Default" for "0"); a filter is not understood here."""
        if filter_string:
            raise UsageError("the memory tracking store cannot filter runs; read them by ID")
        wanted = "0" if experiment_name == "Default" else experiment_name
        with self._lock:
            return [self._record(run, metrics) for run in self.runs.values() if run.experiment_id == wanted]

    def log_config_version(self, sweep: Sweep, version: int, config_path: str) -> None:
        """The config file's text under ``config_versions/v<version>/``, and the version tag."""
        path = Path(config_path)
        with self._lock:
            run = self._run(sweep.run_id)
            run.artifacts[f"{config_version_dir(version)}/{path.name}"] = path.read_text()
            run.tags[CONFIG_VERSION_TAG] = str(version)

    @staticmethod
    def _record(run: MemoryRun, metrics: Sequence[str]) -> RunRecord:
        histories = {name: tuple(run.metrics.get(name, ())) for name in metrics}
        return RunRecord(run.run_id, run.status, dict(run.params), dict(run.tags), histories)

    def _run(self, run_id: str) -> MemoryRun:
        try:
            return self.runs[run_id]
        except KeyError:
            raise TrackingError(f"the tracking store ({self.uri}) has no run {run_id!r}") from None
