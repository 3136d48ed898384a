"""Function trials (Python API): the agent's overhead per in-process trial (target: ≤ 20 ms), against
command trials.

Each measurement runs in a fresh Python process on a fresh sqlite store in a temp directory:
  1. a no-op function, 1 agent, N trials (default 1,000): the overhead per trial is the gap
     between consecutive child runs' start times (the function itself takes ~0); the median,
     and the median of the last 100 trials against the first 100 (flat: ratio near 1);
  2. the same sweep as command trials of a no-op command (``true``): the same gaps, less the
     time to launch ``true`` through the shell; for both, the agent process's CPU time per trial
     (less sensitive than the gaps to other jobs on a shared machine) and the load average;
  3. examples/python_api.py end to end (a 20-trial bayes sweep of a scikit-learn SVM, then
     finalize), against the same sweep whose trials are commands running the same ``train``
     in a new Python process each (``python bench_function.py --trial``): wall clock of the
     whole script, and seconds per trial inside the agent.

A fourth mode times each step of the agent loop for function trials (where the time goes):

    nice -n 10 python scripts/bench_function.py [--trials 1000] [--repeats 3] [--skip-example]
    nice -n 10 python scripts/bench_function.py --parts 400
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "python_api.py"
NOOP_SWEEP = {"method": "random", "command": "true ${x}", "parameters": {"x": {"min": 0.0, "max": 1.0}}}


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    return env


def _python(root: Path, *args: str) -> float:
    """Run this script in a fresh process (one of the modes below); return its wall clock."""
    start = time.perf_counter()
    subprocess.run([sys.executable, __file__, *args], cwd=root, env=_env(root), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _child_starts(root: Path) -> list[float]:
    """Start times (s) of every child run in the store, in order."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    parent = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                filter_string="tags.sweep = 'True'", max_results=1)[0]
    runs = client.search_runs([parent.info.experiment_id], max_results=50000, order_by=["attributes.start_time ASC"],
                              filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    return [r.info.start_time / 1000 for r in runs]


def command_time(repeats: int = 200) -> float:
    """Median seconds to launch and reap ``true`` through the shell, as the agent does."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(["/bin/sh", "-c", "true 0.5"], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def overhead(kind: str, trials: int, subtract: float) -> dict[str, float]:
    """One sweep of no-op trials (``function`` or ``command``): median gap and last-100/first-100."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        wall = _python(root, f"--{kind}-sweep", str(trials))
        starts = _child_starts(root)
        cpu = json.loads((root / "cpu.json").read_text())
        clocks = json.loads((root / "clocks.json").read_text()) if kind == "function" else []
    gaps = [b - a - subtract for a, b in zip(starts, starts[1:])]
    first, last = statistics.median(gaps[:99]), statistics.median(gaps[-100:])
    result = {"trials": len(starts), "wall": wall, "median": statistics.median(gaps), "p10": _p10(gaps),
              "first100": first, "last100": last, "ratio": last / first, "cpu": cpu, "load": os.getloadavg()[0]}
    if clocks:  # CPU per trial, first 100 and last 100: flatness that other jobs' load blurs less
        cpu_gaps = [b - a for a, b in zip(clocks, clocks[1:])]
        result.update(cpu_first100=statistics.median(cpu_gaps[:99]), cpu_last100=statistics.median(cpu_gaps[-100:]),
                      cpu_p10_first100=_p10(cpu_gaps[:99]), cpu_p10_last100=_p10(cpu_gaps[-100:]))
    return result


def _p10(values: list[float]) -> float:
    """The 10th percentile: other jobs on a shared machine only ever add time, so this is the trial's own cost."""
    return statistics.quantiles(values, n=10)[0]


def example(kind: str) -> dict[str, float]:
    """examples/python_api.py as it is (``function``), or with command trials (``command``)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        wall = _python(root, "--example-as-commands") if kind == "command" else _run_example(root)
        starts = _child_starts(root)
    return {"trials": len(starts), "wall": wall, "per_trial": (starts[-1] - starts[0]) / (len(starts) - 1)}


def _run_example(root: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, str(EXAMPLE)], cwd=root, env=_env(root), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


# --- modes run in a fresh process ------------------------------------------------------------


def _function_sweep(trials: int) -> None:
    clocks: list[float] = []
    _noop_sweep(trials, lambda: clocks.append(time.process_time()))
    Path("clocks.json").write_text(json.dumps(clocks))  # the agent's CPU time at each trial's call


def _command_sweep(trials: int) -> None:
    _noop_sweep(trials, None)


def _noop_sweep(trials: int, function: Any) -> None:
    """Run the no-op sweep; write the agent process's CPU seconds per trial to ``cpu.json``."""
    import mlflow_sweep

    sweep_id = mlflow_sweep.sweep({**NOOP_SWEEP, "run_cap": trials})
    start = time.process_time()
    mlflow_sweep.agent(sweep_id, function=function)
    Path("cpu.json").write_text(json.dumps((time.process_time() - start) / trials))


def _example_as_commands() -> None:
    import mlflow_sweep

    sys.path.insert(0, str(EXAMPLE.parent))
    from python_api import CONFIG

    config = {**CONFIG, "command": f"${{interpreter}} {Path(__file__).resolve()} --trial"}
    sweep_id = mlflow_sweep.sweep(config, experiment_name="python-api-example")
    mlflow_sweep.agent(sweep_id)
    mlflow_sweep.finalize(sweep_id)


def _parts(trials: int) -> None:
    """Where a function trial's time goes: each step of the agent loop timed over ``trials`` no-op trials."""
    import collections
    import functools
    import io

    import mlflow_sweep
    from mlflow_sweep import lifecycle, runners, tracking
    from mlflow_sweep.ledger import Ledger

    times: dict[str, list[float]] = collections.defaultdict(list)

    def timed(owner: Any, name: str, label: str) -> None:
        func = getattr(owner, name)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                times[label].append(time.perf_counter() - start)

        setattr(owner, name, wrapper)

    for name in ("start_trial", "settle_trial", "end_trial"):
        timed(tracking, name, f"tracking.{name} (MLflow)")
    for name in ("claim", "start", "complete"):
        timed(Ledger, name, f"Ledger.{name} (one event)")
    timed(lifecycle, "reap_dead", "lifecycle.reap_dead")
    timed(runners.FunctionRunner, "run", "FunctionRunner.run (the runner's own work)")
    sweep_id = mlflow_sweep.sweep({**NOOP_SWEEP, "run_cap": trials})
    sys.stderr, saved = io.StringIO(), sys.stderr
    start = time.perf_counter()
    mlflow_sweep.agent(sweep_id, function=lambda: None)
    wall = time.perf_counter() - start
    sys.stderr = saved
    print(f"{trials} no-op function trials, load {os.getloadavg()[0]:.1f}: {wall / trials * 1000:.1f} ms per trial")
    for label, values in times.items():
        print(f"  {label:45s} median {statistics.median(values) * 1000:6.2f} ms, p10 {_p10(values) * 1000:6.2f} ms")


def _trial() -> None:
    """One command trial of the example: the same ``train``, its params from the agent's params file."""
    import mlflow_sweep

    sys.path.insert(0, str(EXAMPLE.parent))
    from python_api import train

    train(mlflow_sweep.params())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-example", action="store_true")
    parser.add_argument("--skip-overhead", action="store_true", help="only the example, function against command")
    parser.add_argument("--parts", type=int, metavar="N", help="only time each step of N function trials, in this process")
    parser.add_argument("--function-sweep", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--command-sweep", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--example-as-commands", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--trial", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.parts:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ.update(_env(Path(tmp)))
            os.chdir(tmp)
            return _parts(args.parts)
    if args.function_sweep:
        return _function_sweep(args.function_sweep)
    if args.command_sweep:
        return _command_sweep(args.command_sweep)
    if args.example_as_commands:
        return _example_as_commands()
    if args.trial:
        return _trial()

    results: dict[str, list] = {"function": [], "command": [], "example_function": [], "example_command": []}
    cmd = command_time()
    print(f"launching `true` through the shell: {cmd * 1000:.1f} ms (subtracted from command trials)")
    for repeat in range(args.repeats):
        for kind in () if args.skip_overhead else ("function", "command"):
            r = overhead(kind, args.trials, 0.0 if kind == "function" else cmd)
            results[kind].append(r)
            print(f"[{repeat + 1}] {kind} trials, {r['trials']} trials: median overhead {r['median'] * 1000:.1f} ms "
                  f"(p10 {r['p10'] * 1000:.1f} ms), "
                  f"first 100 {r['first100'] * 1000:.1f} ms, last 100 {r['last100'] * 1000:.1f} ms "
                  f"(x{r['ratio']:.2f}), agent CPU {r['cpu'] * 1000:.1f} ms per trial, wall {r['wall']:.1f} s, "
                  f"load {r['load']:.1f}", flush=True)
            if "cpu_first100" in r:
                print(f"    agent CPU per trial: first 100 {r['cpu_first100'] * 1000:.1f} ms, last 100 "
                      f"{r['cpu_last100'] * 1000:.1f} ms (x{r['cpu_last100'] / r['cpu_first100']:.2f}); p10 "
                      f"{r['cpu_p10_first100'] * 1000:.1f} / {r['cpu_p10_last100'] * 1000:.1f} ms", flush=True)
        if not args.skip_example:
            for kind in ("function", "command"):
                r = example(kind)
                results[f"example_{kind}"].append(r)
                print(f"[{repeat + 1}] example, {kind} trials: {r['trials']} trials, wall {r['wall']:.1f} s, "
                      f"{r['per_trial']:.3f} s per trial", flush=True)
    summary = {kind: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for kind, rs in results.items() if rs}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
