"""The config corpus: one file per failure mode in configs/bad, W&B sweep files in configs/good.

Each bad file has its full expected message beside it (``name.expected``, ``<file>`` standing
for the path). Every bad file is checked through ``config.load_config`` and the CLI; a few
representative ones also against a real sqlite store, which must stay empty.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlflow_sweep import cli, config
from mlflow_sweep.errors import ConfigError

CONFIGS = Path(__file__).resolve().parent / "configs"
BAD = sorted(p for p in (CONFIGS / "bad").iterdir() if p.suffix in (".yaml", ".json"))
GOOD = sorted(p for p in (CONFIGS / "good").iterdir() if p.suffix in (".yaml", ".json"))
EXAMPLES = sorted((CONFIGS.parent.parent / "examples").glob("*.yaml"))
# One of each kind: schema + semantic problems, YAML syntax, empty file, JSON syntax, nested path.
BAD_THROUGH_CLI = ["six_problems.yaml", "yaml_syntax.yaml", "empty.yaml", "broken.json",
                   "nested_problem_path.yaml", "metric_and_metrics.yaml"]
GOOD_THROUGH_CLI = ["program_only.yaml", "wandb_docs.json", "nested_parameters.yaml"]


def _expected(path: Path) -> str:
    return path.with_suffix(".expected").read_text(encoding="utf-8").rstrip("\n").replace("<file>", str(path))


def test_corpus_is_complete():
    """Every bad file has its expected message, and the corpus covers enough failure modes."""
    missing = [p.name for p in BAD if not p.with_suffix(".expected").exists()]
    assert (missing, len(BAD) >= 30, len(GOOD) >= 8) == ([], True, True)


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_bad_config_lists_every_problem(path: Path):
    with pytest.raises(ConfigError) as info:
        config.load_config(path)
    assert str(info.value) == _expected(path)


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_bad_config_in_process_cli_exits_2(path: Path, capsys: pytest.CaptureFixture[str]):
    code = cli.main(["init", str(path)])
    out, err = capsys.readouterr()
    assert (code, out, err) == (2, "", _expected(path) + "\n")


@pytest.mark.e2e
@pytest.mark.parametrize("name", BAD_THROUGH_CLI)
def test_bad_config_cli_creates_nothing(store, name: str):
    path = CONFIGS / "bad" / name
    proc = store.main("init", str(path))
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", _expected(path) + "\n")
    client = store.client()
    experiments = client.search_experiments(view_type=3)  # ViewType.ALL
    runs = client.search_runs([e.experiment_id for e in experiments], run_view_type=3)
    assert ([e.name for e in experiments], list(runs)) == (["Default"], [])


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_good_config_loads_and_round_trips(path: Path):
    cfg = config.load_config(path)
    again = config.config_from_dict(json.loads(json.dumps(cfg.raw)), cfg.source)
    rendered = config.render_config(cfg)
    assert again == cfg
    assert all(f"  {name}: {dist.describe()}" in rendered for name, dist in cfg.parameters.items())


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_load_without_warnings(path: Path):
    assert config.load_config(path).warnings == ()


@pytest.mark.e2e
@pytest.mark.parametrize("name", GOOD_THROUGH_CLI)
def test_good_config_initializes(store, name: str):
    proc = store.main("init", str(CONFIGS / "good" / name))
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("Sweep initialized with ID: ")
    run = store.client().get_run(last.rsplit(" ", 1)[1])
    assert run.data.tags["sweep"] == "True"
