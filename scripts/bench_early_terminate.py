"""Wall-clock saved by hyperband ``early_terminate``, and the best metric kept.

Runs the same sweep twice on fresh sqlite stores in temp directories — once without and once
with ``early_terminate: {type: hyperband, min_iter: 3, eta: 3}`` — each by N agents in parallel
(default 2) through the real CLI. The trial command is examples/train_steps.py, whose loss
curves never cross (a better learning rate is better at every step) and diverge for lr > 1. The
sweep is ``random`` with a fixed seed, so both runs draw the same trials, in the same order.

Printed per run: wall clock (agents started -> all exited), the summed trial time (child runs'
start -> end, which load on a shared machine disturbs less), logged iterations, trials stopped
early by band, and the best trial (lr, loss). The best metric must be the same in both runs:
the best trial is never below a cut, because no trial is better than it at any band.

    python scripts/bench_early_terminate.py [--run-cap 12] [--steps 27] [--sleep 0.2] [--agents 2]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
TRAIN = REPO / "examples" / "train_steps.py"
EARLY_TERMINATE = {"type": "hyperband", "min_iter": 3, "eta": 3}


def _env(root: Path, interval: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    env["MLFLOW_SWEEP_EARLY_TERMINATE_INTERVAL"] = str(interval)
    return env


def _config(args: argparse.Namespace, early: bool) -> dict:
    config = {
        "method": "random", "seed": args.seed, "run_cap": args.run_cap,
        "metric": {"name": "loss", "goal": "minimize"},
        "command": f"${{interpreter}} {TRAIN} --lr ${{lr}} --steps {args.steps} --sleep {args.sleep}",
        "parameters": {"lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 10.0}},
    }
    if early:
        config["early_terminate"] = EARLY_TERMINATE
    return config


def run_sweep(args: argparse.Namespace, early: bool) -> dict:
    """Init the sweep, run the agents, and collect what happened from the store."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = _env(root, args.interval)
        (root / "sweep.yaml").write_text(yaml.safe_dump(_config(args, early), sort_keys=False))
        out = subprocess.run([sys.executable, "-m", "mlflow_sweep", "init", "sweep.yaml"], cwd=root, env=env,
                             capture_output=True, text=True, check=True).stdout
        sweep_id = out.strip().splitlines()[-1].rsplit(" ", 1)[1]
        start = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-m", "mlflow_sweep", "run", "--sweep-id", sweep_id],
                                  cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for _ in range(args.agents)]
        codes = [p.wait() for p in procs]
        wall = time.perf_counter() - start
        return {"codes": codes, "wall": wall, **_collect(root, sweep_id)}


def _collect(root: Path, sweep_id: str) -> dict:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_run(sweep_id).info.experiment_id
    runs = client.search_runs([exp], filter_string=f"tags.`mlflow.parentRunId` = '{sweep_id}'", max_results=1000)
    trials = []
    for run in runs:
        losses = [m.value for m in client.get_metric_history(run.info.run_id, "loss")]
        trials.append({"lr": float(run.data.params["lr"]), "status": run.info.status, "iterations": len(losses),
                       "loss": min(losses) if losses else float("inf"),
                       "seconds": (run.info.end_time - run.info.start_time) / 1000,
                       "band": run.data.tags.get("sweep.stopped_early")})
    best = min(trials, key=lambda t: t["loss"])
    return {"trials": trials, "best": best, "trial_seconds": sum(t["seconds"] for t in trials),
            "iterations": sum(t["iterations"] for t in trials),
            "stopped": Counter(int(t["band"]) for t in trials if t["band"] is not None)}


def _report(name: str, result: dict) -> None:
    stopped = ", ".join(f"{n} at iteration {band}" for band, n in sorted(result["stopped"].items())) or "none"
    best = result["best"]
    print(f"{name:>22}: wall {result['wall']:6.1f} s | trial time {result['trial_seconds']:6.1f} s | "
          f"{len(result['trials'])} trials, {result['iterations']} iterations logged | stopped early: {stopped} | "
          f"best lr={best['lr']:.4g} loss={best['loss']:.6f} | agent exit codes {result['codes']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-cap", type=int, default=12)
    parser.add_argument("--steps", type=int, default=27, help="logged values per full trial")
    parser.add_argument("--sleep", type=float, default=0.2, help="seconds per step")
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--interval", type=float, default=0.5, help="MLFLOW_SWEEP_EARLY_TERMINATE_INTERVAL")
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args()

    print(f"{args.run_cap} trials of {args.steps} steps x {args.sleep} s on {args.agents} agents; "
          f"early_terminate {EARLY_TERMINATE}, checked every {args.interval} s; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    without = run_sweep(args, early=False)
    _report("without early_terminate", without)
    with_et = run_sweep(args, early=True)
    _report("with early_terminate", with_et)
    same = with_et["best"]["lr"] == without["best"]["lr"] and with_et["best"]["loss"] == without["best"]["loss"]
    print(f"wall clock saved: {1 - with_et['wall'] / without['wall']:.0%}; trial time saved: "
          f"{1 - with_et['trial_seconds'] / without['trial_seconds']:.0%}; best metric the same: {same}")
    if not same or any(with_et["codes"] + without["codes"]):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
