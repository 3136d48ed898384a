"""Agent overhead per trial: everything but the command itself, on a sqlite store (target: ≤ 50 ms).

Runs the real CLI in subprocesses on a fresh store in a temp directory:
  1. one agent, N trials (default 1,000) of a no-op command: median overhead per trial, and
     trials 900-1000 against trials 1-100 (must be no slower than 1.5x);
  2. 4 agents in parallel, 400 trials: duplicates (must be 0), child runs (must be exactly 400),
     overhead per trial (agents' wall time x 4 / trials, minus the command's own time);
  3. optionally (--peer VENV) the published mlflow-sweep 0.1.0 installed in VENV and ours side by
     side on the same 30-trial sweep whose command opens an MLflow run (the peer needs that to
     stop): seconds per trial, each tool's overhead over the script alone, and the ratio.

The per-trial cycle is the gap between consecutive child runs' start times; the command's own
time is the median of launching the same command directly with subprocess.

    python scripts/bench_overhead.py [--trials 1000] [--parallel-trials 400] [--peer /path/to/venv]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

NOOP = "true"


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    return env


def _init(root: Path, run_cap: int, python: str = sys.executable) -> str:
    cfg = root / "sweep.yaml"
    cfg.write_text(f"method: random\nrun_cap: {run_cap}\ncommand: {NOOP} ${{x}}\n"
                   "parameters:\n  x: {min: 0.0, max: 1.0}\n")
    out = subprocess.run([python, "-m", "mlflow_sweep", "init", str(cfg)], cwd=root, env=_env(root),
                         capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1].rsplit(" ", 1)[1]


def _child_runs(root: Path, sweep_id: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_run(sweep_id).info.experiment_id
    runs = client.search_runs([exp], filter_string=f"tags.`mlflow.parentRunId` = '{sweep_id}'",
                              max_results=50000, order_by=["attributes.start_time ASC"])
    return runs


def command_time(repeats: int = 200) -> float:
    """Median seconds to launch and reap the no-op command through the shell, as the agent does."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(["/bin/sh", "-c", f"{NOOP} 0.5"], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def single_agent(trials: int, cmd: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sweep_id = _init(root, trials)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mlflow_sweep", "run", "--sweep-id", sweep_id],
                       cwd=root, env=_env(root), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        starts = [r.info.start_time / 1000 for r in _child_runs(root, sweep_id)]
    gaps = [b - a - cmd for a, b in zip(starts, starts[1:])]
    first, last = gaps[:99], gaps[-100:]
    return {"wall": wall, "median": statistics.median(gaps), "first100": statistics.median(first),
            "last100": statistics.median(last)}


def parallel_agents(trials: int, agents: int, cmd: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sweep_id = _init(root, trials)
        start = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-m", "mlflow_sweep", "run", "--sweep-id", sweep_id],
                                  cwd=root, env=_env(root), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for _ in range(agents)]
        codes = [p.wait() for p in procs]
        wall = time.perf_counter() - start
        runs = _child_runs(root, sweep_id)
    trial_ids = Counter(r.data.tags["sweep.trial"] for r in runs)
    duplicates = sum(n - 1 for n in trial_ids.values())
    by_agent: dict[str, list[float]] = {}
    for run in runs:
        by_agent.setdefault(run.data.tags["sweep.agent"], []).append(run.info.start_time / 1000)
    gaps = [b - a - cmd for starts in by_agent.values() for a, b in zip(sorted(starts), sorted(starts)[1:])]
    return {"codes": codes, "runs": len(runs), "duplicates": duplicates, "wall": wall,
            "per_trial": statistics.median(gaps)}


SCRIPT = "import mlflow\nwith mlflow.start_run():\n    pass\n"


def side_by_side(launcher: list[str], python: str, trials: int) -> tuple[float, float]:
    """A tool's own time between two trials, on a sweep whose command opens an MLflow run.

    The published peer never stops unless its trials create a run, so both tools run the same
    script, wrapped in ``date`` stamps: the gap from one trial's end stamp to the next trial's
    start stamp is everything the tool does between commands. Returns (median gap, wall per trial).
    """
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "noop.py").write_text(SCRIPT)
        cmd = f"date +%s.%N >> starts && {python} noop.py ${{x}} && date +%s.%N >> ends"
        (root / "sweep.yaml").write_text(f"command: {cmd}\nmethod: random\nrun_cap: {trials}\n"
                                         "parameters:\n  x: {min: 0.0, max: 1.0}\n")
        env = _env(root)
        subprocess.run([*launcher, "init", "sweep.yaml"], cwd=root, env=env, capture_output=True, check=True)
        start = time.perf_counter()
        subprocess.run([*launcher, "run"], cwd=root, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=3600, check=True)
        wall = time.perf_counter() - start
        starts = [float(x) for x in (root / "starts").read_text().split()]
        ends = [float(x) for x in (root / "ends").read_text().split()]
    gaps = [nxt - end for end, nxt in zip(ends, starts[1:])]
    return statistics.median(gaps), wall / trials


def peer_noop(venv: Path, trials: int) -> list[float]:
    """The peer's gaps between consecutive starts of a no-op command, over ``trials`` trials.

    Its no-op trials create no run, so the peer never reaches run_cap: it is stopped after
    ``trials`` commands have started.
    """
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "sweep.yaml").write_text("command: echo ${x} > /dev/null; date +%s.%N >> starts\nmethod: random\nrun_cap: 100000\n"
                                         "parameters:\n  x: {min: 0.0, max: 1.0}\n")
        env = _env(root)
        launcher = [str(venv / "bin" / "mlflow"), "sweep"]
        subprocess.run([*launcher, "init", "sweep.yaml"], cwd=root, env=env, capture_output=True, check=True)
        proc = subprocess.Popen([*launcher, "run"], cwd=root, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        stamps = root / "starts"
        while proc.poll() is None and (not stamps.exists() or len(stamps.read_text().split()) < trials):
            time.sleep(0.5)
        proc.kill()
        proc.wait()
        starts = [float(x) for x in stamps.read_text().split()][:trials]
    return [b - a for a, b in zip(starts, starts[1:])]


def grid_in_parallel(launcher: list[str], python: str, agents: int = 4) -> tuple[int, int]:
    """4 agents on a 12-point grid whose command opens an MLflow run: (trials run, distinct points)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "noop.py").write_text(SCRIPT)
        (root / "sweep.yaml").write_text(f"command: echo ${{a}} ${{b}} >> points && {python} noop.py\n"
                                         "method: grid\nrun_cap: 12\n"
                                         "parameters:\n  a: {values: [1, 2, 3, 4]}\n  b: {values: [x, y, z]}\n")
        env = _env(root)
        subprocess.run([*launcher, "init", "sweep.yaml"], cwd=root, env=env, capture_output=True, check=True)
        procs = [subprocess.Popen([*launcher, "run"], cwd=root, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for _ in range(agents)]
        for proc in procs:
            proc.wait(timeout=1800)
        points = (root / "points").read_text().splitlines()
    return len(points), len(set(points))


def _timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--parallel-trials", type=int, default=400)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--peer", type=Path, help="a venv with mlflow-sweep==0.1.0 installed")
    parser.add_argument("--peer-trials", type=int, default=30)
    parser.add_argument("--peer-noop-trials", type=int, default=200)
    args = parser.parse_args()

    cmd = command_time()
    print(f"no-op command alone: {cmd * 1000:.1f} ms (subtracted below)")
    one = single_agent(args.trials, cmd)
    print(f"1 agent, {args.trials} trials: wall {one['wall']:.1f} s; overhead/trial median "
          f"{one['median'] * 1000:.1f} ms (target <= 50); trials 1-100 {one['first100'] * 1000:.1f} ms, "
          f"last 100 {one['last100'] * 1000:.1f} ms, ratio {one['last100'] / one['first100']:.2f} (target <= 1.5)")
    par = parallel_agents(args.parallel_trials, args.agents, cmd)
    print(f"{args.agents} agents, {args.parallel_trials} trials: exit codes {par['codes']}, child runs "
          f"{par['runs']}, duplicates {par['duplicates']}, wall {par['wall']:.1f} s, median overhead/trial "
          f"per agent {par['per_trial'] * 1000:.1f} ms (target <= 100)")
    if args.peer:
        ours, ours_wall = side_by_side([sys.executable, "-m", "mlflow_sweep"], sys.executable, args.peer_trials)
        theirs, their_wall = side_by_side([str(args.peer / "bin" / "mlflow"), "sweep"],
                                          str(args.peer / "bin" / "python"), args.peer_trials)
        print(f"side by side, {args.peer_trials} trials of a script that opens an MLflow run; "
              "time between one trial's end and the next trial's start (median):")
        print(f"  mlflow-sweep (this): {ours * 1000:.0f} ms ({ours_wall:.2f} s/trial in all)")
        print(f"  mlflow-sweep 0.1.0:  {theirs * 1000:.0f} ms ({their_wall:.2f} s/trial in all); "
              f"ratio {theirs / ours:.0f}x")
        for name, launcher, python in (("ours", [sys.executable, "-m", "mlflow_sweep"], sys.executable),
                                       ("mlflow-sweep 0.1.0", [str(args.peer / "bin" / "mlflow"), "sweep"],
                                        str(args.peer / "bin" / "python"))):
            ran, distinct = grid_in_parallel(launcher, python)
            print(f"  4 agents on a 12-point grid, {name}: {ran} trials, {distinct} distinct points")
        gaps = peer_noop(args.peer, args.peer_noop_trials)
        head, tail = statistics.median(gaps[:20]), statistics.median(gaps[-20:])
        print(f"  mlflow-sweep 0.1.0 on the no-op command, {len(gaps) + 1} trials: overhead/trial median "
              f"{statistics.median(gaps) * 1000:.0f} ms (first 20 {head * 1000:.0f} ms, last 20 {tail * 1000:.0f} ms); "
              f"ours (above) {one['median'] * 1000:.1f} ms: ratio {statistics.median(gaps) / one['median']:.0f}x")

if __name__ == "__main__":
    main()
