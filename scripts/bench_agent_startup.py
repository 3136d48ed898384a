"""Agent start-up: command typed -> first trial launched, against ``import mlflow`` (target: ≤ +1 s).

On a fresh sqlite store in a temp directory, starts ``mlflow sweep run --count 1`` on a sweep
whose command records the moment it starts, and subtracts the moment the agent was launched.
Prints the median of N runs next to the median of ``python -c 'import mlflow'`` and of
``python -c 'import mlflow; MlflowClient(uri).get_run(id)'`` (the floor for any MLflow client
on an sqlite store). With --server, also against a real ``mlflow server`` on a free loopback
port (MLflow's REST store needs no SQLAlchemy in the agent). With --peer VENV, times the
published mlflow-sweep 0.1.0 the same way.

    python scripts/bench_agent_startup.py [--runs 5] [--server] [--peer /path/to/venv]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

STAMP = "python3 -c 'import time; print(time.time())' > started"


SERVER_URI: str | None = None  # set by --server


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_TRACKING_URI=SERVER_URI or f"sqlite:///{root / 'mlflow.db'}", MLFLOW_DISABLE_TELEMETRY="true")
    if SERVER_URI:
        env["MLFLOW_SWEEP_LEDGER_DIR"] = str(root / "ledgers")
    return env


@contextlib.contextmanager
def mlflow_server() -> Iterator[str]:
    """A real ``mlflow server`` on a free loopback port, with proxied artifacts in a temp dir."""
    import urllib.request

    with tempfile.TemporaryDirectory() as tmp, socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                                 "--backend-store-uri", f"sqlite:///{tmp}/backend.db",
                                 "--artifacts-destination", f"{tmp}/artifacts", "--workers", "1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                with contextlib.suppress(OSError):
                    urllib.request.urlopen(f"{url}/health", timeout=1)
                    break
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            proc.wait()


def _init(root: Path, launcher: list[str]) -> str:
    (root / "sweep.yaml").write_text(f"method: random\nrun_cap: 5\ncommand: {STAMP} ${{x}}\n"
                                     "parameters:\n  x: {min: 0.0, max: 1.0}\n")
    out = subprocess.run([*launcher, "init", "sweep.yaml"], cwd=root, env=_env(root),
                         capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1].rsplit(" ", 1)[1]


def first_trial_latency(launcher: list[str], run_args: list[str]) -> tuple[float, float]:
    """Seconds from launching the agent to its first trial's command starting; and the store floor."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sweep_id = _init(root, launcher)
        start = time.time()
        proc = subprocess.Popen([*launcher, "run", *run_args], cwd=root, env=_env(root),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not (root / "started").exists() or not (root / "started").read_text().strip():
            if proc.poll() is not None and not (root / "started").exists():
                raise SystemExit(f"agent exited {proc.returncode} before its first trial")
            time.sleep(0.01)
        latency = float((root / "started").read_text()) - start
        proc.terminate()
        proc.wait()
        floor = _timed([sys.executable, "-c", "import sys, mlflow; mlflow.MlflowClient(sys.argv[1]).get_run(sys.argv[2])",
                        _env(root)["MLFLOW_TRACKING_URI"], sweep_id], root)
    return latency, floor


def _timed(argv: list[str], cwd: Path | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--peer", type=Path, help="a venv with mlflow-sweep==0.1.0 installed")
    parser.add_argument("--server", action="store_true", help="also measure against a real mlflow server")
    args = parser.parse_args()

    ours = [first_trial_latency([sys.executable, "-m", "mlflow_sweep"], ["--count", "1"]) for _ in range(args.runs)]
    imports = [_timed([sys.executable, "-c", "import mlflow"]) for _ in range(args.runs)]
    latency = statistics.median(o[0] for o in ours)
    floor = statistics.median(o[1] for o in ours)
    base = statistics.median(imports)
    print(f"python -c 'import mlflow': {base:.2f} s; import mlflow + one get_run on sqlite: {floor:.2f} s")
    print(f"mlflow-sweep agent, typed -> first trial launched: {latency:.2f} s "
          f"({latency - base:+.2f} s vs import mlflow, target <= +1.00; {latency - floor:+.2f} s vs the sqlite floor)")
    if args.server:
        global SERVER_URI
        with mlflow_server() as SERVER_URI:
            remote = [first_trial_latency([sys.executable, "-m", "mlflow_sweep"], ["--count", "1"])
                      for _ in range(args.runs)]
            SERVER_URI = None
        latency_remote = statistics.median(o[0] for o in remote)
        print(f"with an mlflow server: first trial launched at {latency_remote:.2f} s "
              f"({latency_remote - base:+.2f} s vs import mlflow; one get_run: {statistics.median(o[1] for o in remote):.2f} s)")
    if args.peer:
        theirs = statistics.median(first_trial_latency([str(args.peer / "bin" / "mlflow"), "sweep"], [])[0]
                                   for _ in range(args.runs))
        print(f"published mlflow-sweep 0.1.0: {theirs:.2f} s ({theirs / latency:.1f}x ours)")


if __name__ == "__main__":
    main()
