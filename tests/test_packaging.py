"""The wheel ships the schema as package data, and the installed package finds it (never
through a path relative to the repository).

The wheel is built from a copy of the sources (so the shared working tree gets no build/ dir)
and installed with --no-deps into a fresh venv that sees the running environment's packages,
so nothing is downloaded.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
SOURCES = ["setup.cfg", "pyproject.toml", "README.md", "mlflow_sweep", "schemas"]

CHECK = """\
import json, sys
import mlflow_sweep
from mlflow_sweep import config, schema
from mlflow_sweep.errors import ConfigError
good = config.load_config("sweep.yaml")
try:
    config.load_config("bad.yaml")
except ConfigError as exc:
    bad = str(exc)
print(json.dumps({"package": mlflow_sweep.__file__, "schema": schema.schema_source(),
                  "params": list(good.parameters), "bad": bad}))
"""


def _run(argv: list[str], cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{argv}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def _build_wheel(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--skip-dependency-check", "--outdir", str(tmp_path / "dist")], src)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    return wheel


def _venv_seeing_this_env(tmp_path: Path) -> Path:
    """A fresh venv whose dependencies come from the running interpreter's site-packages."""
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], tmp_path)
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp_path).strip())
    # --system-site-packages reaches the base interpreter only; when tests run in a venv, its
    # packages are added by path (a plain path line does not run the editable-install hook).
    paths = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site / "zz_running_env.pth").write_text("".join(f"{p}\n" for p in sorted(paths)))
    return python


def test_installed_wheel_loads_the_schema_from_the_package(tmp_path: Path):
    wheel = _build_wheel(tmp_path)
    assert "mlflow_sweep/schemas/sweep.schema.json" in zipfile.ZipFile(wheel).namelist()
    python = _venv_seeing_this_env(tmp_path)
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
          "--disable-pip-version-check", "-q", str(wheel)], tmp_path)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "sweep.yaml").write_text(textwrap.dedent("""\
        command: python train.py --lr ${lr}
        parameters:
          lr: {min: 0.001, max: 0.1}
    """))
    (elsewhere / "bad.yaml").write_text("command: x\nrun_cpa: 3\nparameters: {lr: {values: []}}\n")
    import json

    result = json.loads(_run([str(python), "-c", CHECK], elsewhere))
    site = str(tmp_path / "venv")
    assert (result["package"].startswith(site), result["schema"].startswith(site)) == (True, True), result
    assert str(REPO) not in result["schema"] and result["schema"].endswith("mlflow_sweep/schemas/sweep.schema.json")
    assert result["params"] == ["lr"]
    assert result["bad"] == ("bad.yaml: invalid sweep configuration (2 problems)\n"
                             "  parameters.lr.values: must not be empty\n"
                             "  run_cpa: unknown key (did you mean 'run_cap'?)")
