"""Start-up cost of the CLI: ``mlflow sweep --help`` must be no slower than 1.5x ``mlflow --help``.

Times, through the installed ``mlflow`` launcher next to this Python, the median of N runs of
``mlflow --help`` and ``mlflow sweep --help``, and ``python -c 'import mlflow'`` for scale; prints
the ratio and exits 1 when it is over the target. One warm-up run of each fills the disk cache.

    python scripts/bench_startup.py [--runs 5] [--target 1.5]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _launcher() -> str:
    beside = Path(sys.executable).parent / "mlflow"
    found = str(beside) if beside.exists() else shutil.which("mlflow")
    if not found:
        raise SystemExit("no 'mlflow' launcher next to this Python or on PATH; pip install -e . first")
    return found


def _median_seconds(argv: list[str], runs: int, cwd: str, env: dict[str, str]) -> float:
    subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=True)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per command (median)")
    parser.add_argument("--target", type=float, default=1.5, help="largest acceptable ratio")
    args = parser.parse_args()

    mlflow = _launcher()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    commands = {
        "mlflow --help": [mlflow, "--help"],
        "mlflow sweep --help": [mlflow, "sweep", "--help"],
        "python -c 'import mlflow'": [sys.executable, "-c", "import mlflow"],
    }
    with tempfile.TemporaryDirectory() as cwd:  # nothing lands in the working directory
        medians = {name: _median_seconds(argv, args.runs, cwd, env) for name, argv in commands.items()}
    for name, seconds in medians.items():
        print(f"{name:28s} {seconds * 1000:8.0f} ms (median of {args.runs})")
    ratio = medians["mlflow sweep --help"] / medians["mlflow --help"]
    verdict = "ok" if ratio <= args.target else "TOO SLOW"
    print(f"ratio mlflow sweep --help / mlflow --help: {ratio:.2f} (target <= {args.target}) {verdict}")
    return 0 if ratio <= args.target else 1


if __name__ == "__main__":
    raise SystemExit(main())
