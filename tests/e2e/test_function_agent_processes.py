"""Function agents in their own Python processes: a real Ctrl-C, a function agent beside
a CLI agent on one grid (one ledger: each point exactly once), and examples/python_api.py."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections import Counter

import pytest

from tests.conftest import EXAMPLES
from tests.e2e.agents import child_runs, init_sweep, ledger_events, poll, start_agent

pytestmark = [pytest.mark.e2e]

SLEEPER = textwrap.dedent("""
    import pathlib, sys, time
    import mlflow_sweep

    def train():
        pathlib.Path("started").write_text("1")
        time.sleep(120)

    result = mlflow_sweep.agent(sys.argv[1], function=train)
    print(f"agent returned: ran {result.ran}, {result.reason}", flush=True)
""")


@pytest.mark.timeout(240)
def test_ctrl_c_kills_the_function_trial_and_the_agent_returns(store):
    sweep_id = init_sweep(store, {"method": "random", "run_cap": 3, "parameters": {"x": {"values": [1]}}})
    (store.root / "sleeper.py").write_text(SLEEPER)
    proc = subprocess.Popen([sys.executable, "sleeper.py", sweep_id], cwd=store.root, env=store.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        poll(lambda: (store.root / "started").exists() or proc.poll() is not None, timeout=150)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    runs = child_runs(store, sweep_id)
    claims = [e for e in ledger_events(store, sweep_id) if e.get("event") == "claim"]
    assert (proc.returncode, [r.info.status for r in runs], len(claims)) == (0, ["KILLED"], 1), out
    assert "agent returned: ran 1, stopped by SIGINT" in out
    assert "trial 0 KILLED" in out and "Traceback" not in out


PAIRED = textwrap.dedent("""
    import pathlib, sys, time
    import mlflow, mlflow_sweep

    def train(params):
        pathlib.Path("function_started").touch()
        deadline = time.monotonic() + 120
        while not pathlib.Path("command_started").exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # until the CLI agent runs a trial too
        mlflow.log_metric("x", params["x"])

    print("ran", mlflow_sweep.agent(sys.argv[1], function=train).ran, flush=True)
""")
WAIT_FOR_FUNCTION = ('touch command_started; i=0; while [ ! -e function_started ] && [ $i -lt 1200 ]; '
                     'do sleep 0.1; i=$((i+1)); done; echo ${x}')


@pytest.mark.timeout(300)
def test_a_cli_agent_and_a_function_agent_run_each_grid_point_once(store):
    points = list(range(8))
    sweep_id = init_sweep(store, {"method": "grid", "command": WAIT_FOR_FUNCTION,
                                  "parameters": {"x": {"values": points}}})
    (store.root / "paired.py").write_text(PAIRED)
    cli = start_agent(store, sweep_id, log=store.root / "agent-cli.log")
    function = subprocess.Popen([sys.executable, "paired.py", sweep_id], cwd=store.root, env=store.env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = function.communicate(timeout=240)
        cli_code = cli.wait(timeout=60)
    finally:
        for proc in (cli, function):
            proc.kill()
            proc.wait()
    runs = child_runs(store, sweep_id)
    ran = sorted(int(r.data.params["x"]) for r in runs)
    agents = Counter(r.data.tags["sweep.agent"] for r in runs)
    logs = out + (store.root / "agent-cli.log").read_text()
    assert (cli_code, function.returncode, ran) == (0, 0, points), logs
    assert len(agents) == 2 and {r.info.status for r in runs} == {"FINISHED"}, logs


@pytest.mark.timeout(300)
def test_the_python_api_example_runs_a_bayes_sweep_of_function_trials(store):
    proc = subprocess.run([sys.executable, str(EXAMPLES / "python_api.py")], cwd=store.root, env=store.env,
                          capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    client = store.client()
    (parent,) = client.search_runs([client.get_experiment_by_name("python-api-example").experiment_id],
                                   filter_string="tags.sweep = 'True'")
    runs = child_runs(store, parent.info.run_id)
    accuracy = [r.data.metrics["val_accuracy"] for r in runs]
    assert (len(runs), {r.info.status for r in runs}) == (20, {"FINISHED"}), proc.stderr
    assert {"scaler", "svm.C", "svm.gamma", "svm.kernel"} <= set(runs[0].data.params)
    assert max(accuracy) > 0.95 and parent.data.tags["sweep.best_run_id"] in {r.info.run_id for r in runs}
    assert "Parameter importance for val_accuracy (maximize), 20 trials" in proc.stdout
    assert "best: 0.9" in proc.stdout
