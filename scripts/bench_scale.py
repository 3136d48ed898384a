#!/usr/bin/env python
"""The claim protocol at scale: many light agents on one ledger, with and without the claim lock.

A light agent is a separate process that runs the real agent loop (reap, claim with the sweep's
policy under the claim lock, start, end, heartbeats) on the real ledger, with an in-memory
tracking store and no-op trials, so hundreds of them fit on one machine. Each reports its claims,
its ``decide`` calls and the races it lost (from its last heartbeat) and the latency of each claim
(from asking to holding a trial, lock wait included).

    python scripts/bench_scale.py claims --agents 64 --trials 2000             # lock on, then off
    python scripts/bench_scale.py cold --sizes 100,1000,20000                  # files and time of a cold read
    sudo python scripts/bench_scale.py netfs --agents 128 --trials 10000       # 2 hosts on the sshfs bed
    python scripts/bench_scale.py agents --agents 64 --trials 2000             # real agents, one host, sqlite
    sudo python scripts/bench_scale.py agents --hosts 2 --agents 16 --lock on  # real agents on the bed

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


def create(root: Path, trials: int) -> str:
    """A new random sweep of ``trials`` no-op trials on an in-memory tracking store, its ledger under ``root``."""
    from mlflow_sweep import lifecycle
    from mlflow_sweep.config import config_from_dict
    from mlflow_sweep.memory_tracker import MemoryTracker

    config = config_from_dict({**CONFIG, "run_cap": trials, "seed": 7}, "bench")
    return lifecycle.init_sweep(config, "bench", tracker=MemoryTracker(root)).run_id


class _NoOp:
    """A trial runner whose trials end at once, successfully."""

    def run(self, trial, run_id, output, stop) -> int:
        return 0

    def interrupt(self) -> bool:
        return False

    def kill(self) -> bool:
        return False

    def close(self) -> None:
        pass


def light_agent(root: Path, sweep_id: str, agent_id: str, barrier: Path, out: Path) -> None:
    """The real agent loop on an in-memory tracking store and no-op trials; what happened goes to ``out`` (JSON).

    Each claim's latency is timed around the agent's claim step (reap, decide under the lock, link).
    """
    from mlflow_sweep import agent_loop, lifecycle
    from mlflow_sweep.memory_tracker import MemoryTracker

    opened = lifecycle.open_sweep(sweep_id, tracker=MemoryTracker(root))
    latencies: list[float] = []
    claim = agent_loop.Agent._claim

    def timed(self):
        asked = time.perf_counter()
        step = claim(self)
        latencies.append(time.perf_counter() - asked)
        return step

    agent_loop.Agent._claim = timed
    while not barrier.exists():
        time.sleep(0.001)
    started = time.time()
    result = agent_loop.run(opened, _NoOp(), agent_id=agent_id)
    beat = json.loads((opened.ledger.directory / "agents" / f"{agent_id}.json").read_text())
    out.write_text(json.dumps({"agent": agent_id, "ran": result.ran, "decides": beat["decisions"],
                               "races": beat["races_lost"], "latencies": latencies[:result.ran],
                               "started": started, "ended": time.time()}))


def host(root: Path, sweep_id: str, agents: int, barrier: Path, out: Path, name: str, real: bool = False) -> int:
    """Fork ``agents`` agents from this warm process, wait for them; the worst exit status.

    Light agents by default; ``real`` ones run ``mlflow sweep run`` on the tracking store in
    MLFLOW_TRACKING_URI (mlflow is imported once here, not once per agent).
    """
    from mlflow_sweep import agent_loop, config, ledger, lifecycle, memory_tracker, policy, samplers  # noqa: F401

    if real:
        import mlflow  # noqa: F401
        from mlflow_sweep import cli, tracking  # noqa: F401
    out.mkdir(parents=True, exist_ok=True)
    pids = []
    for i in range(agents):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                if real:
                    code = _real_agent(sweep_id, barrier, out / f"{name}-{i}.log")
                else:
                    light_agent(root, sweep_id, f"{name}-{i}", barrier, out / f"{name}-{i}.json")
                    code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    return max(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids)


def _real_agent(sweep_id: str, barrier: Path, log: Path) -> int:
    """``mlflow sweep run --sweep-id SWEEP_ID`` in this forked process, its output in ``log``."""
    from mlflow_sweep import cli

    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    while not barrier.exists():
        time.sleep(0.001)
    try:
        return cli.main(["run", "--sweep-id", sweep_id])
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _ledger_trials(root: Path, sweep_id: str) -> list[int]:
    from mlflow_sweep.ledger import Ledger

    return [t.index for t in Ledger(root / sweep_id, lock=False).state().trials]


def summarize(out: Path, trials: int, claimed: list[int]) -> dict:
    """Figures of one run from its agents' reports and the ledger's trials."""
    reports = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    ran = sum(r["ran"] for r in reports)
    latencies = sorted(x for r in reports for x in r["latencies"])
    seconds = max(r["ended"] for r in reports) - min(r["started"] for r in reports)
    n = max(ran, 1)
    return {"agents": len(reports), "claimed": ran, "exact": ran == trials and claimed == list(range(trials)),
            "claims_per_s": ran / seconds, "races_per_claim": sum(r["races"] for r in reports) / n,
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


def _env(lock: str) -> dict[str, str]:
    """The light agents' environment: the claim lock on or off, and the agent's default timings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return {**env, "MLFLOW_SWEEP_LOCK_TIMEOUT": "30" if lock == "on" else "0"}


def claims(args: argparse.Namespace) -> int:
    """Light agents on one host, with the lock and without it, side by side."""
    rows, ok = [], True
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        for lock in args.lock:
            root = Path(args.dir or tmp) / f"claims-lock-{lock}"
            sweep_id = create(root / "sweeps", args.trials)
            proc = subprocess.Popen([sys.executable, __file__, "host", str(root / "sweeps"), sweep_id, "--agents",
                                     str(args.agents), "--barrier", str(root / "go"), "--out", str(root / "out"),
                                     "--name", "local"], env=_env(lock))
            time.sleep(args.settle)
            (root / "go").touch()
            code = proc.wait()
            figures = summarize(root / "out", args.trials, _ledger_trials(root / "sweeps", sweep_id))
            ok = ok and code == 0 and figures["exact"]
            rows.append(_row(lock, figures))
    print(f"{args.agents} light agents on one host (the agent loop, an in-memory tracking store, no-op trials), "
          f"random sweep of {args.trials} trials")
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
    """A ledger of ``trials`` finished trials written through the real Ledger API (checkpoints as agents make them).

    fsync is skipped while building: the files are the same, and 60,000 syncs would take minutes.
    """
    from mlflow_sweep.ledger import Ledger
    from mlflow_sweep.trials import Proposal, TrialState

    fsync, os.fsync = os.fsync, lambda fd: None
    try:
        ledger = Ledger.create(directory, {"config": {**CONFIG, "run_cap": trials}, "seed": 7, "sweep_id": "bench"},
                               lock=False)
        for i in range(trials):
            trial = ledger.claim(lambda state, i=i: Proposal({"x": i / trials, "opt": "adam"}), "builder").trial
            ledger.start(trial.index, f"run-{i}")
            ledger.complete(trial.index, TrialState.FINISHED, i / trials)
    finally:
        os.fsync = fsync


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


def agents(args: argparse.Namespace) -> int:
    """Real agents (``mlflow sweep run``, no-op command) on one host's sqlite store or on two hosts of the bed."""
    root = Path(args.dir or tempfile.mkdtemp(prefix="bench-scale-agents-"))
    script = REPO / "tests" / "netfs_hosts.sh"
    rows, ok = [], True
    if args.hosts == 2:
        subprocess.run(["bash", str(script), "start", str(root)], check=True, capture_output=True)
    try:
        with _tracking(root, args.hosts) as uri:
            for lock in args.lock:
                figures, good = _real_run(root, uri, lock, args, script)
                ok = ok and good
                rows.append(_row(lock, figures))
    finally:
        if args.hosts == 2:
            subprocess.run(["bash", str(script), "stop", str(root)], capture_output=True)
    where = "one host, sqlite store" if args.hosts == 1 else "2 hosts on sshfs, an mlflow server"
    print(f"{args.hosts} x {args.agents} real agents ({where}), random sweep of {args.trials} no-op trials")
    print(HEADER)
    print("\n".join(rows))
    return 0 if ok else 1


def _tracking(root: Path, hosts: int):
    """The tracking URI: a sqlite file for one host, an ``mlflow server`` on loopback for two."""
    import contextlib

    @contextlib.contextmanager
    def serve():
        if hosts == 1:
            yield f"sqlite:///{root / 'mlflow.db'}"
            return
        import socket
        import urllib.request

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
                                   str(port), "--backend-store-uri", f"sqlite:///{root / 'backend.db'}",
                                   "--artifacts-destination", str(root / "artifacts"), "--workers", "2"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    urllib.request.urlopen(f"{url}/health", timeout=2)
                    break
                except OSError:
                    time.sleep(0.3)
            yield url
        finally:
            server.terminate()
            server.wait()

    return serve()


def _real_run(root: Path, uri: str, lock: str, args: argparse.Namespace, script: Path) -> tuple[dict, bool]:
    """One sweep run by real agents; its figures and whether it was exact with every agent exiting 0."""
    from mlflow import MlflowClient

    name = f"lock-{lock}"
    env = {**_env(lock), "MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
    if args.hosts == 2:
        env["MLFLOW_SWEEP_LEDGER_DIR"] = str(root / "export" / "ledgers")
    config = root / f"{name}.json"
    config.write_text(json.dumps({**CONFIG, "run_cap": args.trials, "experiment_name": name}))
    init = subprocess.run([sys.executable, "-m", "mlflow_sweep", "init", str(config)], env=env, cwd=root,
                          capture_output=True, text=True, check=True)
    sweep_id = init.stdout.strip().splitlines()[-1].rsplit(" ", 1)[1]
    if args.hosts == 2:
        env["MLFLOW_SWEEP_LEDGER_DIR"] = str(root / "mnt" / "ledgers")
    barrier, out = root / f"go-{name}", root / f"out-{name}"
    command = [sys.executable, __file__, "host", "-", sweep_id, "--real", "--agents", str(args.agents),
               "--barrier", str(barrier), "--out", str(out)]
    procs = ([subprocess.Popen([*command, "--name", "local"], env=env, cwd=root)] if args.hosts == 1 else
             [subprocess.Popen(["bash", str(script), "host", h, str(root), *command, "--name", h], env=env, cwd=REPO)
              for h in ("hostA", "hostB")])
    time.sleep(args.settle)
    started = time.time()
    barrier.touch()
    codes = [p.wait() for p in procs]
    seconds = time.time() - started
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_run(sweep_id).info.experiment_id],
                              filter_string=f"tags.`mlflow.parentRunId` = '{sweep_id}'", max_results=50_000)
    trials = sorted(int(r.data.tags["sweep.trial"]) for r in runs)
    ledger_dir = Path(client.get_run(sweep_id).data.tags["sweep.ledger_dir"])
    if args.hosts == 2:
        ledger_dir = root / "export" / "ledgers" / sweep_id
    beats = [json.loads(p.read_text()) for p in (ledger_dir / "agents").glob("*.json")]
    n = max(len(trials), 1)
    figures = {"agents": len(beats), "claimed": len(trials), "exact": trials == list(range(args.trials)),
               "claims_per_s": len(trials) / seconds,
               "races_per_claim": sum(b.get("races_lost", 0) for b in beats) / n,
               "decides_per_claim": sum(b.get("decisions", 0) for b in beats) / n,
               "p50_ms": float("nan"), "p99_ms": float("nan"), "seconds": seconds}
    return figures, figures["exact"] and set(codes) == {0}


def netfs(args: argparse.Namespace) -> int:
    """Light agents on two hosts of the sshfs bed, with the lock and without it."""
    script = REPO / "tests" / "netfs_hosts.sh"
    root = Path(args.dir or tempfile.mkdtemp(prefix="bench-scale-netfs-"))
    subprocess.run(["bash", str(script), "start", str(root)], check=True, capture_output=True)
    rows, ok = [], True
    try:
        for lock in args.lock:
            name = f"lock-{lock}"
            sweep_id = create(root / "export" / name, args.trials)
            barrier = root / f"go-{name}"
            hosts = [subprocess.Popen(["bash", str(script), "host", h, str(root), sys.executable, __file__, "host",
                                       str(root / "mnt" / name), sweep_id, "--agents", str(args.agents),
                                       "--barrier", str(barrier), "--out", str(root / f"out-{name}"), "--name", h],
                                      cwd=REPO, env=_env(lock)) for h in ("hostA", "hostB")]
            time.sleep(args.settle)
            barrier.touch()
            codes = [h.wait() for h in hosts]
            figures = summarize(root / f"out-{name}", args.trials, _ledger_trials(root / "export" / name, sweep_id))
            ok = ok and codes == [0, 0] and figures["exact"]
            rows.append(_row(lock, figures))
    finally:
        subprocess.run(["bash", str(script), "stop", str(root)], capture_output=True)
    print(f"2 hosts x {args.agents} light agents on sshfs (the agent loop, in-memory tracking stores, no-op trials), "
          f"random sweep of {args.trials} trials")
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
    sub = commands.add_parser("agents", help="real agents: mlflow sweep run, with a real tracking store")
    sub.add_argument("--agents", type=int, default=64, help="agents per host")
    sub.add_argument("--hosts", type=int, choices=[1, 2], default=1)
    sub.add_argument("--trials", type=int, default=2000)
    sub.add_argument("--lock", type=lambda text: text.split(","), default=["on", "off"])
    sub.add_argument("--settle", type=float, default=10.0)
    sub.add_argument("--dir", help="keep the stores and ledgers here (default: a temporary directory)")
    sub = commands.add_parser("cold")
    sub.add_argument("--sizes", type=lambda text: [int(x) for x in text.split(",")], default=[100, 1000, 20000])
    sub.add_argument("--repeats", type=int, default=5)
    sub.add_argument("--dir", help="keep (and reuse) the ledgers here")
    sub = commands.add_parser("host", help="internal: the light agents of one host")
    sub.add_argument("root", type=Path)
    sub.add_argument("sweep_id")
    sub.add_argument("--agents", type=int, required=True)
    sub.add_argument("--barrier", type=Path, required=True)
    sub.add_argument("--out", type=Path, required=True)
    sub.add_argument("--name", required=True)
    sub.add_argument("--real", action="store_true", help="real agents (mlflow sweep run) instead of light ones")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "host":
        import socket

        return host(args.root, args.sweep_id, args.agents, args.barrier, args.out,
                    args.name if args.name == "local" else socket.gethostname(), args.real)
    return {"claims": claims, "cold": cold, "netfs": netfs, "agents": agents}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
