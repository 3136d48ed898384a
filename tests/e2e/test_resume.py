"""A stopped or cancelled sweep runs again after ``resume``; ``retry()`` from Python reruns a failed point.

The real CLI (``stop``, ``cancel``, ``resume``, ``run``) and the Python functions, in this
process, on a real sqlite store; command trials are real (cheap) shell processes.
"""
from __future__ import annotations

from collections import Counter

import pytest

import mlflow_sweep
from tests.e2e.agents import child_runs, init_sweep

pytestmark = [pytest.mark.e2e]

GRID = {"method": "grid", "command": "echo ${x}", "parameters": {"x": {"values": [1, 2, 3, 4]}}}


def _parent(store, sweep_id: str) -> tuple[str, str]:
    run = store.client().get_run(sweep_id)
    return run.info.status, run.data.tags["sweep.state"]


def _points(store, sweep_id: str) -> Counter:
    return Counter((r.data.params["x"], r.info.status) for r in child_runs(store, sweep_id))


@pytest.mark.parametrize(("command", "halted"), [("stop", ("FINISHED", "stopped")), ("cancel", ("KILLED", "cancelled"))])
def test_a_halted_sweep_runs_nothing_until_resume_then_finishes(store, command: str, halted: tuple[str, str]):
    sweep_id = init_sweep(store, GRID)
    first = store.main("run", "--sweep-id", sweep_id, "--count", "2", check=True)
    store.main(command, "--sweep-id", sweep_id, check=True)
    after_halt = _parent(store, sweep_id)
    idle = store.main("run", "--sweep-id", sweep_id)
    idle_points = _points(store, sweep_id)
    resumed = store.main("resume", "--sweep-id", sweep_id, check=True)
    after_resume = _parent(store, sweep_id)
    rest = store.main("run", "--sweep-id", sweep_id, check=True)
    assert (after_halt, idle.returncode, sum(idle_points.values()), after_resume) == (
        halted, 0, 2, ("RUNNING", "running")), idle.stderr + resumed.stdout
    assert _points(store, sweep_id) == Counter((str(x), "FINISHED") for x in (1, 2, 3, 4)), first.stderr + rest.stderr
    assert _parent(store, sweep_id) == ("FINISHED", "done")


def test_retry_from_python_reruns_the_failed_point(store):
    fixed = False

    def train(params):
        if params["x"] == 2 and not fixed:
            raise RuntimeError("a bug, fixed later")

    sweep_id = mlflow_sweep.sweep({**GRID, "parameters": {"x": {"values": [1, 2, 3]}}})
    first = mlflow_sweep.agent(sweep_id, function=train)
    fixed = True
    retried = mlflow_sweep.retry(sweep_id)
    second = mlflow_sweep.agent(sweep_id, function=train)
    again = mlflow_sweep.retry(sweep_id)
    runs = {int(r.data.tags["sweep.trial"]): r for r in child_runs(store, sweep_id)}
    assert ((first.ran, first.failed), (retried.state, retried.changed, retried.trials), second.ran,
            (again.changed, again.trials)) == ((3, 1), ("running", True, (1,)), 1, (False, ()))
    assert [(runs[i].data.params["x"], runs[i].info.status) for i in sorted(runs)] == \
        [("1", "FINISHED"), ("2", "FAILED"), ("3", "FINISHED"), ("2", "FINISHED")]
    assert (runs[3].data.tags["sweep.retry_of"], _parent(store, sweep_id)) == ("1", ("FINISHED", "done"))
