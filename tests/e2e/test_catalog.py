"""Reading sweeps straight from a local sqlite store gives what MlflowClient gives, without its
1-2 s of SQLAlchemy start-up that status cannot afford.

``catalog`` is a shortcut for speed; ``tracking`` falls back to MlflowClient whenever it answers None.
"""
from __future__ import annotations

import time

import pytest

from mlflow_sweep import catalog, tracking

pytestmark = [pytest.mark.e2e]


@pytest.fixture(autouse=True)
def fresh_client():
    """tracking caches an MlflowClient per store URI; start each test with none."""
    tracking._client_for.cache_clear()
    yield
    tracking._client_for.cache_clear()


def make_runs(store) -> dict[str, str]:
    """Sweeps in two experiments, one deleted sweep, one sweep in a deleted experiment, one plain run."""
    client = store.client()
    other = client.create_experiment("other", artifact_location=(store.root / "other").as_uri())
    gone = client.create_experiment("gone", artifact_location=(store.root / "gone").as_uri())
    ids = {}
    for name, experiment, tags in [("old", "0", {"sweep": "True"}), ("plain", "0", {}),
                                   ("new", other, {"sweep": "True", "sweep.method": "grid"}),
                                   ("deleted", "0", {"sweep": "True"}), ("in-gone", gone, {"sweep": "True"})]:
        run = client.create_run(experiment, run_name=name, tags={**tags, "other.tag": "x",
                                                                 "sweep.ledger_dir": f"/ledgers/{name}"})
        ids[name] = run.info.run_id
        time.sleep(0.01)  # distinct start times
    client.delete_run(ids["deleted"])
    client.delete_experiment(gone)
    return ids


def test_direct_read_matches_mlflow_client(store):
    ids = make_runs(store)
    direct = catalog.read_sweeps(store.uri)
    assert [r.name for r in direct] == ["new", "old"]
    through_mlflow = [catalog.SweepRun(r.run_id, r.experiment_id, r.experiment_name, r.name, r.start_time,
                                       {k: v for k, v in r.tags.items() if k == "sweep" or k.startswith("sweep.")})
                      for r in tracking._client_sweeps(None, limit=None)]  # the direct read keeps sweep tags only
    assert direct == through_mlflow
    assert direct[0].experiment_name == "other" and direct[0].tags["sweep.method"] == "grid"
    assert [r.name for r in catalog.read_sweeps(store.uri, limit=1)] == ["new"]
    [plain] = catalog.read_sweeps(store.uri, sweep_id=ids["plain"])  # any run by ID, as get_run
    assert (plain.name, plain.tags) == ("plain", {"sweep.ledger_dir": "/ledgers/plain"})
    assert catalog.read_sweeps(store.uri, sweep_id="nope") == []


def test_find_and_list_use_either_path_alike(store, monkeypatch):
    ids = make_runs(store)
    fast = (tracking.find_sweep(None), tracking.find_sweep(ids["old"]), [s for s, _ in tracking.list_sweeps()])
    monkeypatch.setattr(catalog, "read_sweeps", lambda *a, **kw: None)  # as for a server or an odd file
    slow = (tracking.find_sweep(None), tracking.find_sweep(ids["old"]), [s for s, _ in tracking.list_sweeps()])
    assert fast == slow and fast[0].name == "new" and [s.name for s in fast[2]] == ["new", "old"]


@pytest.mark.parametrize("uri", ["http://localhost:5000", "databricks", "postgresql://u@h/db", "sqlite:///:memory:"])
def test_other_stores_are_left_to_mlflow(uri):
    assert catalog.read_sweeps(uri) is None


def test_a_file_that_is_not_an_mlflow_store_is_left_to_mlflow(tmp_path):
    (tmp_path / "mlflow.db").write_bytes(b"not a database at all" * 100)
    assert catalog.read_sweeps(f"sqlite:///{tmp_path / 'mlflow.db'}") is None


def test_local_store_paths(tmp_path):
    assert catalog.local_store(f"sqlite:///{tmp_path}/mlflow.db") == tmp_path / "mlflow.db"
    assert catalog.local_store((tmp_path / "mlruns").as_uri()) == tmp_path / "mlruns"
    assert catalog.local_store("http://host:5000") is None and catalog.local_store("databricks") is None
