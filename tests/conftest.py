"""Shared fixtures: one migrated MLflow sqlite store copied into each test, and a CLI runner.

A fresh sqlite store costs seconds of migrations, so the session migrates one template and
every test gets its own copy whose Default experiment keeps artifacts under the test's tmp_path.

The CLI runs two ways. ``Store.main`` calls the real ``cli.main`` in this test process, with the
store's environment and working directory, in milliseconds; ``Store.cli`` starts
``python -m mlflow_sweep``, which costs an ``import mlflow`` (2-3 s) and is kept for what only a
real process shows (its exit status, what it leaves in its working directory, the entry points).
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


@dataclass
class Store:
    """A private MLflow tracking store for one test and the environment that points at it."""

    root: Path
    uri: str
    env: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str, timeout: float = 120, check: bool = False, **kw) -> subprocess.CompletedProcess:
        """Run ``python -m mlflow_sweep ARGS`` in this store's directory and return the result."""
        proc = subprocess.run(
            [sys.executable, "-m", "mlflow_sweep", *args],
            cwd=kw.pop("cwd", self.root), env=kw.pop("env", self.env),
            capture_output=True, text=True, timeout=timeout, **kw,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    def main(self, *args: str, check: bool = False, env: dict[str, str] | None = None,
             cwd: Path | None = None) -> subprocess.CompletedProcess:
        """Run the real CLI (``cli.main``) in this process as ``cli`` runs it in a subprocess.

        The environment is exactly ``env`` (default: this store's), the working directory is the
        store's, and stdout/stderr are captured; all three are restored afterwards, and the
        package's per-URI client cache is emptied before and after so no test sees another's client.
        """
        from mlflow_sweep import cli

        # text streams over bytes, as a process has: the agent copies trials' output to sys.stdout.buffer
        out, err = (io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True) for _ in range(2))
        with in_process(env or self.env, cwd or self.root), \
                contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(list(args))
        proc = subprocess.CompletedProcess(["mlflow", "sweep", *args], code, *(
            stream.buffer.getvalue().decode(errors="replace") for stream in (out, err)))
        if check and code != 0:
            raise AssertionError(f"exit {code}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(self.uri)


def forget_clients() -> None:
    """Drop the MLflow clients the package keeps per tracking URI (the next call makes a fresh one)."""
    tracking = sys.modules.get("mlflow_sweep.tracking")
    if tracking is not None:
        tracking._client_for.cache_clear()


@contextlib.contextmanager
def in_process(env: dict[str, str], cwd: Path):
    """Exactly ``env`` as os.environ and ``cwd`` as the working directory, restored on the way out.

    A URI set with ``mlflow.set_tracking_uri`` would outrank the environment, as it does not in a
    fresh process: it is put aside for the call and restored afterwards.
    """
    utils = sys.modules.get("mlflow.tracking._tracking_service.utils")
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    saved_uri = utils._tracking_uri if utils else None
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    if utils:
        utils._tracking_uri = None
    forget_clients()
    try:
        yield
    finally:
        forget_clients()
        if utils:
            utils._tracking_uri = saved_uri
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


@pytest.fixture(scope="session")
def template_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An sqlite file with MLflow's schema migrated once per test session."""
    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    code = "import sys; from mlflow import MlflowClient; MlflowClient(sys.argv[1]).search_experiments()"
    subprocess.run([sys.executable, "-c", code, f"sqlite:///{db}"], check=True, capture_output=True)
    return db


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "SLURM_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"  # tests never reach outside this machine
    return env


def make_store(root: Path, template: Path) -> Store:
    """A copy of the template store in ``root``, its Default experiment's artifacts under ``root``."""
    db = root / "mlflow.db"
    shutil.copyfile(template, db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                     ((root / "mlruns" / "0").as_uri(),))
    uri = f"sqlite:///{db}"
    env = _clean_env()
    env["MLFLOW_TRACKING_URI"] = uri
    return Store(root=root, uri=uri, env=env)


@pytest.fixture
def store(tmp_path: Path, template_store: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """A copy of the template store in tmp_path, set as the tracking URI for this test."""
    made = make_store(tmp_path, template_store)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", made.uri)
    return made
