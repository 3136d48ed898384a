#!/usr/bin/env python
"""Time ``mlflow sweep finalize`` on a sweep of 1,000 completed trials (target: ≤ 30 s median).

The sweep has 5 parameters, one of them categorical, and lives in a fresh sqlite store in a
temporary directory: the real ``init``, then finished trials written into its ledger with the
Ledger API (finalize reads only the ledger, so child runs are optional: ``--child-runs``). Each
repeat runs the real CLI in a subprocess, so the time includes interpreter start and imports.

    python scripts/bench_finalize.py                  # 1,000 trials, median of 3
    python scripts/bench_finalize.py --trials 200 --repeats 1 --keep
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

TARGET_SECONDS = 30.0
CONFIG = """\
command: echo ${learning_rate} ${batch_size} ${optimizer} ${dropout} ${weight_decay}
method: random
run_cap: 1000
seed: 1
metric: {name: val_loss, goal: minimize}
parameters:
  learning_rate: {distribution: log_uniform_values, min: 0.00001, max: 0.1}
  batch_size: {distribution: int_uniform, min: 16, max: 256}
  optimizer: {values: [adam, sgd, rmsprop, adagrad]}
  dropout: {min: 0.0, max: 0.5}
  weight_decay: {distribution: log_uniform_values, min: 0.000001, max: 0.01}
"""


def main(argv: list[str] | None = None) -> int:
    """Build the sweep, time finalize ``--repeats`` times, print the times and the median."""
    args = _parser().parse_args(argv)
    if args.keep and not args.dir:
        args.dir = str(Path("bench-finalize").resolve())
    with tempfile.TemporaryDirectory(prefix="bench-finalize-") as tmp:
        root = Path(args.dir or tmp)
        root.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "PYTHONUNBUFFERED": "1"}
        env.pop("MLFLOW_SWEEP_LEDGER_DIR", None)
        sweep_id = _init(root, env)
        started = time.perf_counter()
        _fill(root, env, sweep_id, args.trials, args.child_runs)
        print(f"sweep {sweep_id}: {args.trials} finished trials written in {time.perf_counter() - started:.1f} s")
        times = [_time_finalize(root, env, sweep_id, i == 0) for i in range(args.repeats)]
        median = statistics.median(times)
        print("finalize times (s): " + ", ".join(f"{t:.2f}" for t in times))
        print(f"median {median:.2f} s for {args.trials} trials (target ≤ {TARGET_SECONDS:.0f} s): "
              f"{'PASS' if median <= TARGET_SECONDS else 'FAIL'}")
        if args.dir:
            print(f"store kept in {root}")
        return 0 if median <= TARGET_SECONDS else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child-runs", action="store_true", help="also create a real MLflow child run per trial")
    parser.add_argument("--dir", help="build the store here and keep it (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="same as --dir ./bench-finalize")
    return parser


def _cli(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "mlflow_sweep", *args], cwd=root, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"mlflow_sweep {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def _init(root: Path, env: dict[str, str]) -> str:
    (root / "sweep.yaml").write_text(CONFIG)
    return _cli(root, env, "init", "sweep.yaml").stdout.strip().splitlines()[-1].rsplit(" ", 1)[1]


def _fill(root: Path, env: dict[str, str], sweep_id: str, n: int, child_runs: bool) -> None:
    """Write n finished trials into the ledger (in a child process that uses this store)."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
            f"import bench_finalize as b; b._write_trials({sweep_id!r}, {n}, {child_runs})")
    subprocess.run([sys.executable, "-c", code], cwd=root, env=env, check=True)


def _write_trials(sweep_id: str, n: int, child_runs: bool) -> None:
    """Claim, start and complete n trials whose loss depends mostly on learning rate and optimizer."""
    from mlflow import MlflowClient

    from mlflow_sweep.ledger import Ledger
    from mlflow_sweep.trials import Proposal, TrialState

    client = MlflowClient()
    parent = client.get_run(sweep_id)
    ledger = Ledger(parent.data.tags["sweep.ledger_dir"])
    rng = np.random.default_rng(0)
    effect = {"adam": 0.0, "sgd": 0.8, "rmsprop": 0.3, "adagrad": 0.5}
    for _ in range(n):
        params = {"learning_rate": float(10 ** rng.uniform(-5, -1)), "batch_size": int(rng.integers(16, 257)),
                  "optimizer": str(rng.choice(list(effect))), "dropout": float(rng.uniform(0, 0.5)),
                  "weight_decay": float(10 ** rng.uniform(-6, -2))}
        loss = ((math.log10(params["learning_rate"]) + 3) ** 2 + effect[params["optimizer"]]
                + 0.2 * params["dropout"] + 0.05 * rng.normal())
        trial = ledger.claim(lambda _state, p=params: Proposal(params=p), "bench-agent").trial
        run_id = uuid.uuid4().hex
        if child_runs:
            run_id = client.create_run(parent.info.experiment_id,
                                       tags={"mlflow.parentRunId": sweep_id}).info.run_id
            client.set_terminated(run_id, "FINISHED")
        ledger.start(trial.index, run_id)
        ledger.complete(trial.index, TrialState.FINISHED, loss)


def _time_finalize(root: Path, env: dict[str, str], sweep_id: str, show: bool) -> float:
    started = time.perf_counter()
    proc = _cli(root, env, "finalize", "--sweep-id", sweep_id)
    elapsed = time.perf_counter() - started
    if show:
        print(proc.stdout)
    return elapsed


if __name__ == "__main__":
    sys.exit(main())
