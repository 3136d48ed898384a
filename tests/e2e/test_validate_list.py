"""``mlflow sweep validate FILE`` and ``mlflow sweep list``."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlflow_sweep import cli
from mlflow_sweep.trials import TrialState
from tests.e2e.agents import init_sweep
from tests.e2e.test_finalize import CONFIG, add_trials, lr_only_trials

pytestmark = [pytest.mark.e2e]
CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_validate_a_good_file_prints_the_normalized_config_and_creates_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "entity": "me"}))
    assert cli.main(["validate", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "  lr: log_uniform_values(min=1e-05, max=0.1)\n" in out
    assert out.endswith(f"{path}: valid with 1 warning\n") and err.startswith("warning: ") and "entity" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.yaml"]


def test_validate_a_bad_file_lists_every_problem_and_exits_2(capsys):
    bad = CONFIGS / "bad" / "alias_conflict.yaml"
    assert cli.main(["validate", str(bad)]) == 2
    out, err = capsys.readouterr()
    expected = bad.with_suffix(".expected").read_text().replace("<file>", str(bad))
    assert (out, err.rstrip("\n")) == ("", expected.rstrip("\n"))


def test_validate_imports_no_mlflow(tmp_path):
    code = ("import json, sys\nfrom mlflow_sweep import cli\ncode = cli.main(['validate', sys.argv[1]])\n"
            "print(json.dumps([code, [m for m in ('mlflow', 'sqlalchemy') if m in sys.modules]]))")
    out = subprocess.run([sys.executable, "-c", code, str(CONFIGS / "good" / "grid.yaml")], cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out.splitlines()[-1]) == [0, []] and list(tmp_path.iterdir()) == []


def test_list_shows_sweeps_newest_first_with_state_trials_and_best(store, capsys):
    grid = init_sweep(store, {"command": "echo ${x}", "method": "grid", "sweep_name": "the-grid",
                              "metric": {"name": "acc", "goal": "maximize"},
                              "parameters": {"x": {"values": [1, 2]}}}, name="grid.yaml")
    add_trials(store, grid, [({"x": 1}, TrialState.FINISHED, 0.5), ({"x": 2}, TrialState.FINISHED, 0.75)])
    store.client().create_experiment("other", artifact_location=(store.root / "other").as_uri())
    random = init_sweep(store, {**CONFIG, "sweep_name": "the-random", "experiment_name": "other"})
    specs = lr_only_trials(3)
    add_trials(store, random, specs + [(specs[0][0], None, None)])
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "EXPERIMENT", "METHOD", "STATE", "TRIALS", "BEST"]
    best = min(range(3), key=lambda i: specs[i][2])
    assert lines[1].split()[:6] == [random, "the-random", "other", "random", "running", "3/30"]
    assert lines[1].endswith(f"(#{best})") and f"loss={specs[best][2]:.6g}" in lines[1]
    assert lines[2].split() == [grid, "the-grid", "Default", "grid", "done", "2/2", "acc=0.75", "(#1)"]
    assert lines[3] == f"2 sweeps in {store.uri}"


def test_list_of_an_empty_store_and_of_no_store(store, tmp_path, monkeypatch, capsys):
    assert cli.main(["list"]) == 0
    assert capsys.readouterr().out == f"No sweeps in the tracking store ({store.uri}); 'mlflow sweep init CONFIG' creates one.\n"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'nowhere' / 'mlflow.db'}")
    assert cli.main(["list"]) == 0
    assert "No sweeps: there is no tracking store at " in capsys.readouterr().out
    assert not (tmp_path / "nowhere").exists()


def test_list_survives_a_sweep_whose_ledger_is_gone(store, capsys):
    import shutil

    sweep_id = init_sweep(store, CONFIG)
    shutil.rmtree(Path(store.client().get_run(sweep_id).data.tags["sweep.ledger_dir"]))
    assert cli.main(["list"]) == 0
    row = capsys.readouterr().out.splitlines()[1]
    assert row.startswith(sweep_id) and "ledger unreadable" in row
