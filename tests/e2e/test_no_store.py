"""A command that needs an existing sweep creates no store on its way (no stray mlflow.db).

``run``/``status``/``finalize`` in a directory without a store used to create ``mlflow.db`` (and
print MLflow's migration chatter) before saying "no sweep found".
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_sweep import cli
from tests.conftest import _clean_env

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def empty_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no store, and no MLFLOW_TRACKING_URI: MLflow's default is ./mlflow.db."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.mark.parametrize("args", [["status"], ["finalize"], ["run"], ["status", "--sweep-id", "abc123"]],
                         ids=" ".join)
def test_no_store_is_created_and_the_message_says_where_it_looked(args, empty_dir, capsys):
    code = cli.main(args)
    err = capsys.readouterr().err
    what = "no sweep with ID 'abc123'" if "--sweep-id" in args else "no sweep found"
    assert (code, list(empty_dir.iterdir())) == (1, [])
    assert err.startswith(f"{what}: there is no tracking store at {empty_dir / 'mlflow.db'} "
                          f"(tracking URI sqlite:///{empty_dir / 'mlflow.db'}); run 'mlflow sweep init CONFIG'"), err


def test_a_missing_file_store_is_not_created_either(empty_dir, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (empty_dir / "mlruns").as_uri())
    assert cli.main(["status"]) == 1
    assert f"there is no tracking store at {empty_dir / 'mlruns'}" in capsys.readouterr().err
    assert list(empty_dir.iterdir()) == []


def test_the_real_agent_in_an_empty_directory_prints_one_line_and_no_migrations(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mlflow_sweep", "run"], cwd=tmp_path, env=_clean_env(),
                          capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout, list(tmp_path.iterdir())) == (1, "", [])
    assert proc.stderr.startswith("no sweep found: there is no tracking store at ") and proc.stderr.count("\n") == 1


def test_an_existing_store_without_sweeps_still_says_no_sweep_found(store, capsys):
    assert cli.main(["status"]) == 1
    assert capsys.readouterr().err.startswith(f"no sweep found in the tracking store ({store.uri})")
