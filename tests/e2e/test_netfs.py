"""Several hosts on a network filesystem: the ledger stays exact and never wedges.

Two "hosts" (tests/netfs_hosts.sh: own hostname, own PIDs, own sshfs client mount of one export)
run agents on sweeps whose ledger lives on the shared mount, with a real ``mlflow server`` on
loopback as the shared tracking store. Sweeps are initialized up front, and each host plays every
repetition in one warm process that forks its agents (tests/e2e/forked_agents.py), so a repetition
costs seconds, not an ``import mlflow`` per agent.

Without sshfs/sshd/unshare or root the module is skipped, unless MLFLOW_SWEEP_REQUIRE_NETFS=1
(CI), where it fails instead.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from mlflow_sweep.journal import Journal
from tests.conftest import in_process
from tests.e2e.tracking_server import tracking_server

pytestmark = [pytest.mark.e2e, pytest.mark.netfs, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
HOSTS_SCRIPT = REPO / "tests" / "netfs_hosts.sh"
HOST_DRIVER = REPO / "tests" / "e2e" / "forked_agents.py"
REQUIRE_ENV = "MLFLOW_SWEEP_REQUIRE_NETFS"
NEEDED = ("sshfs", "sshd", "ssh-keygen", "unshare", "fusermount")
# Each repetition is one grid sweep that 6 agents on 2 hosts start at the same moment. The same
# claim race, 360 times as fast as processes can go, is the racing-publishers test below; set
# MLFLOW_SWEEP_NETFS_REPETITIONS for a longer soak of the whole agent.
REPETITIONS = int(os.environ.get("MLFLOW_SWEEP_NETFS_REPETITIONS", "10"))
GRID = {"method": "grid", "experiment_name": "netfs", "command": "true ${x} ${y}",
        "parameters": {"x": {"values": [0, 1, 2, 3, 4, 5]}, "y": {"values": ["a", "b", "c", "d"]}}}
SMALL_GRID = {**GRID, "parameters": {"x": {"values": [0, 1, 2, 3]}, "y": {"values": ["a", "b", "c"]}}}


def _unavailable() -> str | None:
    missing = [exe for exe in NEEDED if shutil.which(exe) is None and not os.access(f"/usr/sbin/{exe}", os.X_OK)]
    if missing:
        return (f"the multi-host bed needs {', '.join(missing)}; install the Debian packages sshfs "
                "openssh-server openssh-client (scripts/test.sh does as root)")
    if os.geteuid() != 0:
        return "the multi-host bed needs root (namespaces, FUSE mounts, sshd)"
    return None


if _unavailable() and os.environ.get(REQUIRE_ENV) != "1":
    pytestmark.append(pytest.mark.skip(reason=_unavailable()))


@dataclass(frozen=True)
class Bed:
    """The running bed: its directory (export, mount point, ssh) and the tracking server's URL."""

    root: Path
    url: str

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "SLURM_"))}
        return {**env, "MLFLOW_TRACKING_URI": self.url, "MLFLOW_DISABLE_TELEMETRY": "true",
                "PYTHONUNBUFFERED": "1", **extra}

    @property
    def shared(self) -> Path:
        """The ledger root as the hosts see it: under their sshfs mount."""
        return self.root / "mnt" / "ledgers"

    @property
    def export(self) -> Path:
        """The same directory on the server side, where init writes."""
        return self.root / "export" / "ledgers"


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory, template_store: Path) -> Iterator[Bed]:
    """The sshd export and a tracking server, for this module."""
    reason = _unavailable()
    if reason:
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1)")
    root = tmp_path_factory.mktemp("netfs")
    start = subprocess.run(["bash", str(HOSTS_SCRIPT), "start", str(root)], capture_output=True,
                           text=True, timeout=60)
    assert start.returncode == 0, start.stderr
    try:
        (root / "server").mkdir()
        with tracking_server(root / "server", template_store, workers=2) as url:
            yield Bed(root, url)
    finally:
        subprocess.run(["bash", str(HOSTS_SCRIPT), "stop", str(root)], capture_output=True, timeout=60)


def init_sweeps(bed: Bed, config: dict, count: int) -> list[str]:
    """Initialize ``count`` sweeps of ``config`` (in this process, against the bed's server); their IDs."""
    from mlflow_sweep import config as sweep_config, lifecycle

    path = bed.root / "netfs.yaml"
    path.write_text(json.dumps(config))
    cfg = sweep_config.config_from_dict(config, str(path))
    with in_process(bed.env(MLFLOW_SWEEP_LEDGER_DIR=str(bed.export)), bed.root):
        return [lifecycle.init_sweep(cfg, str(path)).run_id for _ in range(count)]


def play(bed: Bed, name: str, plan: list[dict], sshfs_opts: str = "", timeout: float = 600,
         **env: str) -> tuple[list[dict], str]:
    """Run ``plan`` on two hosts at once; (each host's per-repetition records, every agent log)."""
    out = bed.root / name
    out.mkdir()
    (out / "plan.json").write_text(json.dumps(plan))
    host_env = bed.env(MLFLOW_SWEEP_LEDGER_DIR=str(bed.shared), SSHFS_OPTS=sshfs_opts, **env)
    hosts = [subprocess.Popen(["bash", str(HOSTS_SCRIPT), "host", host, str(bed.root), sys.executable,
                               str(HOST_DRIVER), str(out / "plan.json"), str(out)],
                              cwd=REPO, env=host_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for host in ("hostA", "hostB")]
    try:
        texts = [proc.communicate(timeout=timeout)[0].decode(errors="replace") for proc in hosts]
    finally:
        for proc in hosts:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    records = [json.loads(line) for path in sorted(out.glob("*.jsonl")) for line in path.read_text().splitlines()]
    logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in sorted(out.glob("*.log")))
    shown = "\n".join(f"--- host {i}: exit {p.returncode}\n{t}" for i, (p, t) in enumerate(zip(hosts, texts)))
    assert [p.returncode for p in hosts] == [0, 0], shown + logs[-20000:]
    return records, logs


def child_runs(bed: Bed, sweep_id: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(bed.url)
    experiment = client.get_run(sweep_id).info.experiment_id
    return client.search_runs([experiment], filter_string=f"tags.`mlflow.parentRunId` = '{sweep_id}'",
                              max_results=1000)


def outcome(bed: Bed, sweep_id: str) -> tuple[Counter, int, Counter]:
    """(child runs by status, distinct points among FINISHED runs, FINISHED runs per point)."""
    runs = child_runs(bed, sweep_id)
    finished = Counter((r.data.params.get("x"), r.data.params.get("y")) for r in runs if r.info.status == "FINISHED")
    return Counter(r.info.status for r in runs), len(finished), finished


def _summary(results: dict[str, tuple]) -> str:
    return "\n".join(f"{sweep}: {result}" for sweep, result in results.items())


@pytest.mark.timeout(900)
@pytest.mark.parametrize("sshfs_opts", ["", "cache=no"], ids=["default", "cache-no"])
def test_two_hosts_run_every_grid_point_exactly_once(bed: Bed, sshfs_opts: str) -> None:
    sweeps = init_sweeps(bed, SMALL_GRID, REPETITIONS)
    plan = [{"sweep_id": sweep, "agents": 3} for sweep in sweeps]
    records, logs = play(bed, f"grid-{sshfs_opts or 'default'}", plan, sshfs_opts)
    codes = Counter(code for record in records for code in record["codes"])
    results = {sweep: outcome(bed, sweep)[:2] for sweep in sweeps}
    bad = {sweep: result for sweep, result in results.items() if result != (Counter(FINISHED=12), 12)}
    assert (codes, bad, "Traceback" in logs) == (Counter({0: 6 * REPETITIONS}), {}, False), \
        _summary(results) + "\n" + logs[-20000:]


@pytest.mark.timeout(600)
def test_a_sigkilled_agent_per_host_is_reaped_and_its_point_run_again(bed: Bed) -> None:
    config = {**GRID, "command": "sleep 0.5; true ${x} ${y}"}
    [sweep] = init_sweeps(bed, config, 1)
    records, logs = play(bed, "kill", [{"sweep_id": sweep, "agents": 3, "kill": True}],
                         MLFLOW_SWEEP_HEARTBEAT_TIMEOUT="12", MLFLOW_SWEEP_POLL_INTERVAL="0.5")
    statuses, points, per_point = outcome(bed, sweep)
    codes = sorted(code for record in records for code in record["codes"])
    assert ([record["killed"] for record in records], codes, statuses, points, max(per_point.values()),
            "Traceback" in logs) == ([True, True], [-9, -9, 0, 0, 0, 0], Counter(FINISHED=24, FAILED=2), 24, 1,
                                     False), logs[-20000:]


@pytest.mark.timeout(600)
def test_random_sweep_on_two_hosts_runs_exactly_run_cap_trials(bed: Bed) -> None:
    config = {"method": "random", "run_cap": 60, "experiment_name": "netfs", "command": "true ${x}",
              "parameters": {"x": {"min": 0.0, "max": 1.0}}}
    sweeps = init_sweeps(bed, config, 2)
    records, logs = play(bed, "random", [{"sweep_id": sweep, "agents": 4} for sweep in sweeps])
    codes = Counter(code for record in records for code in record["codes"])
    trials = {sweep: sorted(int(r.data.tags["sweep.trial"]) for r in child_runs(bed, sweep)
                            if r.info.status == "FINISHED") for sweep in sweeps}
    assert (codes, trials, "Traceback" in logs) == \
        (Counter({0: 8 * len(sweeps)}), {sweep: list(range(60)) for sweep in sweeps}, False), logs[-20000:]


VERIFY = REPO / "scripts" / "verify_ledger.py"
RACER = r"""
import logging, runpy, sys
logging.basicConfig(filename=sys.argv[1], level=logging.DEBUG, format="%(name)s %(message)s")
sys.argv = [sys.argv[2], *sys.argv[3:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.timeout(300)
@pytest.mark.parametrize("sshfs_opts", ["", "cache=no"], ids=["default", "cache-no"])
def test_racing_publishers_on_two_hosts_each_get_distinct_trials(bed: Bed, sshfs_opts: str) -> None:
    """6 processes on 2 hosts claim as fast as they can: each trial exactly once.

    How many races were lost depends on the machine's load, so it is shown, not asserted; the
    test below loses one on purpose.
    """
    directory = bed.root / "export" / "race" / (sshfs_opts or "default")
    directory.mkdir(parents=True)
    shared = bed.root / "mnt" / "race" / (sshfs_opts or "default")
    out = bed.root / f"race-{sshfs_opts or 'default'}"
    out.mkdir()
    script = " & ".join(f"{sys.executable} -c '{RACER}' {out}/$(hostname)-{i}.log {VERIFY} worker {shared} "
                        f"--iterations 60 --barrier 6" for i in range(3)) + " & wait"
    hosts = [subprocess.Popen(["bash", str(HOSTS_SCRIPT), "host", host, str(bed.root), "bash", "-c", script],
                              cwd=REPO, env=bed.env(SSHFS_OPTS=sshfs_opts), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT) for host in ("hostA", "hostB")]
    texts = [proc.communicate(timeout=240)[0].decode(errors="replace") for proc in hosts]
    check = subprocess.run([sys.executable, str(VERIFY), "check", str(directory), "--expect", "360"],
                           capture_output=True, text=True, timeout=60)
    debug = "".join(p.read_text(errors="replace") for p in out.glob("*.log"))
    lost = Counter(line.split("link() failed with ")[1].split(";")[0] for line in debug.splitlines()
                   if "lost the race" in line)
    assert ([p.returncode for p in hosts], check.returncode, "Traceback" in "".join(texts)) == ([0, 0], 0, False), \
        "\n".join(texts) + check.stdout + f"\nlost races: {lost}"
    print(f"lost races by errno ({sshfs_opts or 'default'}): {dict(lost)}; {check.stdout.strip()}")


LOSER = r"""
import json, logging, sys
from pathlib import Path
from mlflow_sweep.journal import Journal
logging.basicConfig(filename=sys.argv[2], level=logging.DEBUG, format="%(name)s %(message)s")
journal = Journal(Path(sys.argv[1]), timeout=60)
print(json.dumps([journal.publish(1, b'{"event": "note", "by": "hostA"}\n'),
                  journal.publish(2, b'{"event": "note", "by": "hostA"}\n')]))
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sshfs_opts", ["", "cache=no"], ids=["default", "cache-no"])
def test_a_lost_race_over_the_mount_is_contention_not_an_error(bed: Bed, sshfs_opts: str) -> None:
    """Event 1 is taken on the server; a host publishing it through its mount loses, then wins event 2.

    SFTP reports an existing name as a generic failure (EPERM): it must read as a lost race.
    """
    from mlflow_sweep.ledger import Ledger

    name = f"lost-{sshfs_opts or 'default'}"
    Ledger.create(bed.root / "export" / name, {"sweep_id": name})
    first = b'{"event": "note", "by": "server"}\n'
    assert Journal(bed.root / "export" / name).publish(1, first)
    log = bed.root / f"{name}.log"
    proc = subprocess.run(["bash", str(HOSTS_SCRIPT), "host", "hostA", str(bed.root), sys.executable, "-c", LOSER,
                           str(bed.root / "mnt" / name), str(log)], cwd=REPO, env=bed.env(SSHFS_OPTS=sshfs_opts),
                          capture_output=True, text=True, timeout=100)
    debug = log.read_text() if log.exists() else ""
    events = [line for line in debug.splitlines() if "link() failed" in line]
    assert (proc.returncode, proc.stdout.strip().splitlines()[-1:]) == (0, ["[false, true]"]), proc.stderr + debug
    assert len(events) == 1 and "lost the race" in events[0] and ("EPERM" in events[0] or "EEXIST" in events[0]), debug
    assert [r.event["by"] for r in Journal(bed.root / "export" / name).read(1)] == ["server", "hostA"]
