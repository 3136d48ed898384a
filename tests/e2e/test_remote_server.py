"""A real ``mlflow server`` with proxied artifacts: the ledger must live in MLFLOW_SWEEP_LEDGER_DIR.

One server for the module. ``init`` and real agent processes run against it, then every other
command and the function agent, in this process.
"""
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
    proc = remote.main("init", "sweep.yaml")
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


@pytest.mark.timeout(240)
def test_the_function_agent_status_retry_lifecycle_list_and_finalize_against_the_server(remote, monkeypatch):
    """Every command but ``init``/``run``, and the Python API, against the server (in this process)."""
    import mlflow_sweep

    ledgers = str(remote.root / "ledgers")
    remote.env["MLFLOW_SWEEP_LEDGER_DIR"] = ledgers
    monkeypatch.setenv("MLFLOW_SWEEP_LEDGER_DIR", ledgers)
    calls = []

    def train(params):
        import mlflow

        calls.append(params)
        if len(calls) == 2:
            raise RuntimeError("a bug, fixed later")
        mlflow.log_metric("loss", params["x"])

    sweep_id = mlflow_sweep.sweep({"method": "random", "run_cap": 3, "experiment_name": "remote-api",
                                   "metric": {"name": "loss"}, "parameters": {"x": {"min": 0.0, "max": 1.0}}})
    first = mlflow_sweep.agent(sweep_id, function=train)
    status = remote.main("status", "--sweep-id", sweep_id, check=True).stdout
    retry = remote.main("retry", "--sweep-id", sweep_id, check=True).stdout
    second = mlflow_sweep.agent(sweep_id, function=train)
    states = {}
    for command in (["update", "--run-cap", "5"], ["pause"], ["resume"], ["stop"], ["cancel"]):
        remote.main(*command, "--sweep-id", sweep_id, check=True)
        parent = remote.client().get_run(sweep_id)
        states[command[0]] = (parent.info.status, parent.data.tags["sweep.state"])
    listed = remote.main("list", check=True).stdout
    finalized = remote.main("finalize", "--sweep-id", sweep_id, check=True).stdout

    runs = child_runs(remote, sweep_id)
    assert ((first.ran, first.failed), second.ran, Counter(r.info.status for r in runs)) == (
        (3, 1), 1, Counter(FINISHED=3, FAILED=1)), status + retry
    assert "Trials: 2 finished, 1 failed, 0 killed, 0 running" in status and "will run again" in retry
    assert states == {"update": ("RUNNING", "running"), "pause": ("RUNNING", "paused"),
                      "resume": ("RUNNING", "running"), "stop": ("FINISHED", "stopped"),
                      "cancel": ("KILLED", "cancelled")}
    row = next(line for line in listed.splitlines() if line.startswith(sweep_id))
    assert row.split()[2:5] == ["remote-api", "random", "cancelled"], listed
    parent = remote.client().get_run(sweep_id)
    best = min((r for r in runs if r.info.status == "FINISHED"), key=lambda r: r.data.metrics["loss"])
    assert (f"(run {best.info.run_id})" in finalized, parent.data.tags["sweep.best_run_id"]) == (
        True, best.info.run_id), finalized
    assert calls[3] == calls[1]  # the retried trial ran with the failed one's values
    assert {a.path for a in remote.client().list_artifacts(sweep_id, "plots")} >= {"plots/timeline.png"}
