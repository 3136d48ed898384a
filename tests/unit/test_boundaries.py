"""Layer boundaries (docs/design.md): pure modules load no I/O libraries; the CLI loads nothing heavy.

Checked in a fresh interpreter, since this test session has long imported everything.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

PURE = ["mlflow_sweep.config", "mlflow_sweep.samplers", "mlflow_sweep.analysis", "mlflow_sweep.policy"]
IO_LIBRARIES = ["mlflow", "matplotlib"]
HEAVY = ["numpy", "jsonschema", "skopt", "sklearn", "mlflow", "scipy", "matplotlib"]


def _loaded_after_import(modules: list[str], watched: list[str]) -> list[str]:
    code = ("import json, sys\n" + "".join(f"import {m}\n" for m in modules)
            + f"print(json.dumps([m for m in {watched!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_import_no_io_library(module: str):
    assert _loaded_after_import([module], IO_LIBRARIES) == []


def test_cli_imports_nothing_heavy():
    """``mlflow sweep --help`` stays fast (no slower than 1.5x ``mlflow --help``) only while cli.py imports lazily."""
    assert _loaded_after_import(["mlflow_sweep.cli"], HEAVY) == []


def test_the_package_and_its_python_api_import_nothing_heavy():
    """``import mlflow_sweep`` (the Python API) loads mlflow and the rest only when a function is called."""
    assert _loaded_after_import(["mlflow_sweep", "mlflow_sweep.api"], HEAVY + ["yaml", "fire"]) == []


def test_the_supervisor_of_run_gpus_imports_nothing_heavy():
    """``run --gpus`` starts its agents at once: the supervising process never pays for ``import mlflow``."""
    assert _loaded_after_import(["mlflow_sweep.devices", "mlflow_sweep.device_agents"], HEAVY + ["yaml"]) == []
