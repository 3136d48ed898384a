"""Trial runners: how one claimed trial is carried out once its child run exists.

A runner runs a trial to its end and returns an exit code (0 = success). The agent asks a trial to
end (a signal to the agent, a hyperband cut, a cancelled sweep) through the trial's
``StopRequest`` and by calling ``interrupt``; ``kill`` ends it at once. The agent loop owns
everything around a trial (claim, child run, heartbeat, outcome); runners own only the trial.
``CommandRunner`` launches the sweep's command as a process; ``FunctionRunner`` calls a Python
function in the agent's own process, which asks about its trial through ``current_trial()``
(``mlflow_sweep.params()``, ``mlflow_sweep.should_stop()``).
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Iterator, Mapping, Protocol, TextIO

from mlflow_sweep import command, settings
from mlflow_sweep.errors import SweepError, UsageError

if TYPE_CHECKING:
    from mlflow_sweep.config import SweepConfig
    from mlflow_sweep.tracker import Sweep, Tracker
    from mlflow_sweep.trials import Trial

STOPPED_CODE = 128 + signal.SIGTERM
"""The exit code of a trial that ended because it was asked to, as a process that ends on SIGTERM."""


class StopRequest:
    """Whether a running trial must end, and whether it ended because of that.

    It is the one object of a trial that two threads write: the agent's watch thread (a cancelled
    sweep, a hyperband cut) and its signal handler ``ask``; whoever makes the trial end on that
    request says so with ``obey``: the agent when ``interrupt`` reached a running command, the
    runner when it ends a trial asked to stop before it started, ``should_stop()`` when a function
    trial sees the request. A trial that was asked but ends on its own (a function that never
    calls ``should_stop()`` runs to its end) has ``asked`` without ``obeyed``, and its outcome is
    its own. Both flags are ``threading.Event``s: set once, never cleared, safe from any thread.
    """

    def __init__(self) -> None:
        self._asked = threading.Event()
        self._obeyed = threading.Event()

    def ask(self) -> None:
        """Ask the trial to end as soon as it can."""
        self._asked.set()

    def is_set(self) -> bool:
        """Whether the trial was asked to end (the name ``threading.Event`` gives it)."""
        return self._asked.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the trial is asked to end, at most ``timeout`` seconds; return whether it was."""
        return self._asked.wait(timeout)

    def obey(self) -> None:
        """Record that the trial is ending because it was asked to."""
        self._obeyed.set()

    @property
    def obeyed(self) -> bool:
        """Whether the trial ended because it was asked to."""
        return self._obeyed.is_set()

    def __repr__(self) -> str:
        return f"StopRequest(asked={self.is_set()}, obeyed={self.obeyed})"


class TrialRunner(Protocol):
    """What the agent loop needs of a way to run trials."""

    def run(self, trial: Trial, run_id: str, output: Path, stop: StopRequest) -> int:
        """Run ``trial`` (child run ``run_id``), keep its output in ``output``, return its exit code.

        ``stop`` is this trial's own request: once it is asked, the trial must end as soon as it
        can; a trial asked before it starts is not started (``obey`` it, return ``STOPPED_CODE``).
        """

    def interrupt(self) -> bool:
        """Ask the running trial to end now (from any thread); True when that reached a running trial."""

    def kill(self) -> bool:
        """End the running trial now; False when none is running."""

    def close(self) -> None:
        """Release what the runner holds (temporary files)."""


def config_of(runner: CommandRunner | FunctionRunner, trial: Trial) -> SweepConfig:
    """The config ``trial`` runs with: the version it was claimed under (``mlflow sweep update --config``)."""
    return runner.config if runner.versions is None else runner.versions(trial.version)


class NoCommand(SweepError):
    """The sweep file has neither ``program`` nor ``command``: only the function agent can run it."""

    exit_code = 2


class CommandRunner:
    """Runs the sweep's command in its own process group, with MLFLOW_RUN_ID set, teeing its output."""

    def __init__(self, sweep: Sweep, config: SweepConfig, stream: IO[bytes] | None = None, *,
                 versions: Callable[[int], SweepConfig] | None = None) -> None:
        """Prepare to run trials of ``sweep``.

        Args:
            sweep: the sweep (tracking URI, experiment and parent run for the command's environment).
            config: the sweep's configuration (``command``, ``program``, parameters).
            stream: where the command's output is also copied, live (the agent's stdout); None for nowhere.
            versions: the config version a trial was claimed under, by number (``OpenSweep.config_at``),
                so a trial runs the command of its version; None: every trial runs ``config``'s.
        """
        if config.command is None:
            raise NoCommand(
                f"sweep {sweep.run_id}: its file sets neither program nor command, so 'mlflow sweep run' "
                "has nothing to start; add program (or command) to the sweep file, or run the trials from "
                "Python with the function agent: mlflow_sweep.agent(sweep_id, function=train)")
        self.sweep, self.config, self.stream, self.versions = sweep, config, stream, versions
        self.workdir: Path | None = None  # made at the first trial, so only close() has anything to remove
        self.proc: subprocess.Popen[bytes] | None = None  # written by run() only; read by interrupt() and kill()

    def run(self, trial: Trial, run_id: str, output: Path, stop: StopRequest) -> int:
        """Launch the command, copy its output live and into ``output``, and return its exit code."""
        if stop.is_set():  # asked before it started (a signal right after the claim): not started at all
            stop.obey()
            return STOPPED_CODE
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="mlflow-sweep-"))
        json_file = self.workdir / f"params-{trial.index}.json"
        config = config_of(self, trial)
        json_file.write_text(command.params_json(config, trial.params))
        argv = command.build_argv(config, trial.params, interpreter=sys.executable, json_file=str(json_file))
        env = self._env(trial, run_id, json_file)
        try:
            with open(output, "wb") as sink:
                try:
                    self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                 stderr=subprocess.STDOUT, env=env, start_new_session=True)
                except OSError as exc:
                    sink.write(f"mlflow-sweep: could not start {argv[0]!r}: {exc}\n".encode())
                    return 127
                tee = threading.Thread(target=_tee, args=(self.proc.stdout, sink, self.stream), daemon=True)
                tee.start()
                if stop.is_set() and self._terminate(self.proc):  # asked while the command was starting
                    stop.obey()
                code = self.proc.wait()
                tee.join()
        finally:
            self.proc = None
        return code

    def interrupt(self) -> bool:
        """SIGTERM the trial's process group, then SIGKILL after the grace period; False if none runs."""
        return self._terminate(self.proc)

    def kill(self) -> bool:
        """SIGKILL the trial's process group now."""
        return _signal_group(self.proc, signal.SIGKILL)

    def close(self) -> None:
        """Remove the runner's temporary directory (the trials' parameter files), if it made one."""
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def _terminate(self, proc: subprocess.Popen[bytes] | None) -> bool:
        if not _signal_group(proc, signal.SIGTERM):
            return False
        # bound to this process: after an early stop the agent goes on, and the timer must not
        # SIGKILL the next trial's command
        timer = threading.Timer(settings.kill_grace(), _signal_group, args=(proc, signal.SIGKILL))
        timer.daemon = True
        timer.start()
        return True

    def _env(self, trial: Trial, run_id: str, json_file: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("MLFLOW_EXPERIMENT_NAME", None)  # the child run's experiment is the sweep's
        env.update({
            "MLFLOW_RUN_ID": run_id,
            "MLFLOW_TRACKING_URI": self.sweep.tracking_uri,
            "MLFLOW_EXPERIMENT_ID": self.sweep.experiment_id,
            "MLFLOW_SWEEP_ID": self.sweep.run_id,
            "MLFLOW_SWEEP_TRIAL": str(trial.index),
            "MLFLOW_SWEEP_PARAMS_FILE": str(json_file),
            "PYTHONUNBUFFERED": "1",
        })
        return env


def _signal_group(proc: subprocess.Popen[bytes] | None, sig: int) -> bool:
    """Send ``sig`` to the process group of ``proc``; False when it has already ended."""
    if proc is None or proc.poll() is not None:
        return False
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return False
    return True


def _tee(source: IO[bytes] | None, sink: IO[bytes], stream: IO[bytes] | None) -> None:
    """Copy the command's output into the artifact file and, live, to the agent's stdout."""
    if source is None:
        return
    fd = source.fileno()
    while chunk := os.read(fd, 65536):
        sink.write(chunk)
        sink.flush()
        if stream is not None:
            stream.write(chunk)
            stream.flush()
    source.close()


@dataclass(frozen=True)
class TrialContext:
    """The trial a function runs right now, as ``mlflow_sweep.params()`` and ``should_stop()`` see it."""

    sweep_id: str
    index: int
    run_id: str
    params: Mapping[str, Any]
    """The trial's values in W&B's run-config shape: nested ``parameters:`` blocks as dicts."""
    stop: StopRequest


_current: TrialContext | None = None


def current_trial() -> TrialContext | None:
    """The function trial running in this process (any thread), or None outside one."""
    return _current


def takes_params(function: Callable[..., Any]) -> bool:
    """True when ``function`` takes the params dict, False when it takes no argument.

    A function that can take one positional argument gets the params (W&B's ``train(config=None)``
    too); one that needs more is a UsageError, raised before any trial is claimed.
    """
    if not callable(function):
        raise UsageError(f"function must be callable, but got {function!r}")
    if inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function):
        raise UsageError(f"function must be a plain function, but {getattr(function, '__qualname__', function)} "
                         "is async; pass a function that calls asyncio.run(...)")
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # a builtin that does not describe itself: call it bare
        return False
    for args in ((None,), ()):
        try:
            signature.bind(*args)
        except TypeError:
            continue
        return bool(args)
    name = getattr(function, "__qualname__", repr(function))
    raise UsageError(f"function must take no argument or one (the trial's params), but {name}{signature} "
                     "needs more")


class FunctionRunner:
    """Calls a Python function as the trial, in the calling process.

    While the function runs, the trial's child run is what MLflow's fluent API logs into
    (the tracker's ``trial_run_active``), its stdout and stderr are shown and copied into the
    trial's output, and ``current_trial()`` describes it. A return is exit code 0, an exception
    is 1 with its traceback in the output, ``SystemExit`` is its code; KeyboardInterrupt (Ctrl-C,
    a notebook's stop button) ends the trial and propagates, so the agent treats it as an
    interrupt of the agent itself, like SIGINT.
    """

    stop_hint = "; a function trial stops early only where it calls mlflow_sweep.should_stop()"
    """What the agent adds when a trial asked to stop ran to its end."""

    def __init__(self, sweep: Sweep, config: SweepConfig, function: Callable[..., Any],
                 tracker: Tracker | None = None, *, versions: Callable[[int], SweepConfig] | None = None) -> None:
        """Prepare to run trials of ``sweep`` by calling ``function``.

        Args:
            sweep: the sweep (tracking URI, experiment and ID for the trial's context).
            config: the sweep's configuration (how to nest the params).
            function: takes no argument or one (the trial's params); see ``takes_params``.
            tracker: the tracking store whose runs the function logs into; default: MLflow.
            versions: the config version a trial was claimed under, by number (as ``CommandRunner``).
        """
        if tracker is None:
            from mlflow_sweep.tracking import MLFLOW

            tracker = MLFLOW
        self.sweep, self.config, self.function, self.tracker = sweep, config, function, tracker
        self.versions = versions
        self.pass_params = takes_params(function)
        self._thread: int | None = None  # the thread running the function, while it runs

    def run(self, trial: Trial, run_id: str, output: Path, stop: StopRequest) -> int:
        """Call the function with the child run resumable, its output teed into ``output``; return an exit code."""
        params = config_of(self, trial).nest(trial.params)  # W&B's run-config shape, as ${args_json} gives a command
        context = TrialContext(self.sweep.run_id, trial.index, run_id, params, stop)
        with open(output, "w", encoding="utf-8", errors="replace", buffering=1) as sink, \
                _teeing(sink), self.tracker.trial_run_active(self.sweep, run_id), _in_trial(context):
            return self._call(copy.deepcopy(params), stop)  # the function may change its own copy

    def _call(self, params: dict[str, Any], stop: StopRequest) -> int:
        try:
            try:
                self._thread = threading.get_ident()
                if stop.is_set():  # asked to stop (a signal) before the function could be interrupted
                    stop.obey()
                    return STOPPED_CODE
                if self.pass_params:
                    self.function(params)
                else:
                    self.function()
            finally:
                self._thread = None
        except KeyboardInterrupt:
            print("mlflow-sweep: trial interrupted (KeyboardInterrupt)", file=sys.stderr)
            raise
        except SystemExit as exc:
            return _exit_code(exc.code)
        except Exception as exc:  # noqa: BLE001  a failing trial never stops the agent
            traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next if exc.__traceback__ else None)
            return 1
        return 0

    def interrupt(self) -> bool:
        """End the running function from its own thread; from another, False: nothing can end it.

        Called from a signal handler in the function's own thread (Ctrl-C), this raises
        KeyboardInterrupt there, so the function stops at once as Python's own handler would. From
        another thread (a hyperband cut, a cancelled sweep) a function cannot be ended: it sees its
        trial's stop request through ``should_stop()``, and a function that never asks runs to its end.
        """
        if self._thread is not None and self._thread == threading.get_ident():
            raise KeyboardInterrupt
        return False

    def kill(self) -> bool:
        """The same as ``interrupt``: a function cannot be ended from outside."""
        return self.interrupt()

    def close(self) -> None:
        """Nothing to release."""


@contextlib.contextmanager
def _in_trial(context: TrialContext) -> Iterator[None]:
    global _current
    _current = context
    try:
        yield
    finally:
        _current = None


@contextlib.contextmanager
def _teeing(sink: TextIO) -> Iterator[None]:
    """Copy what the process prints to ``sys.stdout``/``sys.stderr`` into ``sink`` while still showing it."""
    lock = threading.Lock()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(saved[0], sink, lock), _Tee(saved[1], sink, lock)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


class _Tee:
    """A text stream that writes to the stream it replaces and to the trial's output file.

    Everything else (``isatty``, ``fileno``, ``encoding``) is the replaced stream's, so progress
    bars and notebooks behave as before. Output written straight to a file descriptor (a C
    library, a subprocess) is shown but not copied.
    """

    def __init__(self, shown: TextIO | None, sink: TextIO, lock: threading.Lock) -> None:
        self._shown, self._sink, self._lock = shown, sink, lock

    def write(self, text: str) -> int:
        with self._lock:
            with contextlib.suppress(ValueError):  # the trial ended while a thread still prints
                self._sink.write(text)
        if self._shown is not None:
            self._shown.write(text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._shown is not None:
            self._shown.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._shown, name)


def _exit_code(code: object) -> int:
    """``sys.exit(code)``'s exit status, as Python itself would report it."""
    if code is None:
        return 0
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    print(code, file=sys.stderr)
    return 1
