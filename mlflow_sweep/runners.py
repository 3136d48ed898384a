"""Trial runners: how one claimed trial is carried out once its child run exists (STYLE §6).

A runner runs a trial to its end and returns an exit code (0 = success). The agent asks a trial to
end (a signal to the agent, a hyperband cut) by setting the trial's ``stop`` event and calling
``interrupt``; ``kill`` ends it at once. The agent loop owns everything around a trial (claim,
child run, heartbeat, outcome); runners own only the trial.
``CommandRunner`` launches the sweep's command as a process (SPEC §3).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

from mlflow_sweep import command, settings
from mlflow_sweep.errors import SweepError

if TYPE_CHECKING:
    from mlflow_sweep.config import SweepConfig
    from mlflow_sweep.tracking import Sweep
    from mlflow_sweep.trials import Trial


class TrialRunner(Protocol):
    """What the agent loop needs of a way to run trials."""

    def run(self, trial: Trial, run_id: str, output: Path, stop: threading.Event) -> int:
        """Run ``trial`` (child run ``run_id``), keep its output in ``output``, return its exit code.

        ``stop`` is this trial's own event: once it is set, the trial must end as soon as it can.
        """

    def interrupt(self) -> bool:
        """Ask the running trial to end now; False when none is running."""

    def kill(self) -> bool:
        """End the running trial now; False when none is running."""

    def close(self) -> None:
        """Release what the runner holds (temporary files)."""


class NoCommand(SweepError):
    """The sweep file has neither ``program`` nor ``command``: only the function agent can run it (SPEC §2)."""

    exit_code = 2


class CommandRunner:
    """Runs the sweep's command in its own process group, with MLFLOW_RUN_ID set, teeing its output."""

    def __init__(self, sweep: Sweep, config: SweepConfig, stream: IO[bytes] | None = None) -> None:
        """Prepare to run trials of ``sweep``.

        Args:
            sweep: the sweep (tracking URI, experiment and parent run for the command's environment).
            config: the sweep's configuration (``command``, ``program``, parameters).
            stream: where the command's output is also copied, live (the agent's stdout); None for nowhere.
        """
        if config.command is None:
            raise NoCommand(
                f"sweep {sweep.run_id}: its file sets neither program nor command, so 'mlflow sweep run' "
                "has nothing to start; add program (or command) to the sweep file, or run the trials from "
                "Python with the function agent: mlflow_sweep.agent(sweep_id, function=train)")
        self.sweep, self.config, self.stream = sweep, config, stream
        self.workdir = Path(tempfile.mkdtemp(prefix="mlflow-sweep-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def run(self, trial: Trial, run_id: str, output: Path, stop: threading.Event) -> int:
        """Launch the command, copy its output live and into ``output``, and return its exit code."""
        json_file = self.workdir / f"params-{trial.index}.json"
        json_file.write_text(command.params_json(self.config, trial.params))
        argv = command.build_argv(self.config, trial.params, interpreter=sys.executable, json_file=str(json_file))
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
                if stop.is_set():  # asked while the command was starting
                    self._terminate(self.proc)
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
        """Remove the runner's temporary directory (the trials' parameter files)."""
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _terminate(self, proc: subprocess.Popen[bytes] | None) -> bool:
        if not _signal_group(proc, signal.SIGTERM):
            return False
        # bound to this process: after an early stop the agent goes on, and the timer must not
        # SIGKILL the next trial's command (issue 6)
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
