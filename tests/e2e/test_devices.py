"""``mlflow sweep run --gpus``: one agent per device group, as one command. No GPU is needed: what is
proven is which devices each trial's process sees (its ``CUDA_VISIBLE_DEVICES``, recorded by the trial).

The supervisor's contract (groups, output, exit status, signals) is first proven with stand-in agents
that import nothing heavy; then the real CLI runs real agents on a real sqlite store.
"""
from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from tests.e2e.agents import child_runs, init_sweep, kill_group, ledger_events, poll

pytestmark = [pytest.mark.e2e]

# --- the supervisor, with stand-in agents ------------------------------------------------------

STAND_IN_AGENT = textwrap.dedent("""
    import os, signal, sys, time
    from pathlib import Path

    root, devices = Path(os.environ["STANDIN_DIR"]), os.environ["MLFLOW_SWEEP_DEVICES"]
    name, got = devices.replace(",", "-"), []

    def on_signal(signum, frame):
        got.append(signal.Signals(signum).name)
        with open(root / f"{name}.signals", "a") as f:
            f.write(got[-1] + "\\n")

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(f"out {os.environ['CUDA_VISIBLE_DEVICES']}", flush=True)
    print(f"err {devices}", file=sys.stderr, flush=True)
    (root / f"{name}.ready").write_text(f"{os.getpid()} {os.getsid(0)}")
    need = int(os.environ.get("STANDIN_SIGNALS", "0"))
    while len(got) < need:
        time.sleep(0.05)
    sys.stdout.write("last words without a newline")
    sys.exit(128 + signal.Signals[got[0]] if need else int(os.environ.get(f"STANDIN_EXIT_{name}", "0")))
""")

DRIVER = textwrap.dedent("""
    import json, sys
    from mlflow_sweep import device_agents

    groups, argv = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    say = lambda message: print(f"[sup] {message}", file=sys.stderr, flush=True)
    result = device_agents.run_agents([tuple(g) for g in groups], argv, out=sys.stdout.buffer,
                                      err=sys.stderr.buffer, say=say)
    sys.exit(result.exit_code)
""")


def _supervise(tmp_path: Path, groups: list[list[str]], **env: str) -> subprocess.Popen:
    """The supervisor in a process (and session) of its own, over stand-in agents; output in files."""
    (tmp_path / "agent.py").write_text(STAND_IN_AGENT)
    (tmp_path / "driver.py").write_text(DRIVER)
    argv = [sys.executable, str(tmp_path / "agent.py")]
    full_env = {**os.environ, "STANDIN_DIR": str(tmp_path), **env}
    return subprocess.Popen([sys.executable, str(tmp_path / "driver.py"), json.dumps(groups), json.dumps(argv)],
                            stdout=open(tmp_path / "out.log", "wb"), stderr=open(tmp_path / "err.log", "wb"),
                            env=full_env, start_new_session=True)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.timeout(60)
def test_each_agent_sees_its_group_its_lines_carry_it_and_the_worst_status_wins(tmp_path):
    proc = _supervise(tmp_path, [["0"], ["1", "2"], ["3"]], **{"STANDIN_EXIT_1-2": "3", "STANDIN_EXIT_3": "1"})
    code = proc.wait(timeout=50)
    out, err = _lines(tmp_path / "out.log"), _lines(tmp_path / "err.log")
    assert code == 3, err
    assert sorted(out) == sorted(["[gpu 0] out 0", "[gpus 1,2] out 1,2", "[gpu 3] out 3",
                                  "[gpu 0] last words without a newline", "[gpus 1,2] last words without a newline",
                                  "[gpu 3] last words without a newline"]), out
    assert {"[gpu 0] err 0", "[gpus 1,2] err 1,2", "[gpu 3] err 3"} <= set(err), err
    assert err[-1] == "[sup] agents finished: gpu 0 exit 0, gpus 1,2 exit 3, gpu 3 exit 1", err
    # each agent leads a session of its own: a terminal's Ctrl-C reaches only the supervisor
    for name in ("0", "1-2", "3"):
        pid, sid = (tmp_path / f"{name}.ready").read_text().split()
        assert pid == sid


@pytest.mark.timeout(60)
def test_each_sigterm_is_forwarded_to_every_agent_once_and_the_status_is_143(tmp_path):
    proc = _supervise(tmp_path, [["0"], ["1"]], STANDIN_SIGNALS="2")
    try:
        poll(lambda: all((tmp_path / f"{n}.ready").exists() for n in "01"), timeout=30)
        proc.send_signal(signal.SIGTERM)
        poll(lambda: all(_lines(tmp_path / f"{n}.signals") == ["SIGTERM"] for n in "01"), timeout=30)
        proc.send_signal(signal.SIGTERM)  # the second: agents kill their trials at once
        code = proc.wait(timeout=30)
    finally:
        kill_group(proc.pid)
    signals = [_lines(tmp_path / f"{n}.signals") for n in "01"]
    assert (code, signals) == (143, [["SIGTERM", "SIGTERM"]] * 2), _lines(tmp_path / "err.log")
    assert "[sup] agents finished: gpu 0 exit 143, gpu 1 exit 143" in _lines(tmp_path / "err.log")


@pytest.mark.timeout(60)
def test_ctrl_c_to_the_foreground_group_stops_every_agent_and_the_status_is_130(tmp_path):
    proc = _supervise(tmp_path, [["0", "1"], ["2", "3"]], STANDIN_SIGNALS="1")
    try:
        poll(lambda: all((tmp_path / f"{n}.ready").exists() for n in ("0-1", "2-3")), timeout=30)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
        code = proc.wait(timeout=30)
    finally:
        kill_group(proc.pid)
    signals = [_lines(tmp_path / f"{n}.signals") for n in ("0-1", "2-3")]
    assert (code, signals) == (130, [["SIGINT"]] * 2), _lines(tmp_path / "err.log")


# --- the real CLI, real agents, a real store -----------------------------------------------------

# Each trial records the devices it sees, and when it started and ended (ns), in trials/<index>.
RECORD = ('echo "$CUDA_VISIBLE_DEVICES $(date +%s%N)" > trials/$MLFLOW_SWEEP_TRIAL.start; sleep 0.3; '
          'date +%s%N > trials/$MLFLOW_SWEEP_TRIAL.end; echo "trial $MLFLOW_SWEEP_TRIAL sees $CUDA_VISIBLE_DEVICES"')
RANDOM = {"method": "random", "parameters": {"x": {"min": 0.0, "max": 1.0}}}


def _env(store, path_first: Path | None = None, **extra: str) -> dict[str, str]:
    """The store's environment without any GPU variable of this machine, plus ``extra``."""
    env = {k: v for k, v in store.env.items() if k not in ("CUDA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL")}
    if path_first is not None:
        env["PATH"] = f"{path_first}{os.pathsep}{env.get('PATH', os.defpath)}"
    return {**env, **extra}


def _trials(store) -> dict[int, tuple[str, int, int]]:
    """Each finished trial's (devices it saw, start ns, end ns)."""
    out = {}
    for start in (store.root / "trials").glob("*.start"):
        devices, started = start.read_text().split()
        ended = int((start.with_suffix(".end")).read_text())
        out[int(start.stem)] = (devices, int(started), ended)
    return out


def _stand_in_smi(directory: Path, output: str, code: int = 0) -> Path:
    directory.mkdir()
    script = directory / "nvidia-smi"
    script.write_text("#!/bin/sh\nwhile IFS= read -r line; do echo \"$line\"; done <<'EOF'\n"
                      f"{output}\nEOF\nexit {code}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return directory


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_four_devices_run_four_agents_one_trial_per_device_at_a_time_and_the_sweep_exactly(store):
    (store.root / "trials").mkdir()
    sweep_id = init_sweep(store, {**RANDOM, "run_cap": 10, "command": RECORD})
    proc = store.cli("run", "--sweep-id", sweep_id, "--gpus", "0,1,2,3", "--count", "3", env=_env(store), timeout=240)
    runs = child_runs(store, sweep_id)
    trials = _trials(store)
    assert proc.returncode == 0, proc.stderr
    statuses = Counter(r.info.status for r in runs)
    assert (sorted(trials), statuses) == (list(range(10)), Counter(FINISHED=10)), proc.stderr
    by_device = defaultdict(list)
    for devices, started, ended in trials.values():
        by_device[devices].append((started, ended))
    assert set(by_device) == {"0", "1", "2", "3"}, by_device  # every trial on exactly one device, all four used
    assert max(len(spans) for spans in by_device.values()) <= 3  # --count is per agent
    for spans in by_device.values():  # no two trials at once on one device
        spans.sort()
        assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:])), spans
    tags = {int(r.data.tags["sweep.trial"]): (r.data.tags["sweep.devices"], r.data.tags["sweep.agent"]) for r in runs}
    assert {i: devices for i, (devices, _) in tags.items()} == {i: t[0] for i, t in trials.items()}
    agents_of = {devices: {agent for d, agent in tags.values() if d == devices} for devices in by_device}
    assert all(len(agents) == 1 for agents in agents_of.values()), agents_of  # one agent per device
    assert len(set().union(*agents_of.values())) == len(by_device)
    for index, (devices, _, _) in trials.items():  # output lines carry the device
        assert f"[gpu {devices}] trial {index} sees {devices}" in proc.stdout.splitlines(), proc.stdout
    assert "4 agents, one per device group (devices from --gpus): gpu 0 (pid " in proc.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_all_reads_cuda_visible_devices_then_slurm_then_nvidia_smi_and_groups_them(store):
    """Three runs on one sweep, each reading another source; the SLURM one through the Python API."""
    (store.root / "trials").mkdir()
    sweep_id = init_sweep(store, {**RANDOM, "run_cap": 20, "command": RECORD})
    run = ("run", "--sweep-id", sweep_id, "--gpus", "all", "--count", "1")
    seen: list[list[str]] = []

    def step(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess:
        before = set(_trials(store))
        proc = subprocess.run([sys.executable, *argv], cwd=store.root, env=env, capture_output=True, text=True,
                              timeout=200)
        seen.append(sorted(devices for i, (devices, _, _) in _trials(store).items() if i not in before))
        return proc

    restricted = step("-m", "mlflow_sweep", *run, "--gpus-per-trial", "2",
                      env=_env(store, CUDA_VISIBLE_DEVICES="4,5,6,7", SLURM_JOB_GPUS="0,1,2,3"))
    api = (f"import mlflow_sweep; r = mlflow_sweep.agent({sweep_id!r}, gpus='all', gpus_per_trial=2, count=1); "
           "print('result', r.exit_code, [a.devices for a in r.agents])")
    slurm = step("-c", api, env=_env(store, SLURM_JOB_ID="77", SLURM_JOB_GPUS="1,3"))
    smi = _stand_in_smi(store.root / "bin", "GPU 0: Tesla T4 (UUID: GPU-a1)\nGPU 1: Tesla T4 (UUID: GPU-b2)")
    machine = step("-m", "mlflow_sweep", *run, "--gpus-per-trial", "2", env=_env(store, path_first=smi))
    steps = (restricted, slurm, machine)
    assert [p.returncode for p in steps] == [0, 0, 0], [p.stderr for p in steps]
    assert seen == [["4,5", "6,7"], ["1,3"], ["0,1"]]
    tags = sorted(r.data.tags["sweep.devices"] for r in child_runs(store, sweep_id))
    assert tags == sorted(["4,5", "6,7", "1,3", "0,1"])
    assert slurm.stdout.splitlines()[-1] == "result 0 [('1', '3')]", slurm.stdout
    assert "[gpus 1,3] trial 2 sees 1,3" in slurm.stdout.splitlines()

    broken = _stand_in_smi(store.root / "cpu-node", "NVIDIA-SMI has failed because it couldn't communicate with the "
                           "NVIDIA driver.", code=9)
    none = store.cli(*run, env=_env(store, path_first=broken))
    assert (none.returncode, len(child_runs(store, sweep_id))) == (2, 4), none.stderr
    assert none.stderr.strip() == (
        "--gpus all: no GPU found: CUDA_VISIBLE_DEVICES is not set, nor is any of SLURM's GPU variables "
        "(GPU_DEVICE_ORDINAL, SLURM_STEP_GPUS, SLURM_JOB_GPUS), and nvidia-smi -L failed (exit 9: NVIDIA-SMI has "
        "failed because it couldn't communicate with the NVIDIA driver.); name the devices instead, e.g. --gpus 0,1")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ctrl_c_kills_and_requeues_every_trial_and_leaves_no_agent(store):
    (store.root / "pids").mkdir()
    sweep_id = init_sweep(store, {**RANDOM, "run_cap": 10,
                                  "command": "echo $$ > pids/$MLFLOW_SWEEP_TRIAL; exec sleep 120"})
    err = store.root / "supervisor.err"
    proc = subprocess.Popen([sys.executable, "-m", "mlflow_sweep", "run", "--sweep-id", sweep_id, "--gpus", "0,1"],
                            cwd=store.root, env=_env(store), stdout=subprocess.DEVNULL, stderr=open(err, "wb"))
    trial_pids: list[int] = []
    try:
        def both_running() -> bool:
            started = {e["trial"] for e in ledger_events(store, sweep_id) if e.get("event") == "start"}
            return len(started) == 2 and len(list((store.root / "pids").iterdir())) == 2

        poll(both_running, timeout=120)
        trial_pids = [int(p.read_text()) for p in (store.root / "pids").iterdir()]
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=90)
    finally:
        proc.kill()
        proc.wait()
        for pid in trial_pids:
            kill_group(pid)
    stderr = err.read_text()
    agent_pids = [int(pid) for pid in re.findall(r"\(pid (\d+)\)", stderr)]
    runs = child_runs(store, sweep_id)
    requeued = sorted((e["trial"], e["requeue"]) for e in ledger_events(store, sweep_id)
                      if e["event"] == "end" and "requeue" in e)
    assert code == 130, stderr
    assert sorted((r.info.status, r.data.tags["sweep.killed_by"], r.data.tags["sweep.devices"]) for r in runs) == [
        ("KILLED", "SIGINT", "0"), ("KILLED", "SIGINT", "1")], stderr
    assert requeued == [(0, "interrupted"), (1, "interrupted")], stderr
    assert len(agent_pids) == 2 and not [pid for pid in agent_pids + trial_pids if _alive(pid)], stderr
    assert stderr.rstrip().endswith("agents stopped by SIGINT; their running trials ended KILLED "
                                    "(their points are handed out again)"), stderr


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, ended but not yet reaped, counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
