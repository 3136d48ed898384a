"""The Python API in a real Jupyter kernel: ``examples/notebook.ipynb`` cell by cell, and
the stop button (a kernel interrupt) while a function trial runs."""
from __future__ import annotations

import json
import time

import pytest

from tests.conftest import EXAMPLES, Store
from tests.e2e.agents import child_runs

pytestmark = [pytest.mark.e2e]


def _text(output: dict) -> str:
    """What a cell output shows as text: a stream, or a result's text/plain."""
    return output.get("text") or output.get("data", {}).get("text/plain", "")


def test_the_example_notebook_runs_cell_by_cell(store: Store):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(EXAMPLES / "notebook.ipynb", as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(store.root)}},
                   env=store.env).execute(env=store.env)
    shown = ["".join(_text(o) for o in cell.get("outputs", [])) for cell in notebook.cells if cell.cell_type == "code"]
    report, status = shown[-2], shown[-1]
    assert "AgentResult(ran=3, failed=0" in shown[-4] and "AgentResult(ran=5, failed=0" in shown[-3]
    assert "Parameter importance for val_accuracy (maximize), 8 trials" in report and "Best trial: #" in report
    assert "Trials: 8 finished, 0 failed, 0 killed, 0 running" in status and "State: done" in status
    sweep_id = next(line for line in status.splitlines() if line.startswith("Sweep ")).split("(")[1].split(")")[0]
    runs = child_runs(store, sweep_id)
    assert len(runs) == 8 and {r.info.status for r in runs} == {"FINISHED"}
    assert all(0.5 < r.data.metrics["val_accuracy"] <= 1 for r in runs)  # logged by train(), in the kernel


class Kernel:
    """A real IPython kernel in the store's directory; ``run`` executes one cell and returns its reply and text."""

    def __init__(self, store: Store):
        from jupyter_client import KernelManager

        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(cwd=str(store.root), env=store.env)
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=120)

    def submit(self, code: str) -> str:
        return self.client.execute(code)

    def reply(self, msg_id: str, timeout: float = 120) -> tuple[dict, str]:
        """Wait for ``msg_id``'s reply; the text the cell showed on the way."""
        shown = []
        deadline = time.monotonic() + timeout
        while True:
            msg = self.client.get_iopub_msg(timeout=max(deadline - time.monotonic(), 0.1))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] in ("stream", "execute_result", "error"):
                shown.append(_text(msg["content"]) or "\n".join(msg["content"].get("traceback", [])))
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        while True:
            reply = self.client.get_shell_msg(timeout=max(deadline - time.monotonic(), 0.1))
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"], "".join(shown)

    def run(self, code: str, timeout: float = 120) -> str:
        content, shown = self.reply(self.submit(code), timeout)
        assert content["status"] == "ok", shown
        return shown

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


def test_the_stop_button_ends_the_trial_killed_and_agent_returns(store: Store):
    kernel = Kernel(store)
    try:
        kernel.run("import json, time\nimport mlflow_sweep\n"
                   "sweep_id = mlflow_sweep.sweep({'method': 'grid', 'parameters': {'x': {'values': [1, 2]}}})\n"
                   "def slow():\n    for _ in range(1200):\n        time.sleep(0.05)\n"
                   "print(sweep_id)")
        sweep_id = kernel.run("print(sweep_id)").strip()
        cell = kernel.submit("result = mlflow_sweep.agent(sweep_id, function=slow)")
        deadline = time.monotonic() + 120  # long: a positive wait, only a guard against a hang
        while not [r for r in child_runs(store, sweep_id) if r.info.status == "RUNNING"]:
            assert time.monotonic() < deadline, "no trial started"
            time.sleep(0.2)
        kernel.manager.interrupt_kernel()
        content, shown = kernel.reply(cell, timeout=60)
        assert content["status"] == "ok", shown  # agent returned; no KeyboardInterrupt traceback in the cell
        assert "trial 0 KILLED" in shown
        (killed,) = child_runs(store, sweep_id)
        assert killed.info.status == "KILLED" and killed.data.tags["sweep.killed_by"] == "SIGINT"

        kernel.run("result = mlflow_sweep.agent(sweep_id, function=lambda: None)")  # the kernel goes on
        runs = child_runs(store, sweep_id)
        finished = sorted(json.loads(r.data.tags["sweep.params"])["x"] for r in runs if r.info.status == "FINISHED")
        assert finished == [1, 2]  # the interrupted point ran again, with its value
    finally:
        kernel.close()
