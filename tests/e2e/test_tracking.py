"""tracking against a real sqlite store, in process: retries per call, params at a trial's end, WAL mode."""
from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from mlflow_sweep import config, tracking

pytestmark = [pytest.mark.e2e]

LOCKED = "(sqlite3.OperationalError) database is locked"


@pytest.fixture
def fresh_client(store):
    """tracking caches a client per store; this test's store gets a fresh one (its patches apply)."""
    tracking._client_for.cache_clear()
    yield store
    tracking._client_for.cache_clear()


def _sweep(tmp_path: Path) -> tuple[config.SweepConfig, str]:
    path = tmp_path / "sweep.yaml"
    path.write_text("command: 'true'\nparameters:\n  x: {value: 1}\n")
    return config.load_config(path), str(path)


def test_a_lock_error_after_create_run_retries_that_call_only(fresh_client, tmp_path, monkeypatch):
    """A retry is per client call: retrying the whole create_sweep would make a second parent run."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    calls: list[str] = []
    real = MlflowClient.set_tag

    def locked_once(self, *args, **kwargs):
        calls.append(args[1])
        if len(calls) == 1:
            raise MlflowException(LOCKED)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "set_tag", locked_once)
    sweep = tracking.create_sweep(*_sweep(tmp_path))
    runs = fresh_client.client().search_runs(["0"])
    assert ([r.info.run_id for r in runs], calls[:2]) == ([sweep.run_id], [tracking.LEDGER_TAG] * 2)


def test_a_store_that_stays_locked_is_one_clear_error(fresh_client, tmp_path, monkeypatch):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    def locked(self, *args, **kwargs):
        raise MlflowException(LOCKED)

    monkeypatch.setattr(MlflowClient, "create_run", locked)
    monkeypatch.setattr(tracking, "_ATTEMPTS", 2)
    with pytest.raises(tracking.TrackingError, match="refused create sweep: .*database is locked"):
        tracking.create_sweep(*_sweep(tmp_path))


def test_settle_trial_fills_in_the_params_the_trial_did_not_log(fresh_client):
    """MLflow refuses to change a logged param, so the trial's own text stands (argparse's 1.0 for the sweep's 1), the rest is filled in."""
    client = fresh_client.client()
    run_id = client.create_run("0").info.run_id
    client.log_param(run_id, "lr", "1.0")  # what log_params(vars(args)) does with type=float
    client.log_metric(run_id, "loss", 0.5)
    settled = tracking.settle_trial(run_id, {"lr": 1, "wd": 0.0001, "model.lr": 0.5}, ("loss", 0.25))
    data = client.get_run(run_id).data
    assert (data.params, data.metrics, settled) == (
        {"lr": "1.0", "wd": "0.0001", "model.lr": "0.5"}, {"loss": 0.5, "sweep.loss": 0.25},
        tracking.Settled(("wd", "model.lr"), ("loss",)))


def test_settle_trial_logs_more_params_than_one_batch_holds(fresh_client):
    client = fresh_client.client()
    run_id = client.create_run("0").info.run_id
    params = {f"p{i:03d}": i for i in range(150)}
    settled = tracking.settle_trial(run_id, params)
    data = client.get_run(run_id).data
    assert (len(settled.filled), data.params == {k: str(v) for k, v in params.items()}, data.metrics) == (
        150, True, {})


@pytest.mark.parametrize("logged", [None, "1", "1.0"])
def test_settle_trial_without_reading_the_run_keeps_the_trials_own_text(fresh_client, logged):
    """One store call where the trial logged no param or the same text; its own text still stands."""
    client = fresh_client.client()
    run_id = client.create_run("0").info.run_id
    if logged is not None:
        client.log_param(run_id, "lr", logged)
    settled = tracking.settle_trial(run_id, {"lr": 1, "wd": 0.0001}, ("loss", 0.25), read=False)
    data = client.get_run(run_id).data
    assert (data.params, data.metrics, settled.filled) == (
        {"lr": logged or "1", "wd": "0.0001"}, {"sweep.loss": 0.25},
        ("lr", "wd") if logged != "1.0" else ("wd",))


@pytest.fixture
def without_wal_listener():
    """No WAL listener registered in this process for the test (it is process-wide once added)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    had = event.contains(Engine, "connect", tracking._wal_on_connect)
    if had:
        event.remove(Engine, "connect", tracking._wal_on_connect)
    yield
    if had and not event.contains(Engine, "connect", tracking._wal_on_connect):
        event.listen(Engine, "connect", tracking._wal_on_connect)


def _journal_mode(db: Path) -> str:
    import sqlite3

    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute("PRAGMA journal_mode").fetchone()[0]


def test_a_local_store_is_switched_to_wal(fresh_client, without_wal_listener):
    db = fresh_client.root / "mlflow.db"
    before = _journal_mode(db)
    tracking._client_for(fresh_client.uri).create_run("0")
    assert (before, _journal_mode(db)) == ("delete", "wal")


def test_a_store_on_a_network_filesystem_keeps_its_journal_mode(fresh_client, without_wal_listener, monkeypatch):
    from mlflow_sweep import mounts

    db = fresh_client.root / "mlflow.db"
    table = mounts._read_mounts() + f"999 1 0:99 / {fresh_client.root} rw,relatime - nfs4 server:/export rw,vers=4.2\n"
    monkeypatch.setattr(mounts, "_read_mounts", lambda: table)
    tracking._client_for(fresh_client.uri).create_run("0")
    assert (mounts.filesystem_type(db), _journal_mode(db)) == ("nfs4", "delete")
