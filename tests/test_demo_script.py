"""scripts/demo.sh (the README's first command) says what it does while it installs.

The whole demo (a venv, ~100 packages, a real sweep) was run by hand from a fresh clone; here the
part that turns pip's output into progress lines runs on canned pip output.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / "scripts" / "demo.sh"
PIP_OUTPUT = """\
Looking in indexes: https://pypi.org/simple
Obtaining file:///home/me/mlflow-sweep
  Installing build dependencies: started
Collecting fire>=0.5 (from mlflow-sweep==0.2.0)
  Downloading fire-0.7.1-py3-none-any.whl (115 kB)
Processing /opt/wheels/scipy-1.17.1-cp311-cp311-manylinux_2_27_x86_64.whl (from mlflow-sweep==0.2.0)
Collecting importlib_metadata!=4.7.0,<10,>=3.7.0 (from mlflow-skinny==3.17.2)
Building wheels for collected packages: mlflow-sweep
Installing collected packages: fire, scipy, importlib_metadata, mlflow-sweep
Successfully installed fire-0.7.1 importlib_metadata-8.7.0 mlflow-sweep-0.2.0 scipy-1.17.1
"""


def shown(pip_output: str) -> list[str]:
    proc = subprocess.run(["bash", "-c", f"source {DEMO} && show_pip"], input=pip_output,
                          capture_output=True, text=True, timeout=60, check=True)
    return proc.stdout.splitlines()


def test_the_install_shows_one_line_per_package_then_the_install_step():
    assert shown(PIP_OUTPUT) == [
        "  collecting fire (1 packages so far)",
        "  collecting scipy (2 packages so far)",
        "  collecting importlib_metadata (3 packages so far)",
        "  installing 4 packages into .venv (the longest part)",
        "  done",
    ]


def test_a_last_line_without_newline_is_still_shown():
    assert shown("Collecting fire\nSuccessfully installed fire-0.7.1") == [
        "  collecting fire (1 packages so far)", "  done"]


def test_sourcing_the_demo_runs_nothing(tmp_path):
    proc = subprocess.run(["bash", "-c", f"source {DEMO} && type main >/dev/null && echo sourced"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.stdout == "sourced\n" and list(tmp_path.iterdir()) == []
