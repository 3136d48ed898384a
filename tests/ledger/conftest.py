"""Fixtures for ledger tests: a real ledger in tmp_path and reaped worker pools."""
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


@pytest.fixture
def pool(ledger_dir: Path) -> Iterator[Pool]:
    """Workers on ``ledger_dir``, all killed and reaped at teardown."""
    with cleanup_processes(Pool(ledger_dir)) as workers:
        yield workers
