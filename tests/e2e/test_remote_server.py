"""A real ``mlflow server`` with proxied artifacts: the ledger must live in MLFLOW_SWEEP_LEDGER_DIR."""
from __future__ import annotations

from collections import Counter

import pytest

from tests.conftest import Store
from tests.e2e.agents import agents, child_runs, init_sweep, logs, wait_all
from tests.e2e.tracking_server import tracking_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory, template_store):
    """``mlflow server`` on a free loopback port, sqlite backend, artifacts proxied to a local dir."""
    with tracking_server(tmp_path_factory.mktemp("server"), template_store) as url:
        yield url


@pytest.fixture
def remote(server, tmp_path, monkeypatch) -> Store:
    from tests.conftest import _clean_env

    env = _clean_env()
    env["MLFLOW_TRACKING_URI"] = server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    return Store(root=tmp_path, uri=server, env=env)


CONFIG = {"method": "grid", "experiment_name": "remote", "command": "echo ${x}",
          "parameters": {"x": {"values": [1, 2, 3]}}}


@pytest.mark.timeout(180)
def test_remote_store_without_ledger_dir_says_what_to_set(remote):
    (remote.root / "sweep.yaml").write_text("method: grid\nexperiment_name: remote-no-dir\ncommand: echo ${x}\n"
                                            "parameters:\n  x: {values: [1]}\n")
    proc = remote.cli("init", "sweep.yaml")
    client = remote.client()
    experiment = client.get_experiment_by_name("remote-no-dir")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    assert (proc.returncode, "set MLFLOW_SWEEP_LEDGER_DIR" in proc.stderr, runs) == (1, True, []), proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.timeout(240)
def test_remote_store_with_ledger_dir_runs_the_sweep(remote):
    remote.env["MLFLOW_SWEEP_LEDGER_DIR"] = str(remote.root / "ledgers")
    sweep_id = init_sweep(remote, CONFIG)
    with agents(remote, sweep_id, 2) as procs:
        codes = wait_all(procs, timeout=200)
    runs = child_runs(remote, sweep_id)
    outputs = sorted(remote.client().download_artifacts(r.info.run_id, "output.log", str(remote.root))
                     and (remote.root / "output.log").read_text() for r in runs)
    assert (codes, Counter(r.info.status for r in runs)) == ([0, 0], Counter(FINISHED=3)), logs(remote)
    assert outputs == ["1\n", "2\n", "3\n"]
    assert (remote.root / "ledgers" / sweep_id / "ledger.jsonl").exists()
