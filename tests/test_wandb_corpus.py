"""Sweep files in the patterns of public W&B files run as W&B's agent runs them.

Each ``configs/wandb/NAME.yaml`` has ``NAME.argv``: one trial's parameters in W&B's run-config
shape and the argv W&B's agent gives for them, written by hand from W&B's code (see
``configs/README.md``, which also lists the patterns found in about 60 public files). Three checks:

1. ``wandb_argv`` below, a small re-implementation of W&B's agent, gives the written argv; it is
   then trusted for trials whose values the sweep draws.
2. ``command.build_argv`` gives the same argv for the written parameters (up to the documented
   differences: the interpreter, and a nested block as JSON instead of Python's repr).
3. End to end: ``init`` and an agent (in process, one migrated store for the module) run each file
   against a stub program that records its argv and params file, without importing mlflow. Each
   trial's argv must be W&B's for the values the trial got; the params file and the child run's
   params keep flat names flat. Files without program/command initialize and ``run`` exits 2.

Files that W&B's schema refuses are ``configs/bad/wandb_*.yaml``, checked with the other bad files.
"""
from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import shutil
import sqlite3
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlflow_sweep import cli, command, config

CONFIGS = Path(__file__).resolve().parent / "configs"
FIXTURES = sorted((CONFIGS / "wandb").glob("*.yaml"))
REFUSED = sorted((CONFIGS / "bad").glob("wandb_*.yaml"))
RUNNABLE = [p for p in FIXTURES if yaml.safe_load(p.with_suffix(".argv").read_text())["argv"] is not None]
FUNCTION_ONLY = [p for p in FIXTURES if p not in RUNNABLE]
ENVIRON = {"SWEEP_CORPUS_DATA": "/data/corpus"}
PYTHONS = ("python", "python3", "python3.8")
JSON_FILE = "<args_json_file>"
_WANDB_ENVVAR = re.compile(r"\$\{envvar:([A-Z0-9_]*)\}")
STUB = """\
import json, os, sys
params_file = os.environ.get("MLFLOW_SWEEP_PARAMS_FILE")
record = {"argv": sys.argv, "params_file": params_file,
          "params": open(params_file).read() if params_file else None}
out = os.path.join(os.environ["STUB_OUT"], os.environ["MLFLOW_SWEEP_ID"] + "-" + os.environ["MLFLOW_SWEEP_TRIAL"])
with open(out + ".json", "w") as f:
    json.dump(record, f)
"""


def _expected(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.with_suffix(".argv").read_text())


# --- W&B's agent, re-implemented from wandb_agent.py and sdk/launch/sweeps/utils.py -----------


def wandb_argv(sweep: dict, tree: dict, environ: dict[str, str]) -> list[str]:
    """The argv W&B's agent builds for a trial whose run config is ``tree``.

    Args:
        sweep: the sweep file as PyYAML reads it (W&B's agent reads it the same way).
        tree: the trial's values, nested blocks as dicts (W&B's ``command["args"]`` values).
        environ: the agent's environment, for ``${envvar:NAME}``.
    """
    command = sweep.get("command")
    if not (command and isinstance(command, list)):  # W&B's agent ignores a string command
        command = ["${env}", "${interpreter}", "${program}", "${args}"]
    command = [_WANDB_ENVVAR.sub(lambda m: environ.get(m.group(1), m.group(1)), str(c)) for c in command]
    flags = [f"{name}={value}" for name, value in tree.items()]
    sweep_vars = {
        "args": [f"--{f}" for f in flags],
        "args_no_hyphens": flags,
        "args_no_equals": [x for name, value in tree.items() for x in (f"--{name}", str(value))],
        "args_no_boolean_flags": [f"--{name}" if value is True else f"--{name}={value}"
                                  for name, value in tree.items() if value is not False],
        "args_json": [json.dumps(tree)],
        "interpreter": ["python"],
        "program": [sweep.get("program")],
        "args_json_file": [JSON_FILE],
        "env": ["/usr/bin/env"],
    }
    argv: list[str] = []
    for chunk in command:
        if chunk.startswith("${") and chunk.endswith("}"):
            argv += sweep_vars.get(chunk[2:-1]) or []
        else:
            argv.append(chunk)
    return argv


def _flat(cfg: config.SweepConfig, tree: dict) -> dict[str, Any]:
    """A run-config tree back to MLflow param names, through the config's key paths."""
    out = {}
    for name, path in cfg.paths.items():
        node: Any = tree
        for part in path:
            node = node[part]
        out[name] = node
    return out


def _same(ours: list[str], theirs: list[str]) -> bool:
    """Equal, except that a nested block is JSON in ours and Python's repr in W&B's (any program parses JSON)."""
    return len(ours) == len(theirs) and all(a == b or _same_block(a, b) for a, b in zip(ours, theirs))


def _same_block(ours: str, theirs: str) -> bool:
    head_a, block_a = ours.split("=", 1) if "={" in ours else ("", ours)
    head_b, block_b = theirs.split("=", 1) if "={" in theirs else ("", theirs)
    with contextlib.suppress(ValueError, SyntaxError):
        return head_a == head_b and block_a.startswith("{") and json.loads(block_a) == ast.literal_eval(block_b)
    return False


# --- pure checks --------------------------------------------------------------------------------


def test_corpus_size_and_sidecars():
    missing = [p.name for p in FIXTURES if not p.with_suffix(".argv").exists()]
    refused_missing = [p.name for p in REFUSED if not p.with_suffix(".expected").exists()]
    assert (missing, refused_missing, len(FIXTURES) + len(REFUSED) >= 40) == ([], [], True)


@pytest.mark.parametrize("path", RUNNABLE, ids=lambda p: p.stem)
def test_the_wandb_reference_gives_the_written_argv(path: Path):
    expected = _expected(path)
    assert wandb_argv(yaml.safe_load(path.read_text()), expected["params"], ENVIRON) == expected["argv"]


@pytest.mark.parametrize("path", RUNNABLE, ids=lambda p: p.stem)
def test_our_argv_is_wandbs(path: Path):
    expected = _expected(path)
    cfg = config.load_config(path)
    ours = command.build_argv(cfg, _flat(cfg, expected["params"]), interpreter="python", json_file=JSON_FILE,
                              environ=ENVIRON)
    if isinstance(cfg.command, str):
        pytest.fail("the corpus holds W&B files: list commands only")
    assert _same(ours, expected["argv"]), (ours, expected["argv"])


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_init_warnings(path: Path):
    expected = [w.replace("<file>", str(path)) for w in _expected(path).get("warnings", [])]
    assert list(config.load_config(path).warnings) == expected


def test_the_block_comparison_is_not_lenient():
    assert (_same(['--o={"a": 1}'], ["--o={'a': 1}"]), _same(['--o={"a": 1}'], ["--o={'a': 2}"]),
            _same(['--p={"a": 1}'], ["--o={'a': 1}"]), _same(["x"], ["x", "y"])) == (True, False, False, False)


# --- end to end -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus_store(tmp_path_factory: pytest.TempPathFactory, template_store: Path):
    """One migrated store for the module, the stub programs, and the agent's cwd and environment."""
    from mlflow_sweep import tracking

    root = tmp_path_factory.mktemp("corpus")
    db = root / "mlflow.db"
    shutil.copyfile(template_store, db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                     ((root / "mlruns" / "0").as_uri(),))
    (root / "stub-out").mkdir()
    bin_dir = root / "bin"
    _write_stubs(root, bin_dir)
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith(("MLFLOW_", "SWEEP_CORPUS_"))]:
            mp.delenv(key)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        mp.setenv("STUB_OUT", str(root / "stub-out"))
        mp.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        for key, value in ENVIRON.items():
            mp.setenv(key, value)
        mp.chdir(root)
        tracking._client_for.cache_clear()
        yield root
        tracking._client_for.cache_clear()


def _write_stubs(root: Path, bin_dir: Path) -> None:
    """Every program, script and launcher the corpus names, as the stub (Pythons as the real one)."""
    bin_dir.mkdir()
    for name in PYTHONS:
        _executable(bin_dir / name, f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    for path in FIXTURES:
        sweep = yaml.safe_load(path.read_text())
        for target, where in _programs(sweep):
            _executable((bin_dir if where == "bin" else root) / target, f"#!{sys.executable}\n{STUB}")


def _programs(sweep: dict) -> list[tuple[str, str]]:
    items = [str(c) for c in sweep.get("command") or []]
    out = [(sweep["program"], "root")] if sweep.get("program") else []
    launcher = next((c for c in items if c not in ("${env}",)), None)
    if launcher and not launcher.startswith("${") and "/" not in launcher and launcher not in PYTHONS:
        out.append((launcher, "bin"))
    out += [(c, "root") for c in items if c.endswith((".py", ".sh")) and not c.startswith(("-", "/"))]
    out += [(items[i + 1].replace(".", "/") + ".py", "root") for i, c in enumerate(items[:-1]) if c == "-m"]
    return out


def _executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _init(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    code = cli.main(["init", str(path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out.strip().splitlines()[-1].rsplit(" ", 1)[1]


def _children(sweep_id: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient()
    experiment_id = client.get_run(sweep_id).info.experiment_id
    return client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{sweep_id}'")


def _as_seen(argv: list[str]) -> list[str]:
    """What the started program finds in its sys.argv, for an argv W&B's agent would exec."""
    argv = argv[1:] if argv[0] == "/usr/bin/env" else list(argv)
    if argv[0] in PYTHONS:
        argv = argv[1:]
        if argv[0] == "-m":
            argv = [argv[1].replace(".", "/") + ".py", *argv[2:]]
    return argv


def _recorded(root: Path, sweep_id: str, trial: int) -> dict[str, Any]:
    record = json.loads((root / "stub-out" / f"{sweep_id}-{trial}.json").read_text())
    first = Path(record["argv"][0])
    if first.is_absolute():  # a launcher found in PATH, or a module run with -m
        record["argv"][0] = first.name if first.parent == root / "bin" else str(first.relative_to(root))
    return record


@pytest.mark.e2e
@pytest.mark.timeout(120)
@pytest.mark.parametrize("path", RUNNABLE, ids=lambda p: p.stem)
def test_runs_end_to_end_with_wandbs_argv(corpus_store: Path, path: Path, capsys: pytest.CaptureFixture[str]):
    sweep_id = _init(path, capsys)
    code = cli.main(["run", "--sweep-id", sweep_id, "--count", "2"])
    _, err = capsys.readouterr()
    cfg = config.load_config(path)
    sweep = yaml.safe_load(path.read_text())
    runs = _children(sweep_id)
    assert (code, sorted(r.info.status for r in runs)) == (0, ["FINISHED"] * len(runs)), err
    assert runs, err
    for run in runs:
        params = json.loads(run.data.tags["sweep.params"])
        tree = cfg.nest(params)
        record = _recorded(corpus_store, sweep_id, int(run.data.tags["sweep.trial"]))
        theirs = [record["params_file"] if a == JSON_FILE else a for a in _as_seen(wandb_argv(sweep, tree, ENVIRON))]
        assert _same(record["argv"], theirs), (record["argv"], theirs)
        assert json.loads(record["params"]) == tree  # MLFLOW_SWEEP_PARAMS_FILE: flat names stay flat
        assert run.data.params == {name: str(value) for name, value in params.items()}


@pytest.mark.e2e
@pytest.mark.timeout(120)
@pytest.mark.parametrize("path", FUNCTION_ONLY, ids=lambda p: p.stem)
def test_a_file_for_the_function_agent_initializes_and_run_starts_nothing(
        corpus_store: Path, path: Path, capsys: pytest.CaptureFixture[str]):
    sweep_id = _init(path, capsys)
    code = cli.main(["run", "--sweep-id", sweep_id])
    out, err = capsys.readouterr()
    runs = _children(sweep_id)
    assert (code, out, len(runs), "Traceback" in err) == (2, "", 0, False)
    assert err == (f"sweep {sweep_id}: its file sets neither program nor command, so 'mlflow sweep run' has "
                   "nothing to start; add program (or command) to the sweep file, or run the trials from Python "
                   "with the function agent: mlflow_sweep.agent(sweep_id, function=train)\n")
