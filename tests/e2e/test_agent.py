"""The agent end to end: real CLI processes, a real sqlite store, real parallel agents and signals."""
from __future__ import annotations

import signal
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.agents import agents, child_runs, init_sweep, kill_group, ledger_events, logs, poll, start_agent, wait_all
from tests.e2e.test_finalize import ledger_of

pytestmark = [pytest.mark.e2e]

ECHO = "echo x=${x} y=${y}"


def _running_trials(store, sweep_id) -> list[dict]:
    events = ledger_events(store, sweep_id)
    ended = {e["trial"] for e in events if e.get("event") in ("end", "dead")}
    return [e for e in events if e.get("event") == "start" and e["trial"] not in ended]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_four_agents_run_each_grid_point_once(store):
    sweep_id = init_sweep(store, {
        "method": "grid", "command": ECHO,
        "parameters": {"x": {"values": [1, 2, 3, 4]}, "y": {"values": ["a", "b", "c"]}},
    })
    with agents(store, sweep_id, 4) as procs:
        codes = wait_all(procs, timeout=200)
    runs = child_runs(store, sweep_id)
    points = sorted((r.data.params["x"], r.data.params["y"]) for r in runs)
    expected = sorted((str(x), y) for x in (1, 2, 3, 4) for y in "abc")
    statuses = Counter(r.info.status for r in runs)
    assert (codes, points, statuses) == ([0] * 4, expected, Counter(FINISHED=12)), logs(store)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_eight_agents_stop_at_exactly_run_cap(store):
    sweep_id = init_sweep(store, {
        "method": "random", "run_cap": 40, "command": "sleep ${s}",
        "parameters": {"s": {"min": 0.0, "max": 0.3}},
    })
    with agents(store, sweep_id, 8) as procs:
        codes = wait_all(procs, timeout=280)
    runs = child_runs(store, sweep_id)
    trials = sorted(int(r.data.tags["sweep.trial"]) for r in runs)
    assert (codes, trials) == ([0] * 8, list(range(40))), logs(store)


@pytest.fixture
def shell_sweep(store):
    """A small sweep whose command never touches MLflow; run once by one agent."""
    sweep_id = init_sweep(store, {
        "method": "grid", "command": "echo trial x=${x} y=${y}; echo to-stderr >&2",
        "parameters": {"x": {"values": [0, 1]}, "y": {"values": ["a b", "x; touch PWNED"]}},
    })
    proc = store.cli("run", "--sweep-id", sweep_id)
    return store, sweep_id, proc


def test_command_without_mlflow_gets_a_child_run_with_params_and_output(shell_sweep):
    store, sweep_id, proc = shell_sweep
    runs = child_runs(store, sweep_id)
    client = store.client()
    outputs = {}
    for run in runs:
        path = client.download_artifacts(run.info.run_id, "output.log", str(store.root / run.info.run_id))
        outputs[run.data.params["y"]] = Path(path).read_text()
    assert proc.returncode == 0, proc.stderr
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 4
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {sweep_id}
    assert "trial x=0 y=x; touch PWNED\nto-stderr\n" in outputs["x; touch PWNED"]
    assert not (store.root / "PWNED").exists()
    assert "trial x=1 y=a b" in proc.stdout  # shown live on the agent's stdout


def test_agent_reports_progress_on_stderr(shell_sweep):
    _, _, proc = shell_sweep
    assert "trial 0 (run " in proc.stderr
    assert "agent done: every grid point is taken; ran 4 trials, 0 failed" in proc.stderr


def test_finished_sweep_runs_nothing_more(shell_sweep):
    store, sweep_id, _ = shell_sweep
    proc = store.cli("run", "--sweep_id", sweep_id)
    assert (proc.returncode, len(child_runs(store, sweep_id))) == (0, 4), proc.stderr


def test_unknown_sweep_id_is_a_clear_error(shell_sweep):
    store, _, _ = shell_sweep
    proc = store.cli("run", "--sweep-id", "0123456789")
    assert proc.returncode == 1
    assert "no sweep with ID '0123456789'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_run_that_is_not_a_sweep_is_refused(shell_sweep):
    store, sweep_id, _ = shell_sweep
    child = child_runs(store, sweep_id)[0].info.run_id
    proc = store.cli("run", "--sweep-id", child)
    assert (proc.returncode, "is not a sweep" in proc.stderr, "Traceback" in proc.stderr) == (1, True, False)


TRAIN = textwrap.dedent("""
    import sys
    import mlflow
    lr = float(sys.argv[1])
    with mlflow.start_run():
        mlflow.log_param("from_script", "yes")
        for step in range(3):
            mlflow.log_metric("loss", (lr - 0.3) ** 2 + 1.0 / (step + 1), step=step)
""")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_script_logs_into_the_trial_run_and_metric_reaches_the_ledger(store):
    (store.root / "train.py").write_text(TRAIN)
    sweep_id = init_sweep(store, {
        "method": "random", "run_cap": 2, "metric": {"name": "loss", "goal": "minimize"},
        "command": f"{sys.executable} train.py ${{lr}}",
        "parameters": {"lr": {"min": 0.0, "max": 1.0}},
    })
    proc = store.cli("run", timeout=200)  # no --sweep-id: the most recent sweep
    runs = child_runs(store, sweep_id)
    client = store.client()
    all_runs = client.search_runs([runs[0].info.experiment_id], max_results=100)
    ends = {e["trial"]: e for e in ledger_events(store, sweep_id) if e.get("event") == "end"}
    assert proc.returncode == 0, proc.stderr
    assert len(all_runs) == 3  # the parent and one run per trial: never two
    for run in runs:
        lr = float(run.data.params["lr"])
        assert run.data.params["from_script"] == "yes"
        assert run.info.status == "FINISHED"
        expected = (lr - 0.3) ** 2 + 1.0 / 3  # best (minimum) over the steps
        assert ends[int(run.data.tags["sweep.trial"])]["metric"] == pytest.approx(expected)


def test_failing_trials_are_recorded_and_stop_the_agent_after_max_failures(store):
    sweep_id = init_sweep(store, {
        "method": "random", "run_cap": 5, "command": "echo boom ${x}; exit 3",
        "parameters": {"x": {"values": [1, 2]}},
    })
    proc = store.cli("run", "--sweep-id", sweep_id, "--max-failures", "2")
    runs = child_runs(store, sweep_id)
    assert proc.returncode == 1
    assert "agent stopped after 2 failed trials in a row" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert [r.info.status for r in runs] == ["FAILED", "FAILED"]
    [beat] = ledger_of(store, sweep_id).agents()  # its last beat says it exited, so status counts it exited, not died
    assert beat.get("stopped") is True


def test_bad_count_is_a_usage_error(store):
    proc = store.cli("run", "--count", "0")
    assert (proc.returncode, "--count must be a whole number of at least 1" in proc.stderr) == (2, True)


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_the_trial_group_and_marks_it_killed(store, sig):
    sweep_id = init_sweep(store, {
        "method": "random", "run_cap": 3,
        "command": "sleep 60 & echo $! > child.pid; wait",
        "parameters": {"x": {"values": [1]}},
    })
    proc = start_agent(store, sweep_id, log=store.root / "agent-0.log")
    try:
        poll(lambda: (store.root / "child.pid").exists() and _running_trials(store, sweep_id), timeout=60)
        grandchild = int((store.root / "child.pid").read_text())
        proc.send_signal(sig)
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    runs = child_runs(store, sweep_id)
    assert (code, [r.info.status for r in runs]) == (128 + sig, ["KILLED"]), logs(store)
    assert not Path(f"/proc/{grandchild}").exists() or "Z" in Path(f"/proc/{grandchild}/stat").read_text().split()[2]
    assert f"agent stopped by {signal.Signals(sig).name}; trial 0 ended KILLED" in logs(store)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sigkilled_agent_trial_is_reaped_and_its_grid_point_reissued(store):
    sweep_id = init_sweep(store, {
        "method": "grid",
        # Trial 0 hangs, so its agent is certainly killed mid-trial; a re-run of its point does not.
        "command": 'echo ${x}; if [ "$MLFLOW_SWEEP_TRIAL" = 0 ]; then echo $$ > victim.pgid; sleep 60; fi',
        "parameters": {"x": {"values": [0, 1, 2, 3]}},
    })
    env = dict(store.env, MLFLOW_SWEEP_HEARTBEAT_TIMEOUT="3")
    victim = start_agent(store, sweep_id, env=env, log=store.root / "agent-victim.log")
    try:
        poll(lambda: (store.root / "victim.pgid").exists(), timeout=60, interval=0.05)
        victim.kill()  # SIGKILL: no chance to clean up
        victim.wait()
        with agents(store, sweep_id, 2, env=env) as procs:
            codes = wait_all(procs, timeout=200)
    finally:
        victim.kill()
        victim.wait()
        kill_group(int((store.root / "victim.pgid").read_text()))
    runs = child_runs(store, sweep_id)
    points = sorted((r.data.params["x"], r.info.status) for r in runs)
    failed = [r.data.tags["sweep.trial"] for r in runs if r.info.status == "FAILED"]
    dead = [e["trial"] for e in ledger_events(store, sweep_id) if e.get("event") == "dead"]
    expected = [("0", "FAILED"), ("0", "FINISHED"), ("1", "FINISHED"), ("2", "FINISHED"), ("3", "FINISHED")]
    assert (codes, dead, failed, points) == ([0, 0], [0], ["0"], expected), logs(store)
    status = store.cli("status", "--sweep-id", sweep_id, env=env).stdout
    assert "Agents: 0 live, 2 exited, 1 died (gone without exiting cleanly)" in status, status


@pytest.mark.timeout(120)
def test_metric_target_stops_new_claims(store):
    (store.root / "score.py").write_text(
        "import sys, mlflow\nwith mlflow.start_run():\n    mlflow.log_metric('acc', float(sys.argv[1]))\n")
    sweep_id = init_sweep(store, {
        "method": "grid", "metric": {"name": "acc", "goal": "maximize", "target": 0.9},
        "command": f"{sys.executable} score.py ${{acc}}",
        "parameters": {"acc": {"values": [0.5, 0.95, 0.1, 0.2]}},
    })
    proc = store.cli("run", "--sweep-id", sweep_id, timeout=100)
    runs = child_runs(store, sweep_id)
    assert (proc.returncode, len(runs)) == (0, 2), proc.stderr
    assert "metric target 0.9 reached" in proc.stderr


def test_a_corrupt_ledger_line_is_a_clear_error_and_the_file_is_kept(store):
    sweep_id = init_sweep(store, {"method": "random", "run_cap": 2, "command": "echo ${x}",
                                  "parameters": {"x": {"values": [1]}}})
    ledger = Path(store.client().get_run(sweep_id).data.tags["sweep.ledger_dir"]) / "ledger.jsonl"
    with ledger.open("a") as f:
        f.write('{"event": "claim", "trial": 0, oops\n{"event": "start", "trial": 0, "run_id": "x", "time": 1}\n')
    before = ledger.read_bytes()
    proc = store.cli("run", "--sweep-id", sweep_id)
    assert (proc.returncode, "ledger.jsonl:2: not a JSON line" in proc.stderr) == (1, True), proc.stderr
    assert "Traceback" not in proc.stderr
    assert (ledger.read_bytes(), child_runs(store, sweep_id)) == (before, [])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_agents_run_a_bayes_sweep_past_its_design_points(store):
    (store.root / "score.py").write_text(
        "import sys, mlflow\nx, k = float(sys.argv[1]), sys.argv[2]\n"
        "with mlflow.start_run():\n    mlflow.log_metric('loss', (x - 0.3) ** 2 + (k == 'b'))\n")
    sweep_id = init_sweep(store, {
        "method": "bayes", "run_cap": 9, "metric": {"name": "loss", "goal": "minimize"},
        "command": f"{sys.executable} score.py ${{x}} ${{k}}",
        "parameters": {"x": {"min": 0.0, "max": 1.0}, "k": {"values": ["a", "b"]}},
    })
    with agents(store, sweep_id, 2) as procs:
        codes = wait_all(procs, timeout=280)
    runs = child_runs(store, sweep_id)
    points = {(r.data.params["x"], r.data.params["k"]) for r in runs}
    ends = [e for e in ledger_events(store, sweep_id) if e.get("event") == "end"]
    assert (codes, len(runs), len(points)) == ([0, 0], 9, 9), logs(store)
    assert all(e["state"] == "FINISHED" and e["metric"] is not None for e in ends)


def test_a_trial_the_store_refuses_is_recorded_failed_with_a_clear_message(store):
    # The experiment was deleted (say, in the UI) after init: MLflow refuses the child run.
    sweep_id = init_sweep(store, {"method": "grid", "experiment_name": "gone", "command": "echo ${x}",
                                  "parameters": {"x": {"values": [1]}}})
    client = store.client()
    client.delete_experiment(client.get_run(sweep_id).info.experiment_id)
    proc = store.cli("run", "--sweep-id", sweep_id)
    ends = [(e["trial"], e["state"]) for e in ledger_events(store, sweep_id) if e.get("event") == "end"]
    assert (proc.returncode, "Traceback" in proc.stderr, ends) == (1, False, [(0, "FAILED")]), proc.stderr
    assert "the tracking store" in proc.stderr and "refused start trial" in proc.stderr
