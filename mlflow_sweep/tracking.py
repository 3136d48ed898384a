"""The only module that calls MLflow: the parent run, child runs, their params, artifacts and metrics.

``MlflowTracker`` is the ``tracker.Tracker`` every command uses; the module functions are its work.

Every call to the store is retried briefly on SQLite's "database is locked": with many agents
and their commands writing one embedded store, SQLite refuses a write that would upgrade a read
transaction instead of waiting on its busy timeout, so a short backoff is the fix.
The retry wraps one client call at a time, never a whole function: retrying ``create_sweep``
after its ``create_run`` succeeded would make a second parent run. A call that failed on the lock
did not commit, so calling it again is safe.

A trial's child run: at start it gets the tag ``sweep.params`` (the sampled values as JSON) and no
params, so the trial's own ``mlflow.log_params`` never meets a value the agent logged (argparse's
``1.0`` against the sweep's ``1``, which MLflow would refuse as a changed param). At the end,
``settle_trial`` logs as params the names the trial did not log itself, and the value the sweep
counted as the metric ``sweep.<metric name>``.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence, SupportsIndex, TypeVar

from mlflow_sweep import catalog
from mlflow_sweep.devices import DEVICES_ENV
from mlflow_sweep.errors import SweepError, TrackingError, UsageError
from mlflow_sweep.tracker import (CONFIG_VERSION_TAG, COUNTED_PREFIX, DEVICES_TAG, KILLED_BY_TAG,  # noqa: F401
                                  NOTE_TAG, OUTPUT_ARTIFACT, PARAMS_TAG, REAPED_TAG, RETRY_OF_TAG, STATE_TAG,
                                  STOP_ASKED_TAG, STOPPED_EARLY_TAG, SWEEP_TAG, RunRecord, Settled, Sweep,
                                  config_version_dir, counted_metric, param_text, trial_tags)
from mlflow_sweep.trials import SweepPhase, Trial, TrialState

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlflow_sweep.config import SweepConfig

log = logging.getLogger(__name__)

LEDGER_TAG = "sweep.ledger_dir"
LEDGER_ENV = "MLFLOW_SWEEP_LEDGER_DIR"
_ATTEMPTS = 8
_BATCH = 100  # MLflow's log_batch takes at most 100 params (and 1000 entries in all)

T = TypeVar("T")


def _store_errors(func: Callable[..., T]) -> Callable[..., T]:
    """Turn whatever the store raises into one TrackingError naming the store, never a traceback.

    Lock contention is retried below, per client call (``_RetryingClient``), not here.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return func(*args, **kwargs)
        except SweepError:
            raise
        except Exception as exc:  # MlflowException, sqlalchemy or requests errors
            raise TrackingError(f"the tracking store ({tracking_uri()}) refused "
                                f"{func.__name__.lstrip('_').replace('_', ' ')}: {exc}") from exc

    return wrapper


def _retry(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """One store call, again after a jittered backoff while SQLite says "database is locked"."""
    for attempt in range(_ATTEMPTS):
        try:
            return call(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001  re-raised unless it is lock contention
            if "database is locked" not in str(exc) or attempt == _ATTEMPTS - 1:
                raise
            delay = 0.05 * 2**attempt * (0.5 + random.random())
            log.debug("database is locked in %s; retrying in %.2f s", getattr(call, "__name__", call), delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


class _RetryingClient:
    """An MlflowClient whose every method call is retried on its own (see ``_retry``)."""

    def __init__(self, client: MlflowClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            return _retry(attr, *args, **kwargs)

        return call


def _client() -> Any:
    """The client for the tracking URI in effect now (a notebook may switch stores between sweeps)."""
    return _client_for(tracking_uri())


@functools.lru_cache(maxsize=8)
def _client_for(uri: str) -> Any:
    from mlflow import MlflowClient

    _tune_sqlite(uri)
    return _RetryingClient(MlflowClient(uri))


def _tune_sqlite(uri: str) -> None:
    """Put a local sqlite store in WAL mode with NORMAL sync for this process's connections.

    In WAL mode readers never block the writer, so many agents and their commands share the
    store without "database is locked"; NORMAL sync drops the fsync per commit (an interrupted
    machine may lose the last commits but never corrupts the file). WAL needs shared memory
    between the processes, so a store on a network filesystem keeps its rollback journal.
    """
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or ":memory:" in uri:
        return
    from mlflow_sweep.mounts import NETWORK_FILESYSTEMS, filesystem_type

    if filesystem_type(uri[len(prefix):]) in NETWORK_FILESYSTEMS:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if not event.contains(Engine, "connect", _wal_on_connect):
        event.listen(Engine, "connect", _wal_on_connect)


def _wal_on_connect(dbapi_connection: Any, _record: Any) -> None:
    import sqlite3

    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.OperationalError as exc:  # another process is switching it right now
            log.debug("could not set WAL mode: %s", exc)
        finally:
            cursor.close()


def tracking_uri() -> str:
    """The tracking URI in effect, with a relative sqlite path made absolute for the trials.

    A trial's command may change directory, so ``sqlite:///mlflow.db`` must not stay relative.
    """
    import mlflow

    uri = mlflow.get_tracking_uri()
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/") and ":memory:" not in uri:
        return prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


@_store_errors
def create_sweep(config: SweepConfig, config_path: str) -> Sweep:
    """Create the parent run, log the config file, and return the sweep (ledger not yet written)."""
    client = _client()
    experiment_id = _experiment_id(client, config.experiment_name)
    ledger_root = _ledger_root(client, experiment_id)
    tags = {SWEEP_TAG: "True", "sweep.method": config.method, STATE_TAG: SweepPhase.RUNNING.value}
    run = client.create_run(experiment_id, run_name=config.sweep_name, tags=tags)
    run_id = run.info.run_id
    ledger_dir = _ledger_dir(ledger_root, run.info.artifact_uri, run_id)
    client.set_tag(run_id, LEDGER_TAG, str(ledger_dir))
    client.log_artifact(run_id, config_path)
    if config.description:
        client.set_tag(run_id, "mlflow.note.content", config.description)
    return Sweep(run_id, experiment_id, run.info.run_name, tracking_uri(), ledger_dir)


def _experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            raise TrackingError(f"experiment {name!r} is deleted; restore it or choose another experiment_name")
        return experiment.experiment_id
    return client.create_experiment(name)


def _ledger_root(client: MlflowClient, experiment_id: str) -> Path | None:
    """MLFLOW_SWEEP_LEDGER_DIR if set; None when the parent's local artifact dir will do."""
    if os.environ.get(LEDGER_ENV):
        return Path(os.environ[LEDGER_ENV]).expanduser().resolve()
    location = client.get_experiment(experiment_id).artifact_location
    if _local_path(location) is None:
        raise TrackingError(
            f"the experiment's artifacts are at {location}, where agents cannot share a lock; "
            f"set {LEDGER_ENV} to a directory every agent can reach"
        )
    return None


def _ledger_dir(root: Path | None, artifact_uri: str, run_id: str) -> Path:
    if root is not None:
        return root / run_id
    local = _local_path(artifact_uri)
    assert local is not None  # _ledger_root checked the experiment's location
    return local / "sweep"


def _local_path(uri: str) -> Path | None:
    """The filesystem path of a local artifact URI, or None for a remote one."""
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(url2pathname(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(uri).resolve()
    return None


@_store_errors
def find_sweep(sweep_id: str | None) -> Sweep:
    """The sweep with this parent run ID, or the most recently initialized one.

    A local store that does not exist is not created (a command that finds no sweep leaves no
    stray ``mlflow.db``), and a local sqlite store is read directly when it can be (``catalog``:
    opening MLflow's store costs more than ``status`` may take).
    """
    uri = tracking_uri()
    _require_store(uri, sweep_id)
    runs = catalog.read_sweeps(uri, sweep_id=sweep_id, limit=1)
    if runs is None:
        runs = _client_sweeps(sweep_id, limit=1)
    if not runs:
        if sweep_id:
            raise TrackingError(f"no sweep with ID {sweep_id!r} in the tracking store ({uri}); "
                                "check the ID that 'mlflow sweep init' printed, and MLFLOW_TRACKING_URI")
        raise TrackingError(f"no sweep found in the tracking store ({uri}); "
                            "run 'mlflow sweep init CONFIG' first, or pass --sweep-id")
    return _sweep_of(runs[0], uri)


@_store_errors
def list_sweeps() -> list[tuple[Sweep, catalog.SweepRun]]:
    """Every active sweep in the tracking store, newest first, with what its parent run says.

    An empty list when the store has none, or when a local store does not exist (it is not created).
    """
    uri = tracking_uri()
    if missing_store(uri) is not None:
        return []
    runs = catalog.read_sweeps(uri)
    if runs is None:
        runs = _client_sweeps(None, limit=None)
    return [(_sweep_of(run, uri), run) for run in runs]


def missing_store(uri: str) -> Path | None:
    """Where a local store should be when it does not exist; None when it exists or is not local.

    Args:
        uri: the tracking URI in effect (``tracking_uri()``).
    """
    path = catalog.local_store(uri)
    return path if path is not None and not path.exists() else None


def _require_store(uri: str, sweep_id: str | None) -> None:
    """Say "no sweep" before MLflow would create an empty store (and print its migrations) to look."""
    path = missing_store(uri)
    if path is None:
        return
    what = f"no sweep with ID {sweep_id!r}" if sweep_id else "no sweep found"
    raise TrackingError(f"{what}: there is no tracking store at {path} (tracking URI {uri}); run 'mlflow "
                        "sweep init CONFIG' in this directory first, or set MLFLOW_TRACKING_URI to the "
                        "store that holds the sweep")


def _sweep_of(run: catalog.SweepRun, uri: str) -> Sweep:
    if run.tags.get(SWEEP_TAG) != "True":
        raise TrackingError(f"run {run.run_id} is not a sweep (it has no tag sweep=True); "
                            "pass the ID that 'mlflow sweep init' printed")
    env_root = os.environ.get(LEDGER_ENV)
    if env_root:
        ledger_dir = Path(env_root).expanduser().resolve() / run.run_id
    elif LEDGER_TAG in run.tags:
        ledger_dir = Path(run.tags[LEDGER_TAG])
    else:
        raise TrackingError(f"sweep {run.run_id} has no ledger directory; set {LEDGER_ENV}")
    return Sweep(run.run_id, run.experiment_id, run.name, uri, ledger_dir)


def _client_sweeps(sweep_id: str | None, limit: int | None) -> list[catalog.SweepRun]:
    """The run ``sweep_id`` (none if unknown), or active sweeps newest first, through MlflowClient."""
    from mlflow.entities import ViewType
    from mlflow.exceptions import MlflowException

    client = _client()
    if sweep_id:
        try:
            runs = [client.get_run(sweep_id)]
        except MlflowException as exc:
            if "database is locked" in str(exc):
                raise
            return []
    else:
        experiments = client.search_experiments(view_type=ViewType.ACTIVE_ONLY)
        runs = list(client.search_runs([e.experiment_id for e in experiments],
                                       filter_string=f"tags.{SWEEP_TAG} = 'True'",
                                       order_by=["attributes.start_time DESC"],
                                       max_results=limit or 50_000)) if experiments else []
    names = {}
    for run in runs:
        if run.info.experiment_id not in names:
            names[run.info.experiment_id] = client.get_experiment(run.info.experiment_id).name
    return [catalog.SweepRun(r.info.run_id, r.info.experiment_id, names[r.info.experiment_id],
                             r.info.run_name or "", r.info.start_time / 1000 if r.info.start_time else None,
                             dict(r.data.tags)) for r in runs]


@_store_errors
def start_trial(sweep: Sweep, trial: Trial) -> tuple[str, Path | None]:
    """Create the trial's child run, its values in the tag ``sweep.params``; return its ID and artifact dir.

    No params yet: the trial logs its own, and ``settle_trial`` fills in the rest.
    """
    tags = trial_tags(sweep, trial)
    if os.environ.get(DEVICES_ENV):  # an agent of 'run --gpus': the devices its trials see
        tags[DEVICES_TAG] = os.environ[DEVICES_ENV]
    run = _client().create_run(sweep.experiment_id, run_name=f"{sweep.name}-{trial.index}", tags=tags)
    return run.info.run_id, _local_path(run.info.artifact_uri)


@_store_errors
def fail_trial(sweep: Sweep, trial: Trial, reason: str) -> str:
    """Create the FAILED child run of a trial whose agent died before making one; return its ID.

    Args:
        sweep: the trial's sweep.
        trial: the trial as the ledger knows it (reaped as dead, without a run).
        reason: why it failed, kept as the tag ``sweep.reaped`` and, at more length, as the run's note.
    """
    from mlflow.entities import Param

    client = _client()
    tags = {**trial_tags(sweep, trial), REAPED_TAG: reason,
            NOTE_TAG: f"Trial {trial.index} was counted, but {reason} before this run was made; "
                      "the agent that reaped it made this run so that the trial shows in MLflow."}
    run = client.create_run(sweep.experiment_id, run_name=f"{sweep.name}-{trial.index}", tags=tags)
    run_id = run.info.run_id
    params = [Param(name, param_text(value)) for name, value in trial.params.items()]
    for start in range(0, len(params), _BATCH):
        client.log_batch(run_id, params=params[start:start + _BATCH])
    client.set_terminated(run_id, status=TrialState.FAILED.value)
    return run_id


@_store_errors
def settle_trial(run_id: str, params: Mapping[str, Any],
                 counted: tuple[str, float] | Mapping[str, float] | None = None, *, read: bool = True) -> Settled:
    """At a trial's end: log the params it did not log itself, and the value the sweep counted.

    The trial's own text stands where it logged a param (``1.0`` from argparse for the sweep's ``1``).
    With ``read=False`` (the caller needs no list of the run's metrics) a trial of at most 100
    params costs one store call, not two (a function trial's overhead is mostly store calls): every param is
    logged at once, which MLflow accepts where the trial logged the same text; only when it
    refuses (the trial logged other text) is the run read and the rest logged. ``filled`` then
    names every param, ``metrics`` is empty.

    Args:
        run_id: the trial's child run.
        params: the trial's values under MLflow param names.
        counted: (metric name, value) the sweep counted for the trial, logged as ``sweep.<name>``; for a
            sweep with several objectives, each objective's value by name.
        read: read the run first (``Settled.metrics``, exact ``filled``).
    """
    from mlflow.entities import Metric, Param

    client = _client()
    pairs = [] if counted is None else list(counted.items()) if isinstance(counted, Mapping) else [counted]
    metrics = [Metric(counted_metric(name), float(value), int(time.time() * 1000), 0) for name, value in pairs]
    if not read and len(params) <= _BATCH:
        from mlflow.exceptions import MlflowException

        try:
            client.log_batch(run_id, params=[Param(k, param_text(v)) for k, v in params.items()], metrics=metrics)
            return Settled(tuple(params), ())
        except MlflowException as exc:
            if "Changing param values is not allowed" not in str(exc):
                raise  # nothing was logged: the batch is one transaction
    data = client.get_run(run_id).data
    missing = [Param(name, param_text(value)) for name, value in params.items() if name not in data.params]
    for start in range(0, max(len(missing), len(metrics)), _BATCH):  # one call for most trials
        client.log_batch(run_id, params=missing[start:start + _BATCH], metrics=metrics if start == 0 else [])
    return Settled(tuple(p.key for p in missing), tuple(data.metrics))


@_store_errors
def end_trial(run_id: str, state: TrialState, output: Path | None = None,
              tags: Mapping[str, str] | None = None) -> None:
    """Store the trial's captured output (when not already in its artifact dir), set ``tags``, end the run."""
    client = _client()
    if output is not None:
        client.log_artifact(run_id, str(output))
    for key, value in (tags or {}).items():
        client.set_tag(run_id, key, value)
    client.set_terminated(run_id, status=state.value)


@_store_errors
def set_sweep_state(run_id: str, state: SweepPhase) -> None:
    """Show a sweep's state on its parent run: tag ``sweep.state`` and its status (``SweepPhase.parent_status``)."""
    client = _client()
    run = client.get_run(run_id)
    if run.data.tags.get(STATE_TAG) != state.value:
        client.set_tag(run_id, STATE_TAG, state.value)
    status = state.parent_status.value
    if run.info.status == status:
        return
    if status == "RUNNING":
        client.update_run(run_id, status=status)
    else:
        client.set_terminated(run_id, status=status)


@_store_errors
def metric_names(run_id: str) -> tuple[str, ...]:
    """The metrics a run has, sorted, without the sweep's own ``sweep.<name>``."""
    return tuple(sorted(k for k in _client().get_run(run_id).data.metrics if not k.startswith(COUNTED_PREFIX)))


@_store_errors
def metric_history(run_id: str, name: str) -> list[float]:
    """The values a run logged under ``name``, in the order they were logged."""
    history = _client().get_metric_history(run_id, name)
    return [m.value for m in sorted(history, key=lambda m: m.timestamp)]


@_store_errors
def record_outcome(sweep: Sweep, *, best: Trial | None, metric_name: str | None, table: str,
                   plot_dir: Path, ledger_path: Path, ledger_copy: Path | None = None,
                   tags: Mapping[str, str] | None = None) -> None:
    """Store finalize's results on the parent run; its status follows the sweep's state, not finalize.

    Finalizing again replaces rather than duplicates: artifacts keep their names, tags are
    overwritten, and ``best_<metric>`` is logged only when its value changed. When the ledger
    (``ledger_path``) is not in the parent's local artifacts, ``ledger_copy`` (the whole log in
    one file) is stored instead, if given. ``tags`` are set on the parent as given
    (``sweep.pareto_run_ids`` for a sweep with several objectives).
    """
    client = _client()
    run = client.get_run(sweep.run_id)
    for key, value in (tags or {}).items():
        client.set_tag(sweep.run_id, key, value)
    client.log_artifacts(sweep.run_id, str(plot_dir), "plots")
    client.log_text(sweep.run_id, table, "sweep_summary.txt")
    local = _local_path(run.info.artifact_uri)
    if local is None or not Path(ledger_path).resolve().is_relative_to(local.resolve()):  # kept elsewhere: a copy
        client.log_artifact(sweep.run_id, str(ledger_copy or ledger_path), "sweep")
    if best is not None:
        if best.run_id:
            client.set_tag(sweep.run_id, "sweep.best_run_id", best.run_id)
        client.set_tag(sweep.run_id, "sweep.best_params", json.dumps(dict(best.params), default=str))
        if metric_name and best.metric is not None:
            key = f"best_{metric_name}"
            if run.data.metrics.get(key) != float(best.metric):
                client.log_metric(sweep.run_id, key, float(best.metric), step=0)


@_store_errors
def read_runs(run_ids: Sequence[str], metrics: Sequence[str]) -> list[RunRecord]:
    """The runs with these IDs, each with its history of every metric named; TrackingError for an unknown ID.

    Only reads: a prior run is never changed.
    """
    from mlflow.exceptions import MlflowException

    client = _client()
    runs = []
    for run_id in run_ids:
        try:
            runs.append(client.get_run(run_id))
        except MlflowException as exc:
            if "database is locked" in str(exc):
                raise
            raise TrackingError(f"prior run {run_id!r}: no such run in the tracking store ({tracking_uri()}); "
                                "check the run ID") from None
    return [_record(run, metrics) for run in runs]


@_store_errors
def search_runs(experiment_name: str, filter_string: str | None, metrics: Sequence[str]) -> list[RunRecord]:
    """Every active run of ``experiment_name`` matching ``filter_string`` (MLflow's search syntax), oldest first."""
    from mlflow.entities import ViewType
    from mlflow.exceptions import MlflowException

    client = _client()
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        raise TrackingError(f"--prior-experiment: no experiment named {experiment_name!r} in the tracking store "
                            f"({tracking_uri()})")
    runs, token = [], None
    while True:
        try:
            page = client.search_runs([experiment.experiment_id], filter_string=filter_string or "",
                                      run_view_type=ViewType.ACTIVE_ONLY, max_results=1000,
                                      order_by=["attributes.start_time ASC"], page_token=token)
        except MlflowException as exc:
            if "database is locked" in str(exc):
                raise
            raise UsageError(f"--prior-filter {filter_string!r}: {exc.message}") from None
        runs += list(page)
        token = page.token
        if not token:
            break
    return [_record(run, metrics) for run in runs]


def _record(run: Any, metrics: Sequence[str]) -> RunRecord:
    histories = {name: tuple(metric_history(run.info.run_id, name)) for name in metrics}  # as a trial's are read
    return RunRecord(run.info.run_id, run.info.status, dict(run.data.params), dict(run.data.tags), histories)


@_store_errors
def log_config_version(sweep: Sweep, version: int, config_path: str) -> None:
    """Keep version ``version`` of the sweep's config under ``config_versions/v<version>/`` and tag the version."""
    client = _client()
    client.log_artifact(sweep.run_id, config_path, config_version_dir(version))
    client.set_tag(sweep.run_id, CONFIG_VERSION_TAG, str(version))


_TRIAL_ENV = ("MLFLOW_RUN_ID", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")


@contextlib.contextmanager
def trial_run_active(sweep: Sweep, run_id: str) -> Iterator[None]:
    """While a function trial runs in this process, make MLflow's fluent API log into its child run.

    The child run is *resumable* rather than active: ``MLFLOW_RUN_ID`` names it and the calling
    thread's active-run stack starts empty, so ``mlflow.log_metric`` (which starts a run when
    none is active) and ``with mlflow.start_run():`` both resume the child run, exactly as in a
    command trial, and never create a second run or raise "already active". MLflow consumes
    ``MLFLOW_RUN_ID`` when it resumes and clears it when the run ends; the stack put in place
    here sets it again whenever the child run is ended, so a second ``start_run()`` in the same
    trial (or sklearn autologging's run around ``fit``) resumes the child run too.

    The caller's state is kept aside and restored afterwards: its own active run (a notebook's
    ``mlflow.start_run()``), its ``mlflow.set_experiment`` choice (MLflow refuses to resume a run
    of another experiment) and the four environment variables. The child run, if the trial left
    it active, is dropped from the stack without being ended (the agent sets its final status);
    other runs the trial left open (``start_run(nested=True)``) are ended FINISHED, as MLflow ends
    a script's open run when the script exits.

    Args:
        sweep: the sweep (tracking URI and experiment of the child run).
        run_id: the trial's child run.
    """
    import mlflow.tracking.fluent as fluent

    saved_env = {name: os.environ.get(name) for name in _TRIAL_ENV}
    saved_stack, saved_experiment = _run_stack(fluent), fluent._active_experiment_id
    _set_run_stack(fluent, _TrialRunStack(run_id))
    fluent._active_experiment_id = None
    os.environ.pop("MLFLOW_EXPERIMENT_NAME", None)
    os.environ.update({"MLFLOW_RUN_ID": run_id, "MLFLOW_TRACKING_URI": sweep.tracking_uri,
                       "MLFLOW_EXPERIMENT_ID": sweep.experiment_id})
    try:
        yield
    finally:
        left = [run.info.run_id for run in _run_stack(fluent) if run.info.run_id != run_id]
        for other in left:  # runs the trial opened (nested=True) and left open: ended as MLflow's atexit would
            with contextlib.suppress(Exception):
                _client().set_terminated(other, status="FINISHED")
        for ended in (run_id, *left):
            monitor = getattr(fluent, "run_id_to_system_metrics_monitor", {}).pop(ended, None)
            if monitor is not None:  # started by the trial's own start_run(log_system_metrics=True)
                with contextlib.suppress(Exception):
                    monitor.finish()
        _set_run_stack(fluent, saved_stack)
        fluent._active_experiment_id = saved_experiment
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _run_stack(fluent: Any) -> list:
    """The calling thread's active-run stack (MLflow < 2.16 kept one list for the process)."""
    stack = fluent._active_run_stack
    return stack if isinstance(stack, list) else stack.get()


def _set_run_stack(fluent: Any, value: list) -> None:
    if isinstance(fluent._active_run_stack, list):
        fluent._active_run_stack = value
    else:
        fluent._active_run_stack.set(value)


class _TrialRunStack(list):
    """The calling thread's active-run stack during a function trial.

    ``mlflow.end_run`` clears ``MLFLOW_RUN_ID`` and then pops the run; popping the trial's run
    sets it again, so the next ``start_run()`` of the trial resumes the same child run.
    """

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id

    def pop(self, index: SupportsIndex = -1) -> Any:
        run = super().pop(index)
        if getattr(getattr(run, "info", None), "run_id", None) == self.run_id:
            os.environ["MLFLOW_RUN_ID"] = self.run_id
        return run


class MlflowTracker:
    """The ``tracker.Tracker`` of the MLflow tracking URI in effect: each method is this module's function.

    It holds nothing: the client is chosen per call from the tracking URI in effect (a notebook may
    switch stores between sweeps), so one instance serves every sweep.
    """

    def find_sweep(self, sweep_id: str | None) -> Sweep:
        """See ``find_sweep``."""
        return find_sweep(sweep_id)

    def create_sweep(self, config: SweepConfig, config_path: str) -> Sweep:
        """See ``create_sweep``."""
        return create_sweep(config, config_path)

    def start_trial(self, sweep: Sweep, trial: Trial) -> tuple[str, Path | None]:
        """See ``start_trial``."""
        return start_trial(sweep, trial)

    def settle_trial(self, run_id: str, params: Mapping[str, Any],
                     counted: tuple[str, float] | Mapping[str, float] | None = None, *, read: bool = True) -> Settled:
        """See ``settle_trial``."""
        return settle_trial(run_id, params, counted, read=read)

    def end_trial(self, run_id: str, state: TrialState, output: Path | None = None,
                  tags: Mapping[str, str] | None = None) -> None:
        """See ``end_trial``."""
        end_trial(run_id, state, output, tags)

    def fail_trial(self, sweep: Sweep, trial: Trial, reason: str) -> str:
        """See ``fail_trial``."""
        return fail_trial(sweep, trial, reason)

    def metric_history(self, run_id: str, name: str) -> list[float]:
        """See ``metric_history``."""
        return metric_history(run_id, name)

    def metric_names(self, run_id: str) -> tuple[str, ...]:
        """See ``metric_names``."""
        return metric_names(run_id)

    def set_sweep_state(self, run_id: str, state: SweepPhase) -> None:
        """See ``set_sweep_state``."""
        set_sweep_state(run_id, state)

    def record_outcome(self, sweep: Sweep, *, best: Trial | None, metric_name: str | None, table: str,
                       plot_dir: Path, ledger_path: Path, ledger_copy: Path | None = None,
                       tags: Mapping[str, str] | None = None) -> None:
        """See ``record_outcome``."""
        record_outcome(sweep, best=best, metric_name=metric_name, table=table, plot_dir=plot_dir,
                       ledger_path=ledger_path, ledger_copy=ledger_copy, tags=tags)

    def trial_run_active(self, sweep: Sweep, run_id: str) -> contextlib.AbstractContextManager[None]:
        """See ``trial_run_active``."""
        return trial_run_active(sweep, run_id)

    def read_runs(self, run_ids: Sequence[str], metrics: Sequence[str]) -> list[RunRecord]:
        """See ``read_runs``."""
        return read_runs(run_ids, metrics)

    def search_runs(self, experiment_name: str, filter_string: str | None, metrics: Sequence[str]) -> list[RunRecord]:
        """See ``search_runs``."""
        return search_runs(experiment_name, filter_string, metrics)

    def log_config_version(self, sweep: Sweep, version: int, config_path: str) -> None:
        """See ``log_config_version``."""
        log_config_version(sweep, version, config_path)

    def __repr__(self) -> str:
        return "MlflowTracker()"


MLFLOW = MlflowTracker()
"""The tracker every command uses unless it is given another."""
