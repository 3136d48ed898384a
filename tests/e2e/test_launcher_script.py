"""scripts/launch_agents.sh: N real agents started with &, waited for, their failures and Ctrl-C."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest

from tests.e2e.agents import child_runs, init_sweep, poll

pytestmark = [pytest.mark.e2e]

LAUNCHER = Path(__file__).resolve().parents[2] / "scripts" / "launch_agents.sh"


def _descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``, from /proc (agents and trials run in their own sessions)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _trial_output(run) -> str:
    path = Path(url2pathname(urlparse(run.info.artifact_uri).path)) / "output.log"
    return path.read_text() if path.exists() else ""


def _launch(store, *args: str, **kw) -> subprocess.Popen:
    # MLFLOW_SWEEP_PYTHON: the agents run on this interpreter even though no venv is activated.
    env = {**store.env, "MLFLOW_SWEEP_PYTHON": sys.executable}
    # SIGINT as a terminal's shell leaves it: pytest may run as a background job, whose children
    # start with SIGINT ignored, and bash cannot trap a signal ignored at its start.
    return subprocess.Popen(["env", "--default-signal=INT", "bash", str(LAUNCHER), *args], cwd=store.root, env=env,
                            text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_three_agents_complete_a_grid_sweep(store):
    sweep_id = init_sweep(store, {
        "method": "grid", "command": "echo point x=${x} y=${y}",
        "parameters": {"x": {"values": [1, 2, 3]}, "y": {"values": ["a", "b", "c"]}},
    })
    proc = _launch(store, "3", sweep_id)
    out, err = proc.communicate(timeout=200)
    runs = child_runs(store, sweep_id)
    points = Counter((r.data.params["x"], r.data.params["y"]) for r in runs)
    expected = Counter((str(x), y) for x in (1, 2, 3) for y in "abc")
    assert (proc.returncode, points, Counter(r.info.status for r in runs)) == (0, expected, Counter(FINISHED=9)), err
    assert "launch_agents: 3 agents finished, 0 failed" in err
    assert Counter(line for line in out.splitlines() if line.startswith("point ")) == Counter(
        f"point x={x} y={y}" for x, y in expected), out


@pytest.mark.timeout(120)
def test_a_failing_agent_makes_the_launcher_fail(store):
    proc = _launch(store, "2", "no-such-sweep")
    _, err = proc.communicate(timeout=100)
    assert proc.returncode == 1, err
    assert "no sweep with ID 'no-such-sweep'" in err
    assert "launch_agents: 2 agents finished, 2 failed" in err


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_ctrl_c_stops_the_agents_and_ends_their_trials_killed(store):
    sweep_id = init_sweep(store, {
        "method": "grid",
        # A trial that needs a moment to shut down, as a training script saving a checkpoint does,
        # and never ends unless stopped.
        "command": "trap 'sleep 1; echo graceful exit; exit 0' TERM; echo started ${x}; sleep 100000 & wait",
        "parameters": {"x": {"values": [1, 2]}},
    })
    # Its own session stands in for a terminal: Ctrl-C signals the whole foreground process group.
    proc = _launch(store, "2", sweep_id, start_new_session=True)
    try:
        # Both trials have printed, so their TERM handlers are in place.
        poll(lambda: [r for r in child_runs(store, sweep_id) if "started" in _trial_output(r)][1:], timeout=150)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=100)
    finally:
        if proc.poll() is None:
            for pid in [proc.pid, *_descendants(proc.pid)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait()
    runs = child_runs(store, sweep_id)
    client = store.client()
    logs = [Path(client.download_artifacts(r.info.run_id, "output.log", str(store.root / r.info.run_id)))
            .read_text() for r in runs]
    assert (proc.returncode, Counter(r.info.status for r in runs)) == (130, Counter(KILLED=2)), err
    # Stopped, not waited for (they never end by themselves), and each agent got one signal: a
    # second one would have SIGKILLed its trial before the trial's own TERM handler finished.
    assert all("graceful exit" in log for log in logs), (logs, err)


def test_usage_errors_exit_2(tmp_path):
    for args in ([], ["0"], ["three"]):
        proc = subprocess.run(["bash", str(LAUNCHER), *args], capture_output=True, text=True, timeout=30)
        assert (proc.returncode, proc.stderr.startswith("usage:")) == (2, True), (args, proc.stderr)
