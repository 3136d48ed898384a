"""The embedded sqlite store under load: 8 agents and their MLflow-logging commands at once.

The agents are real processes forked from one Python that imported mlflow once; each trial is a
real script that imports mlflow and logs to the store.
"""
from __future__ import annotations

import sys
import textwrap
from collections import Counter

import pytest

from tests.e2e.agents import child_runs, forked_agents, init_sweep

LOGGING_SCRIPT = textwrap.dedent("""
    import sys
    import mlflow
    with mlflow.start_run():
        mlflow.log_params({"extra_a": 1, "extra_b": 2})
        for step in range(5):
            mlflow.log_metric("loss", float(sys.argv[1]) / (step + 1), step=step)
        mlflow.set_tag("done", "yes")
""")


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_eight_agents_and_their_scripts_share_one_sqlite_store(store):
    (store.root / "train.py").write_text(LOGGING_SCRIPT)
    sweep_id = init_sweep(store, {
        "method": "random", "run_cap": 16, "metric": {"name": "loss"},
        "command": f"{sys.executable} train.py ${{x}}",
        "parameters": {"x": {"min": 0.0, "max": 1.0}},
    })
    codes, text = forked_agents(store, sweep_id, 8, timeout=540)
    runs = child_runs(store, sweep_id)
    statuses = Counter(r.info.status for r in runs)
    assert (codes, statuses, "database is locked" in text) == ([0] * 8, Counter(FINISHED=16), False), text
    assert all(len(store.client().get_metric_history(r.info.run_id, "loss")) == 5 for r in runs)
