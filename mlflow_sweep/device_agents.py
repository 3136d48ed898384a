"""``mlflow sweep run --gpus``: one agent per device group, started and stopped as one command.

Each agent is a child process, ``python -m mlflow_sweep run``, whose environment has
``CUDA_VISIBLE_DEVICES`` set to its group (so every trial it starts sees only those devices) and
``MLFLOW_SWEEP_DEVICES`` naming them (the child run's tag ``sweep.devices``).

Processes, not threads, on purpose:
- an agent stops on SIGINT/SIGTERM through its own signal handlers, and Python runs handlers in
  the main thread only; one agent per process keeps that path the same as for a lone agent;
- ``CUDA_VISIBLE_DEVICES`` belongs to a process: the agent's environment is its trials' environment;
- agents share nothing (tracking client, trial state, a crash), as agents started by hand do.
The cost is one Python start-up (and ``import mlflow``) per agent, paid in parallel.

The supervisor forwards each SIGINT/SIGTERM it gets to every agent: the first stops their trials
(KILLED, their points handed out again), a second one kills them at once, as for one agent. Agents
run in their own sessions, so a Ctrl-C typed at the terminal reaches them once, through here, and
is not taken as the second. Every line an agent writes is passed on with its devices in front
(``[gpu 1] ...``), stdout to stdout and stderr to stderr. The exit status is 128 + the first
signal's number after a signal, else the highest exit status of the agents.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import IO, Any, Callable, Iterator, Sequence

from mlflow_sweep.devices import DEVICES_ENV, VISIBLE, label
from mlflow_sweep.errors import SweepError

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class AgentExit:
    """How one agent ended: its devices, process ID, exit status and last line on stderr (why it stopped)."""

    devices: tuple[str, ...]
    pid: int
    exit_code: int
    last_line: str


@dataclass(frozen=True)
class DevicesResult:
    """What ``run --gpus`` did: each agent's end, and the signal that stopped them (None if none did)."""

    agents: tuple[AgentExit, ...]
    signum: int | None

    @property
    def exit_code(self) -> int:
        """128 + the signal's number after a signal (130 for Ctrl-C), else the agents' highest exit status."""
        if self.signum is not None:
            return 128 + self.signum
        return max((agent.exit_code for agent in self.agents), default=0)


class AgentsFailed(SweepError):
    """Some agent of ``run --gpus`` exited non-zero, or a signal stopped them all; ``exit_code`` is the result's."""

    def __init__(self, result: DevicesResult) -> None:
        self.result = result
        self.exit_code = result.exit_code
        super().__init__(result)

    def __str__(self) -> str:
        if self.result.signum is not None:
            return (f"agents stopped by {signal.Signals(self.result.signum).name}; their running trials ended "
                    "KILLED (their points are handed out again)")
        failed = [a for a in self.result.agents if a.exit_code != 0]
        reasons: dict[tuple[int, str], list[str]] = {}  # agents that failed alike are named together
        for agent in failed:
            reasons.setdefault((agent.exit_code, agent.last_line), []).append(label(agent.devices))
        said = [f"{', '.join(names)}: exit {code}{': ' * bool(line)}{line}" for (code, line), names in reasons.items()]
        return f"{len(failed)} of {len(self.result.agents)} agents failed: " + "; ".join(said)


def agent_argv(sweep_id: str | None, count: int | None, max_failures: int) -> list[str]:
    """The command line of one agent: this Python, ``-m mlflow_sweep run`` and the agent's own options.

    Args:
        sweep_id: the sweep's ID, or None for the most recently initialized sweep.
        count: trials per agent, or None.
        max_failures: failed trials in a row after which an agent stops.
    """
    argv = [sys.executable, "-m", "mlflow_sweep", "run"]
    argv += [] if sweep_id is None else ["--sweep-id", sweep_id]
    argv += [] if count is None else ["--count", str(count)]
    return argv + ["--max-failures", str(max_failures)]


def run_agents(groups: Sequence[tuple[str, ...]], argv: Sequence[str], *, out: IO[bytes], err: IO[bytes],
               say: Callable[[str], None] = lambda _: None, source: str = "--gpus") -> DevicesResult:
    """Start one agent per device group, pass on their output, forward signals, and wait for all of them.

    Args:
        groups: the device groups, one agent each.
        argv: the agent's command line (``agent_argv``).
        out: where the agents' stdout lines go (bytes), each with its devices in front.
        err: where their stderr lines go.
        say: where the supervisor's own lines go.
        source: where the devices came from, for the first line.
    """
    supervisor = _Supervisor(argv, _Output(out), _Output(err), say)
    with supervisor.forwarding_signals():
        try:
            supervisor.start(groups, source)
            return supervisor.wait()
        finally:
            supervisor.stop_leftovers()


class _Supervisor:
    """The agents' processes, the threads that pass their output on, and the signals received."""

    def __init__(self, argv: Sequence[str], out: _Output, err: _Output, say: Callable[[str], None]) -> None:
        self.argv, self.out, self.err, self.say = list(argv), out, err, say
        self.procs: list[tuple[tuple[str, ...], subprocess.Popen[bytes]]] = []
        self.readers: list[_Reader] = []
        self.signum: int | None = None
        self.received = 0
        self.sent: dict[int, int] = {}  # signals sent to each agent, by pid

    def start(self, groups: Sequence[tuple[str, ...]], source: str) -> None:
        """Start the agents (none after a signal), then the threads that read their output."""
        for devices in groups:
            if self.signum is not None:
                break
            proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=_agent_env(devices), start_new_session=True)
            self.procs.append((devices, proc))
        self._catch_up()
        for devices, proc in self.procs:
            prefix = f"[{label(devices)}] ".encode()
            self.readers += [_Reader(proc.stdout, self.out, prefix), _Reader(proc.stderr, self.err, prefix)]
        started = ", ".join(f"{label(devices)} (pid {proc.pid})" for devices, proc in self.procs)
        self.say(f"{len(self.procs)} agent{'s' * (len(self.procs) != 1)}, one per device group "
                 f"(devices from {source}): {started}")

    def wait(self) -> DevicesResult:
        """Wait for every agent and for the end of its output."""
        codes = [_exit_status(proc.wait()) for _, proc in self.procs]
        for reader in self.readers:
            reader.join()
        ends = tuple(AgentExit(devices, proc.pid, code, reader.last_line)
                     for (devices, proc), code, reader in zip(self.procs, codes, self.readers[1::2]))
        self.say("agents finished: " + ", ".join(f"{label(a.devices)} exit {a.exit_code}" for a in ends))
        return DevicesResult(ends, self.signum)

    @contextlib.contextmanager
    def forwarding_signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM go to every agent while they run (main thread only, where Python allows handlers)."""
        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in _SIGNALS:
                previous[sig] = signal.signal(sig, self._on_signal)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        """Forward the signal to every agent; the first one also decides the exit status."""
        if self.signum is None:
            self.signum = signum
            self.say(f"{signal.Signals(signum).name} received: stopping every agent's trial "
                     "(a second one kills them at once)")
        self.received += 1
        for _, proc in list(self.procs):
            self._send(proc, signum)

    def _catch_up(self) -> None:
        """An agent started while a signal was handled gets it too."""
        if self.signum is None:
            return
        for _, proc in self.procs:
            while self.sent.get(proc.pid, 0) < self.received:
                self._send(proc, self.signum)

    def _send(self, proc: subprocess.Popen[bytes], signum: int) -> None:
        self.sent[proc.pid] = self.sent.get(proc.pid, 0) + 1
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signum)

    def stop_leftovers(self) -> None:
        """Agents still running because the supervisor itself failed get SIGTERM (their trials are requeued)."""
        for _, proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                proc.wait()


def _agent_env(devices: tuple[str, ...]) -> dict[str, str]:
    env = dict(os.environ)
    env.update({VISIBLE: ",".join(devices), DEVICES_ENV: ",".join(devices), "PYTHONUNBUFFERED": "1"})
    return env


def _exit_status(code: int) -> int:
    """A shell's exit status: a process ended by signal N is 128 + N."""
    return 128 - code if code < 0 else code


class _Output:
    """A byte stream that several threads write whole lines to; after a write fails, lines are dropped."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream, self.lock, self.broken = stream, threading.Lock(), False

    def write_line(self, line: bytes) -> None:
        with self.lock:
            if self.broken:
                return
            try:
                self.stream.write(line)
                self.stream.flush()
            except (OSError, ValueError):  # the reader went away ('| head'): the agents go on regardless
                self.broken = True


class _Reader:
    """A thread that passes one agent stream on, line by line, with a prefix, and keeps its last line."""

    def __init__(self, source: IO[bytes] | None, sink: _Output, prefix: bytes) -> None:
        self.source, self.sink, self.prefix = source, sink, prefix
        self.last_line = ""
        self.thread = threading.Thread(target=self._run, daemon=True, name="mlflow-sweep-agent-output")
        self.thread.start()

    def _run(self) -> None:
        if self.source is None:
            return
        with self.source:
            for line in iter(self.source.readline, b""):
                text = line.rstrip(b"\r\n")
                if text.strip():
                    self.last_line = text.decode(errors="replace").strip()
                self.sink.write_line(self.prefix + text + b"\n")

    def join(self) -> None:
        """Wait for the end of the stream; a process the agent left behind holding it is not waited for."""
        self.thread.join(timeout=10)
