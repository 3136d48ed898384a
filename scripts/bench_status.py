#!/usr/bin/env python
"""Time ``mlflow sweep status`` on a 3,000-trial sweep against ``python -c 'import mlflow'``.

Target: status ≤ import mlflow + 1 s (medians). The sweep lives in a fresh sqlite store in a
temporary directory: the real ``init``, then trials written into its ledger with the Ledger API
(status reads only the ledger and the parent run; ``--child-runs`` makes real child runs too),
plus heartbeat records of agents that exited and agents that died. Each repeat runs the real CLI
in a subprocess, alternating with ``import mlflow``, so both see the same machine load.

    nice -n 10 python scripts/bench_status.py                    # 3,000 trials, median of 7
    python scripts/bench_status.py --trials 300 --repeats 3 --profile
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_finalize  # noqa: E402  (same directory: the sweep builder is shared)

TARGET_EXTRA_SECONDS = 1.0


def main(argv: list[str] | None = None) -> int:
    """Build the sweep, time status and ``import mlflow`` alternately, print medians and the verdict."""
    args = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-status-") as tmp:
        root = Path(args.dir or tmp)
        root.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "PYTHONUNBUFFERED": "1",
               "MLFLOW_DISABLE_TELEMETRY": "true",
               "MLFLOW_SWEEP_HEARTBEAT_TIMEOUT": "1"}  # the agents that did not say they exited are dead
        env.pop("MLFLOW_SWEEP_LEDGER_DIR", None)
        sweep_id = _build(root, env, args.trials, args.child_runs)
        command = ["status"] + (["--sweep-id", sweep_id] if not args.latest else [])
        if args.profile:
            return _profile(root, env, command)
        print(_run(root, env, [sys.executable, "-m", "mlflow_sweep", *command]).stdout)
        status, baseline = [], []
        for _ in range(args.repeats):
            baseline.append(_timed(root, env, [sys.executable, "-c", "import mlflow"]))
            status.append(_timed(root, env, [sys.executable, "-m", "mlflow_sweep", *command]))
        return _report(status, baseline, args.trials)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--latest", action="store_true", help="time 'status' without --sweep-id")
    parser.add_argument("--child-runs", action="store_true", help="also create a real MLflow child run per trial")
    parser.add_argument("--profile", action="store_true", help="run status once under cProfile and print the top")
    parser.add_argument("--dir", help="build the store here and keep it (default: a temporary directory)")
    return parser


def _build(root: Path, env: dict[str, str], trials: int, child_runs: bool) -> str:
    """The real init, then ``trials`` finished trials and the heartbeats of 4 agents (2 exited, 2 dead)."""
    (root / "sweep.yaml").write_text(bench_finalize.CONFIG.replace("run_cap: 1000", f"run_cap: {trials}"))
    proc = _run(root, env, [sys.executable, "-m", "mlflow_sweep", "init", "sweep.yaml"])
    sweep_id = proc.stdout.strip().splitlines()[-1].rsplit(" ", 1)[1]
    started = time.perf_counter()
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
            f"import bench_finalize as b, bench_status as s; b._write_trials({sweep_id!r}, {trials}, {child_runs}); "
            f"s._write_agents({sweep_id!r})")
    subprocess.run([sys.executable, "-c", code], cwd=root, env=env, check=True)
    print(f"sweep {sweep_id}: {trials} finished trials written in {time.perf_counter() - started:.1f} s")
    return sweep_id


def _write_agents(sweep_id: str) -> None:
    """Heartbeats of agents long gone: two that said they exited, two that went silent."""
    from mlflow import MlflowClient

    from mlflow_sweep.ledger import Ledger

    ledger = Ledger(MlflowClient().get_run(sweep_id).data.tags["sweep.ledger_dir"])
    for k in range(4):
        info = {"host": "bench-node", "pid": 1000 + k, "trial": None}
        ledger.heartbeat(f"bench-node-{1000 + k}", {**info, **({"stopped": True} if k < 2 else {})})


def _run(root: Path, env: dict[str, str], argv: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def _timed(root: Path, env: dict[str, str], argv: list[str]) -> float:
    started = time.perf_counter()
    _run(root, env, argv)
    return time.perf_counter() - started


def _profile(root: Path, env: dict[str, str], command: list[str]) -> int:
    """cProfile one status run (imports included) and print the 25 most expensive calls by cumulative time."""
    out = root / "status.prof"
    _run(root, env, [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "mlflow_sweep", *command])
    import pstats

    pstats.Stats(str(out)).sort_stats("cumulative").print_stats(25)
    return 0


def _report(status: list[float], baseline: list[float], trials: int) -> int:
    s, b = statistics.median(status), statistics.median(baseline)
    print("python -c 'import mlflow' (s): " + ", ".join(f"{t:.2f}" for t in baseline))
    print("mlflow sweep status       (s): " + ", ".join(f"{t:.2f}" for t in status))
    ok = s - b <= TARGET_EXTRA_SECONDS
    print(f"median status {s:.2f} s, import mlflow {b:.2f} s: +{s - b:.2f} s on {trials} trials "
          f"(target ≤ +{TARGET_EXTRA_SECONDS:.0f} s): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
