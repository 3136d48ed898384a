"""Several objectives and Optuna's methods end to end: the real CLI and real agent processes on a real store.

- A grid with two objectives: init → two agents → finalize through the CLI; the parent's
  ``sweep.pareto_run_ids`` is exactly the non-dominated child runs, computed here from the runs'
  own ``sweep.<name>`` metrics, and the table lists them and no dominated one.
- Each Optuna method from the CLI (``cli.main`` in this process: init, an agent), and from Python
  with three agent processes at once on one sweep (function trials): exactly run_cap trials, each
  index once.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import mlflow_sweep
from mlflow_sweep import cli
from tests.e2e.agents import agents, child_runs, init_sweep, ledger_events, logs, wait_all

pytestmark = [pytest.mark.e2e]

TRAIN = textwrap.dedent("""
    import argparse
    import mlflow
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=int)
    parser.add_argument("--depth", type=int)
    args = parser.parse_args()
    with mlflow.start_run():
        for step in range(2):  # the counted value is each objective's best over the steps
            mlflow.log_metric("loss", 1.0 / (args.width * args.depth) + 0.5 * (1 - step), step=step)
            mlflow.log_metric("latency", args.width * args.depth + 0.1 * args.depth + (1 - step), step=step)
""")
OPTUNA_METHODS = ["tpe", "gp", "cmaes", "nsga2"]


def _front(values: dict[str, tuple[float, float]]) -> set[str]:
    """Run IDs no other run beats on both objectives (both minimized), by the definition."""
    return {a for a, va in values.items()
            if not any(vb[0] <= va[0] and vb[1] <= va[1] and vb != va for vb in values.values())}


@pytest.mark.timeout(300)
def test_a_grid_with_two_objectives_records_its_pareto_front(store):
    (store.root / "train.py").write_text(TRAIN)
    sweep_id = init_sweep(store, {
        "program": "train.py", "method": "grid",
        "metrics": [{"name": "loss"}, {"name": "latency", "goal": "minimize"}],
        "parameters": {"width": {"values": [1, 2]}, "depth": {"values": [1, 2]}}})
    with agents(store, sweep_id, 2) as procs:
        codes = wait_all(procs, timeout=240)
    assert codes == [0, 0], logs(store)
    proc = store.cli("finalize", "--sweep-id", sweep_id, check=True)
    runs = child_runs(store, sweep_id)
    values = {r.info.run_id: (r.data.metrics["sweep.loss"], r.data.metrics["sweep.latency"]) for r in runs}
    front = _front(values)
    parent = store.client().get_run(sweep_id)
    assert (len(runs), {r.info.status for r in runs}) == (4, {"FINISHED"})
    assert set(json.loads(parent.data.tags["sweep.pareto_run_ids"])) == front
    assert 0 < len(front) < len(runs)  # dominated runs exist, and are left out
    table = proc.stdout.split("Pareto front for loss (minimize), latency (minimize)", 1)[1].split("\n\n")[0]
    assert {run_id for run_id in values if run_id in table} == front, proc.stdout
    ends = [e for e in ledger_events(store, sweep_id) if e.get("event") == "end"]
    assert sorted(tuple(e["metrics"].values()) for e in ends) == sorted(values.values())
    plots = {f.path for f in store.client().list_artifacts(sweep_id, "plots")}
    assert {"plots/pareto_front.png", "plots/importance_loss.png", "plots/importance_latency.png"} <= plots


@pytest.mark.timeout(300)
def test_each_optuna_method_runs_from_the_cli(store, capsys: pytest.CaptureFixture[str]):
    for method in OPTUNA_METHODS:
        objectives = {"metric": {"name": "loss"}} if method == "cmaes" else {
            "metrics": [{"name": "loss"}, {"name": "latency"}]}
        path = store.root / f"{method}.yaml"
        path.write_text(json.dumps({"method": method, "run_cap": 3, "command": "echo ${x} ${k}", **objectives,
                                    "parameters": {"x": {"min": 0.0, "max": 1.0}, "k": {"values": ["a", "b"]}}}))
        assert cli.main(["init", str(path)]) == 0
        out = capsys.readouterr().out
        assert f"method: {method} (Optuna's" in out
        sweep_id = out.strip().splitlines()[-1].rsplit(" ", 1)[1]
        assert cli.main(["run", "--sweep-id", sweep_id]) == 0, capsys.readouterr().err
        assert sorted(r.info.status for r in child_runs(store, sweep_id)) == ["FINISHED"] * 3


PYTHON_AGENT = textwrap.dedent("""
    import sys
    import mlflow, mlflow_sweep

    def train(params):
        mlflow.log_metric("loss", (params["x"] - 0.3) ** 2 + (params["k"] == "b"))
        mlflow.log_metric("latency", params["x"] * 10)

    for sweep_id in sys.argv[1:]:
        mlflow_sweep.agent(sweep_id, function=train)
""")


@pytest.mark.timeout(400)
def test_optuna_methods_from_python_are_exact_with_three_agents(store):
    """Three Python processes run the four sweeps, one after another, all three on each sweep at once."""
    space = {"x": {"min": 0.0, "max": 1.0}, "k": {"values": ["a", "b"]}}
    sweep_ids = [mlflow_sweep.sweep({"method": method, "run_cap": 6, "parameters": space,
                                     **({"metric": {"name": "loss"}} if method == "cmaes" else
                                        {"metrics": [{"name": "loss"}, {"name": "latency"}]})})
                 for method in OPTUNA_METHODS]
    (store.root / "agent.py").write_text(PYTHON_AGENT)
    procs = [subprocess.Popen([sys.executable, "agent.py", *sweep_ids], cwd=store.root, env=store.env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    try:
        outs = [p.communicate(timeout=360)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert [p.returncode for p in procs] == [0, 0, 0], "\n".join(outs)
    for method, sweep_id in zip(OPTUNA_METHODS, sweep_ids):
        claims = [e["trial"] for e in ledger_events(store, sweep_id) if e.get("event") == "claim"]
        runs = child_runs(store, sweep_id)
        states = sorted(r.info.status for r in runs)
        assert (method, sorted(claims), states) == (method, list(range(6)), ["FINISHED"] * 6), "\n".join(outs)
        assert all("sweep.loss" in r.data.metrics for r in runs)
