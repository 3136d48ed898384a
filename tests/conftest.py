"""Shared fixtures: one migrated MLflow sqlite store copied into each test, and a CLI runner.

A fresh sqlite store costs seconds of migrations, so the session migrates one template and
every test gets its own copy whose Default experiment keeps artifacts under the test's tmp_path.
"""
from __future__ import annotations

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

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(self.uri)


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
