"""``mlflow sweep init`` end to end: the real CLI (in this process) on a private sqlite store."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e]

EXAMPLE = """\
command: python train.py --learning-rate ${learning_rate} --batch-size ${batch_size} --optimizer ${optimizer}
experiment_name: spec-example
sweep_name: spec-sweep
entity: my-team
method: random
metric:
  name: metric1
  goal: maximize
run_cap: 10
parameters:
  learning_rate:
    min: 0.0001
    max: 0.1
  batch_size:
    values: [16, 32, 64, 128]
  optimizer:
    values: [adam, sgd]
"""


def _write(tmp_path: Path, text: str, name: str = "sweep_config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_init_creates_the_parent_run_and_prints_the_normalized_config(store, tmp_path: Path):
    path = _write(tmp_path, EXAMPLE)
    proc = store.main("init", str(path), check=True)
    *config_lines, last = proc.stdout.strip().splitlines()
    assert last.startswith("Sweep initialized with ID: ")
    assert config_lines == [
        "sweep_name: spec-sweep",
        "experiment_name: spec-example",
        "method: random",
        "metric: metric1 (maximize; summary best, impute worst)",
        "run_cap: 10",
        "command: python train.py --learning-rate ${learning_rate} --batch-size ${batch_size} "
        "--optimizer ${optimizer}",
        "parameters:",
        "  learning_rate: uniform(min=0.0001, max=0.1)",
        "  batch_size: categorical(values=[16, 32, 64, 128])",
        '  optimizer: categorical(values=["adam", "sgd"])',
    ]
    assert proc.stderr.strip().splitlines() == ["warning: entity is ignored (W&B only)"]

    client = store.client()
    run = client.get_run(last.rsplit(" ", 1)[1])
    experiment = client.get_experiment_by_name("spec-example")
    assert experiment is not None and run.info.experiment_id == experiment.experiment_id
    assert (run.data.tags["sweep"], run.info.run_name) == ("True", "spec-sweep")
    assert [a.path for a in client.list_artifacts(run.info.run_id) if not a.is_dir] == ["sweep_config.yaml"]
    copy = Path(client.download_artifacts(run.info.run_id, "sweep_config.yaml", str(tmp_path / "dl")))
    assert copy.read_text() == path.read_text()


def test_init_with_wandb_aliases_and_defaults(store, tmp_path: Path):
    path = _write(tmp_path, """\
        program: train.py
        project: aliased
        name: aliased-sweep
        parameters:
          x: {values: [1, 2]}
    """, name="wandb.yaml")
    proc = store.main("init", str(path), check=True)
    run_id = proc.stdout.strip().splitlines()[-1].rsplit(" ", 1)[1]
    run = store.client().get_run(run_id)
    experiment = store.client().get_experiment(run.info.experiment_id)
    assert (experiment.name, run.info.run_name, run.data.tags["sweep"]) == ("aliased", "aliased-sweep", "True")
    assert "command: ${env} ${interpreter} ${program} ${args}" in proc.stdout


def test_init_without_names_uses_default_experiment_and_a_generated_run_name(store, tmp_path: Path):
    path = _write(tmp_path, """\
        command: echo ${x}
        parameters:
          x: {values: [1, 2]}
    """)
    proc = store.main("init", str(path), check=True)
    run = store.client().get_run(proc.stdout.strip().splitlines()[-1].rsplit(" ", 1)[1])
    assert (run.info.experiment_id, bool(run.info.run_name)) == ("0", True)
    assert f"sweep_name: {run.info.run_name}\n" in proc.stdout


def test_the_description_is_the_parent_runs_note(store, tmp_path: Path):
    path = _write(tmp_path, """\
        description: |
          Learning-rate scan for the baseline.
          Second line.
        command: echo ${x}
        parameters:
          x: {values: [1, 2]}
    """)
    proc = store.main("init", str(path), check=True)
    run = store.client().get_run(proc.stdout.strip().splitlines()[-1].rsplit(" ", 1)[1])
    assert run.data.tags.get("mlflow.note.content") == "Learning-rate scan for the baseline.\nSecond line.\n"
