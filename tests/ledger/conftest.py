"""Fixtures for ledger tests: a real ledger in tmp_path, both lock modes, reaped worker pools."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.ledger.ledger_workers import HEADER, Pool, cleanup_processes
from mlflow_sweep.ledger import Ledger


@pytest.fixture
def ledger_dir(tmp_path: Path) -> Path:
    """A directory holding a freshly created ledger."""
    directory = tmp_path / "sweep"
    Ledger.create(directory, HEADER)
    return directory


@pytest.fixture(params=["hard", "soft"])
def lock_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each lock mode, forced through $MLFLOW_SWEEP_LOCK_MODE for this process and its workers."""
    monkeypatch.setenv("MLFLOW_SWEEP_LOCK_MODE", request.param)
    return request.param


@pytest.fixture
def pool(ledger_dir: Path, lock_mode: str) -> Iterator[Pool]:
    """Workers on ``ledger_dir`` in ``lock_mode``, all killed and reaped at teardown."""
    with cleanup_processes(Pool(ledger_dir, lock_mode)) as workers:
        yield workers
