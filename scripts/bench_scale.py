#!/usr/bin/env python
"""The claim protocol at scale: many light agents on one ledger, with and without the claim lock.

A light agent is a separate process that runs the agent's claim loop against the real ledger
(reap, claim with the sweep's policy, start, end) with no MLflow and a no-op trial, so hundreds of
them fit on one machine. Each reports its claims, its ``decide`` calls, the races it lost and
the latency of each claim (from asking to holding a trial, lock wait included).

    python scripts/bench_scale.py claims --agents 64 --trials 2000             # lock on, then off
    python scripts/bench_scale.py cold --sizes 100,1000,20000                  # files and time of a cold read
    sudo python scripts/bench_scale.py netfs --agents 128 --trials 10000       # 2 hosts on the sshfs bed

``claims`` prints one row per lock setting: claims per second, lost races and decide calls per
claimed trial, p50/p99 claim latency, and whether the sweep is exact (trials 0..N-1, each once).
``cold`` builds ledgers of each size with the real Ledger API (kept in --dir for reuse) and times
a cold read by a new process, counting the files it opens. ``netfs`` runs the light agents of
``claims`` on two "hosts" (own hostname, PIDs and sshfs mount each) sharing the ledger over the
network filesystem of tests/netfs_hosts.sh.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CONFIG = {"method": "random", "command": "true", "metric": {"name": "loss", "goal": "minimize"},
          "parameters": {"x": {"min": 0.0, "max": 1.0}, "opt": {"values": ["adam", "sgd"]}}}


def create(directory: Path, trials: int) -> None:
    """A new ledger for a random sweep of ``trials`` no-op trials."""
    from mlflow_sweep.ledger import Ledger

    Ledger.create(directory, {"config": {**CONFIG, "run_cap": trials}, "seed": 7, "sweep_id": "bench-scale"})


def light_agent(directory: Path, agent_id: str, lock: bool, barrier: Path, out: Path) -> None:
    """Claim, start and end trials until the sweep is done; write what happened to ``out`` (JSON)."""
    from mlflow_sweep import policy
    from mlflow_sweep.config import config_from_dict
    from mlflow_sweep.ledger import Ledger
    from mlflow_sweep.trials import TrialState

    ledger = Ledger(directory, lock=lock)
    header = ledger.state().header
    config, seed = config_from_dict(header["config"], "bench"), int(header["seed"])
    decides = 0

    def decide(state):
        nonlocal decides
        decides += 1
        return policy.next_step(config, state.trials, seed, state.controls)

    while not barrier.exists():
        time.sleep(0.001)
    claims, latencies, started = [], [], time.time()
    while True:
        asked = time.perf_counter()
        ledger.reap(120.0)
        claimed = ledger.claim(decide, agent_id)
        if claimed.trial is None:
            if isinstance(claimed.value, policy.Done):
                break
            time.sleep(0.05)
            continue
        latencies.append(time.perf_counter() - asked)
        claims.append(claimed.trial.index)
        ledger.start(claimed.trial.index, f"run-{agent_id}-{claimed.trial.index}")
        ledger.complete(claimed.trial.index, TrialState.FINISHED, claimed.trial.params["x"])
    out.write_text(json.dumps({"agent": agent_id, "claims": claims, "decides": decides, "races": ledger.races_lost,
                               "latencies": latencies, "started": started, "ended": time.time()}))


def host(directory: Path, agents: int, lock: bool, barrier: Path, out: Path, name: str) -> int:
    """Fork ``agents`` light agents from this warm process, wait for them; the worst exit status."""
    from mlflow_sweep import config, ledger, policy, samplers  # noqa: F401  imported once, inherited

    out.mkdir(parents=True, exist_ok=True)
    pids = []
    for i in range(agents):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                light_agent(directory, f"{name}-{i}", lock, barrier, out / f"{name}-{i}.json")
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    return max(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids)


def summarize(out: Path, trials: int) -> dict:
    """Figures of one run from its agents' reports."""
    reports = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    claims = sorted(i for r in reports for i in r["claims"])
    latencies = sorted(x for r in reports for x in r["latencies"])
    seconds = max(r["ended"] for r in reports) - min(r["started"] for r in reports)
    n = max(len(claims), 1)
    return {"agents": len(reports), "claimed": len(claims), "exact": claims == list(range(trials)),
            "claims_per_s": len(claims) / seconds, "races_per_claim": sum(r["races"] for r in reports) / n,
            "decides_per_claim": sum(r["decides"] for r in reports) / n,
            "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else float("nan"),
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else float("nan"),
            "seconds": seconds}


def _row(label: str, figures: dict) -> str:
    return (f"{label:<10} {figures['agents']:>6} {figures['claimed']:>8} {str(figures['exact']):>6} "
            f"{figures['claims_per_s']:>9.1f} {figures['races_per_claim']:>8.3f} {figures['decides_per_claim']:>9.3f} "
            f"{figures['p50_ms']:>8.1f} {figures['p99_ms']:>9.1f} {figures['seconds']:>8.1f}")


HEADER = (f"{'lock':<10} {'agents':>6} {'claimed':>8} {'exact':>6} {'claims/s':>9} {'races/cl':>8} "
          f"{'decides/cl':>9} {'p50 ms':>8} {'p99 ms':>9} {'seconds':>8}")


def claims(args: argparse.Namespace) -> int:
    """Light agents on one host, with the lock and without it, side by side."""
    rows, ok = [], True
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        for lock in args.lock:
            root = Path(args.dir or tmp) / f"claims-lock-{lock}"
            create(root / "ledger", args.trials)
            proc = subprocess.Popen([sys.executable, __file__, "host", str(root / "ledger"), "--agents",
                                     str(args.agents), "--lock", lock, "--barrier", str(root / "go"),
                                     "--out", str(root / "out"), "--name", "local"])
            time.sleep(args.settle)
            (root / "go").touch()
            code = proc.wait()
            figures = summarize(root / "out", args.trials)
            ok = ok and code == 0 and figures["exact"]
            rows.append(_row(lock, figures))
    print(f"{args.agents} light agents on one host, random sweep of {args.trials} no-op trials")
    print(HEADER)
    print("\n".join(rows))
    return 0 if ok else 1


def cold(args: argparse.Namespace) -> int:
    """Build ledgers of each size once; time a cold read by a fresh process, then a real agent and status on each."""
    root = Path(args.dir or tempfile.mkdtemp(prefix="bench-scale-cold-"))
    print(f"cold start on sweeps of each size (medians of {args.repeats}); ledgers kept in {root}")
    print(f"{'trials':>7} {'events':>7} {'files read':>10} {'read s':>8} {'agent start s':>14} {'status s':>9}")
    base = None
    for size in args.sizes:
        directory = root / f"sweep-{size}"
        if not (directory / "ledger.jsonl").exists():
            _build(directory, size)
        reads = [_cold_read(directory) for _ in range(args.repeats)]
        sweep = _real_sweep(root / f"store-{size}", directory, size)
        agent = statistics.median(_agent_start(*sweep) for _ in range(args.repeats))
        status = statistics.median(_timed_status(*sweep) for _ in range(args.repeats))
        base = base or (agent, status)
        print(f"{size:>7} {reads[0]['events']:>7} {reads[0]['files']:>10} "
              f"{statistics.median(r['read'] for r in reads):>8.3f} {agent:>8.2f} ({agent / base[0]:.2f}x) "
              f"{status:>5.2f} ({status / base[1]:.2f}x)")
    return 0


def _real_sweep(store: Path, ledger: Path, size: int) -> tuple[Path, dict[str, str], str]:
    """A sweep in a fresh sqlite store whose ledger holds the ``size`` trials of ``ledger``: (dir, env, sweep id)."""
    import shutil

    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}", "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_SWEEP_LEDGER_DIR", None)
    marker = store / "started"
    if not (store / "sweep_id").exists():
        store.mkdir(parents=True, exist_ok=True)
        config = {**CONFIG, "run_cap": size + 1000, "command": f"date +%s.%N > {marker}"}
        (store / "sweep.json").write_text(json.dumps(config))
        init = subprocess.run([sys.executable, "-m", "mlflow_sweep", "init", str(store / "sweep.json")], env=env,
                              cwd=store, capture_output=True, text=True, check=True)
        sweep_id = init.stdout.strip().splitlines()[-1].rsplit(" ", 1)[1]
        from mlflow import MlflowClient

        target = Path(MlflowClient(env["MLFLOW_TRACKING_URI"]).get_run(sweep_id).data.tags["sweep.ledger_dir"])
        for part in ("events", "checkpoints"):  # the trials, under this sweep's own header
            if (ledger / part).exists():
                shutil.copytree(ledger / part, target / part, dirs_exist_ok=True)
        (store / "sweep_id").write_text(sweep_id)
    return store, env, (store / "sweep_id").read_text()


def _agent_start(store: Path, env: dict[str, str], sweep_id: str) -> float:
    """Seconds from starting ``mlflow sweep run --count 1`` to its trial's command running."""
    marker = store / "started"
    marker.unlink(missing_ok=True)
    began = time.time()
    subprocess.run([sys.executable, "-m", "mlflow_sweep", "run", "--sweep-id", sweep_id, "--count", "1"], env=env,
                   cwd=store, capture_output=True, check=True)
    return float(marker.read_text()) - began


def _timed_status(store: Path, env: dict[str, str], sweep_id: str) -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mlflow_sweep", "status", "--sweep-id", sweep_id], env=env, cwd=store,
                   capture_output=True, check=True)
    return time.perf_counter() - began


def _build(directory: Path, trials: int) -> None:
    """A ledger of ``trials`` finished trials written through the real Ledger API (checkpoints as agents make them)."""
    from mlflow_sweep.ledger import Ledger
    from mlflow_sweep.trials import Proposal, TrialState

    create(directory, trials)
    ledger = Ledger(directory, lock=False)
    for i in range(trials):
        trial = ledger.claim(lambda state, i=i: Proposal({"x": i / trials, "opt": "adam"}), "builder").trial
        ledger.start(trial.index, f"run-{i}")
        ledger.complete(trial.index, TrialState.FINISHED, i / trials)


COLD_READ = r"""
import json, os, sys, time
started = time.perf_counter()
from mlflow_sweep import journal
from mlflow_sweep.ledger import Ledger
opened = []
real = journal._read_whole
def counting(path, **options):
    opened.append(path)
    return real(path, **options)
journal._read_whole = counting
ready = time.perf_counter()
state = Ledger(sys.argv[1]).state()
done = time.perf_counter()
print(json.dumps({"files": len(opened), "events": state.applied, "read": done - ready, "process": done - started}))
"""


def _cold_read(directory: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", COLD_READ, str(directory)], capture_output=True, text=True,
                          check=True, cwd=REPO)
    return json.loads(proc.stdout)


def netfs(args: argparse.Namespace) -> int:
    """Light agents on two hosts of the sshfs bed, with the lock and without it."""
    script = REPO / "tests" / "netfs_hosts.sh"
    root = Path(args.dir or tempfile.mkdtemp(prefix="bench-scale-netfs-"))
    subprocess.run(["bash", str(script), "start", str(root)], check=True, capture_output=True)
    rows, ok = [], True
    try:
        for lock in args.lock:
            name = f"lock-{lock}"
            create(root / "export" / name, args.trials)
            barrier = root / f"go-{name}"
            hosts = [subprocess.Popen(["bash", str(script), "host", h, str(root), sys.executable, __file__, "host",
                                       str(root / "mnt" / name), "--agents", str(args.agents), "--lock", lock,
                                       "--barrier", str(barrier), "--out", str(root / f"out-{name}"), "--name", h],
                                      cwd=REPO) for h in ("hostA", "hostB")]
            time.sleep(args.settle)
            barrier.touch()
            codes = [h.wait() for h in hosts]
            figures = summarize(root / f"out-{name}", args.trials)
            ok = ok and codes == [0, 0] and figures["exact"]
            rows.append(_row(lock, figures))
    finally:
        subprocess.run(["bash", str(script), "stop", str(root)], capture_output=True)
    print(f"2 hosts x {args.agents} light agents on sshfs, random sweep of {args.trials} no-op trials")
    print(HEADER)
    print("\n".join(rows))
    return 0 if ok else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("claims", "netfs"):
        sub = commands.add_parser(name)
        sub.add_argument("--agents", type=int, default=64 if name == "claims" else 128)
        sub.add_argument("--trials", type=int, default=2000 if name == "claims" else 10000)
        sub.add_argument("--lock", type=lambda text: text.split(","), default=["on", "off"],
                         help="lock settings to run, side by side: on,off")
        sub.add_argument("--settle", type=float, default=3.0, help="seconds for the agents to start before 'go'")
        sub.add_argument("--dir", help="keep the ledgers here (default: a temporary directory)")
    sub = commands.add_parser("cold")
    sub.add_argument("--sizes", type=lambda text: [int(x) for x in text.split(",")], default=[100, 1000, 20000])
    sub.add_argument("--repeats", type=int, default=5)
    sub.add_argument("--dir", help="keep (and reuse) the ledgers here")
    sub = commands.add_parser("host", help="internal: the light agents of one host")
    sub.add_argument("directory", type=Path)
    sub.add_argument("--agents", type=int, required=True)
    sub.add_argument("--lock", choices=["on", "off"], required=True)
    sub.add_argument("--barrier", type=Path, required=True)
    sub.add_argument("--out", type=Path, required=True)
    sub.add_argument("--name", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "host":
        import socket

        return host(args.directory, args.agents, args.lock == "on", args.barrier, args.out,
                    args.name if args.name == "local" else socket.gethostname())
    return {"claims": claims, "cold": cold, "netfs": netfs}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
