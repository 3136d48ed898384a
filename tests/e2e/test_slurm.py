"""SLURM end to end: a private single-node cluster runs scripts/slurm_sweep.sbatch as an array job.

The cluster (tests/slurm_cluster.sh) lives in a tmp directory with its own munge key, ports and
state, so it never touches a system SLURM and several test sessions can run at once. Without the
SLURM packages (or without root) the test is skipped, unless MLFLOW_SWEEP_REQUIRE_SLURM=1 (CI),
where it fails instead.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.e2e.agents import child_runs, init_sweep, ledger_events, poll

pytestmark = [pytest.mark.e2e, pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = REPO / "tests" / "slurm_cluster.sh"
ARRAY_SCRIPT = REPO / "scripts" / "slurm_sweep.sbatch"
REQUIRE_ENV = "MLFLOW_SWEEP_REQUIRE_SLURM"
NEEDED = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel", "scontrol")


@dataclass(frozen=True)
class Cluster:
    """A running private cluster: its directory and the environment its clients need."""

    root: Path

    def env(self, base: dict[str, str]) -> dict[str, str]:
        return {**base, "SLURM_CONF": str(self.root / "slurm.conf")}

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted((self.root / "log").glob("*")))


def _unavailable() -> str | None:
    missing = [exe for exe in NEEDED if shutil.which(exe) is None]
    if missing:
        return (f"SLURM is not installed (missing {', '.join(missing)}); "
                "install the Debian packages slurmctld slurmd slurm-client munge (scripts/test.sh does as root)")
    if os.geteuid() != 0:
        return "the private SLURM cluster runs its daemons as root; run the tests as root"
    return None


# Skip at collection, before the session's store fixtures spend seconds on a test that cannot run;
# when SLURM is required the fixture fails instead.
if _unavailable() and os.environ.get(REQUIRE_ENV) != "1":
    pytestmark.append(pytest.mark.skip(reason=_unavailable()))


def _free_port_pair() -> int:
    """A port P such that P and P + 1 (slurmctld, slurmd) are free right now."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("", 0))
            port = probe.getsockname()[1]
        if port >= 65535:
            continue
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("", port))
                b.bind(("", port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError("no free pair of TCP ports")


def _cluster_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Start a private single-node cluster for this module; stop it (and its jobs) afterwards."""
    reason = _unavailable()
    if reason:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason} ({REQUIRE_ENV}=1)")
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("slurm")
    failures = []
    for attempt in range(3):  # a port taken between the probe and slurmctld's bind: try another
        root = base / f"cluster{attempt}"
        # 3 CPUs even on a 2-core machine, so that the 3 array tasks run at once, as on a cluster.
        env = {**_cluster_env(), "SLURM_PORT": str(_free_port_pair()), "SLURM_NODE_CPUS": "3"}
        proc = subprocess.run(["bash", str(CLUSTER_SCRIPT), "start", str(root)], env=env,
                              capture_output=True, text=True, timeout=120)
        if proc.returncode == 0:
            break
        failures.append(f"attempt {attempt} (port {env['SLURM_PORT']}):\n{proc.stderr}")
    else:
        pytest.fail("the private SLURM cluster did not start:\n" + "\n".join(failures))
    try:
        yield Cluster(root)
    finally:
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "stop", str(root)], env=_cluster_env(),
                       capture_output=True, timeout=120)


def _wait_for_job(cluster: Cluster, env: dict[str, str], job_id: str, timeout: float) -> None:
    """Poll squeue until the job has left the queue (squeue is much quicker than sbatch --wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queue = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%i %T %R"], env=env,
                               capture_output=True, text=True, timeout=30)
        if queue.returncode == 0 and not queue.stdout.strip():
            return
        time.sleep(0.2)
    subprocess.run(["scancel", job_id], env=env, capture_output=True, timeout=30)
    pytest.fail(f"job {job_id} still queued after {timeout} s:\n{queue.stdout}{queue.stderr}\n{cluster.logs()}")


def _task_results(env: dict[str, str], job_id: str) -> dict[int, tuple[str, str]]:
    """{array task id: (JobState, ExitCode)} from scontrol, which keeps ended jobs for MinJobAge."""
    shown = subprocess.run(["scontrol", "-o", "show", "job", job_id], env=env,
                           capture_output=True, text=True, timeout=30)
    results = {}
    for line in shown.stdout.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if "ArrayTaskId" in fields:
            results[int(fields["ArrayTaskId"])] = (fields.get("JobState", "?"), fields.get("ExitCode", "?"))
    return results


@pytest.mark.timeout(300)
def test_array_job_runs_every_grid_point_exactly_once(slurm: Cluster, store, tmp_path: Path) -> None:
    sweep_id = init_sweep(store, {
        "method": "grid", "command": "echo point x=${x} y=${y}; sleep 0.4",
        "parameters": {"x": {"values": [1, 2, 3]}, "y": {"values": ["a", "b"]}},
    })
    out_dir = tmp_path / "slurm-out"
    out_dir.mkdir()
    # The tasks get the submitter's environment (sbatch's default --export=ALL), so the tracking
    # URI and MLFLOW_SWEEP_PYTHON reach them as they would on a real cluster.
    env = slurm.env({**store.env, "MLFLOW_SWEEP_PYTHON": sys.executable})
    submit = subprocess.run(
        ["sbatch", "--parsable", "--array=0-2", "--job-name=sweep-test",
         f"--output={out_dir}/task-%A_%a.out", str(ARRAY_SCRIPT), sweep_id],
        cwd=store.root, env=env, capture_output=True, text=True, timeout=60)
    assert submit.returncode == 0, submit.stderr
    job_id = submit.stdout.strip().split(";")[0]

    _wait_for_job(slurm, env, job_id, timeout=240)

    outputs = {int(p.stem.rsplit("_", 1)[1]): p.read_text(errors="replace")
               for p in sorted(out_dir.glob(f"task-{job_id}_*.out"))}
    shown = "\n".join(f"--- task {i}\n{text}" for i, text in sorted(outputs.items()))
    runs = child_runs(store, sweep_id)
    points = Counter((r.data.params.get("x"), r.data.params.get("y")) for r in runs)
    expected = Counter((str(x), y) for x in (1, 2, 3) for y in "ab")
    assert _task_results(env, job_id) == {i: ("COMPLETED", "0:0") for i in range(3)}, shown
    assert (points, Counter(r.info.status for r in runs)) == (expected, Counter(FINISHED=6)), shown
    assert {r.data.tags.get("mlflow.parentRunId") for r in runs} == {sweep_id}
    assert sorted(outputs) == [0, 1, 2], shown
    for text in outputs.values():
        assert f"slurm_sweep: task {job_id}_" in text and f"sweep {sweep_id}" in text, shown
    # Each trial's output is shown live by the agent that ran it: every point in exactly one task.
    printed = Counter(re.findall(r"^point x=(\d) y=(\w)$", "\n".join(outputs.values()), re.M))
    assert printed == expected, shown


@pytest.mark.timeout(400)
def test_a_task_signalled_mid_trial_has_its_point_run_by_another_task(slurm: Cluster, store, tmp_path: Path) -> None:
    """SIGTERM (a time limit's --signal=B:TERM, preemption, scancel) requeues the trial's point."""
    sweep_id = init_sweep(store, {
        "method": "grid",
        # The first trial hangs, so its task is surely signalled mid-trial; the re-run of its point does not.
        "command": 'echo point x=${x}; if [ "$MLFLOW_SWEEP_TRIAL" = 0 ]; then '
                   'echo "$SLURM_ARRAY_TASK_ID" > victim.task; sleep 300; fi',
        "parameters": {"x": {"values": [0, 1, 2, 3]}},
    })
    out_dir = tmp_path / "slurm-out"
    out_dir.mkdir()
    env = slurm.env({**store.env, "MLFLOW_SWEEP_PYTHON": sys.executable})
    submit = subprocess.run(
        ["sbatch", "--parsable", "--array=0-1", "--job-name=sweep-requeue", f"--output={out_dir}/task-%A_%a.out",
         str(ARRAY_SCRIPT), sweep_id], cwd=store.root, env=env, capture_output=True, text=True, timeout=60)
    assert submit.returncode == 0, submit.stderr
    job_id = submit.stdout.strip().split(";")[0]
    try:
        poll(lambda: (store.root / "victim.task").exists()
             and sum(e["event"] == "end" for e in ledger_events(store, sweep_id)) == 3, timeout=240)
    except AssertionError:
        subprocess.run(["scancel", job_id], env=env, capture_output=True, timeout=30)
        raise
    victim = int((store.root / "victim.task").read_text())
    # --batch: the signal goes to the batch step, which is the agent (the script execs it), as with
    # #SBATCH --signal=B:TERM@N before a time limit; without it scancel --signal reaches job steps only.
    signalled = subprocess.run(["scancel", "--batch", "--signal=TERM", f"{job_id}_{victim}"], env=env,
                               capture_output=True, text=True, timeout=30)
    assert signalled.returncode == 0, signalled.stderr
    _wait_for_job(slurm, env, job_id, timeout=240)

    outputs = {int(p.stem.rsplit("_", 1)[1]): p.read_text(errors="replace")
               for p in sorted(out_dir.glob(f"task-{job_id}_*.out"))}
    shown = "\n".join(f"--- task {i}\n{text}" for i, text in sorted(outputs.items()))
    other = 1 - victim
    runs = {int(r.data.tags["sweep.trial"]): r for r in child_runs(store, sweep_id)}
    finished = Counter(r.data.params["x"] for r in runs.values() if r.info.status == "FINISHED")
    assert (sorted(runs), finished) == ([0, 1, 2, 3, 4], Counter("0123")), shown
    assert (runs[0].info.status, runs[0].data.tags.get("sweep.killed_by")) == ("KILLED", "SIGTERM"), shown
    assert (runs[4].data.params["x"], runs[4].data.tags.get("sweep.retry_of")) == ("0", "0"), shown
    assert _task_results(env, job_id)[other] == ("COMPLETED", "0:0"), shown
    assert "agent stopped by SIGTERM; trial 0 ended KILLED (its point is handed out again)" in outputs[victim], shown
    assert re.search(r"^point x=0$", outputs[other], re.M), shown  # the other task ran the point again
