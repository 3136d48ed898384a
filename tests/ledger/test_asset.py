"""The frozen ledgers still replay: v1 (tests/assets/ledger-v1.jsonl), v2 (tests/assets/ledger-v2/) and v3
(tests/assets/ledger-v3/: prior runs, enqueued points, config versions)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mlflow_sweep.ledger import Ledger
from mlflow_sweep.config import stored_config
from mlflow_sweep.policy import next_step
from mlflow_sweep.trials import Controls, Enqueued, Proposal, SweepPhase, Trial, TrialState

pytestmark = pytest.mark.timeout(30)

ASSET = Path(__file__).resolve().parents[1] / "assets" / "ledger-v1.jsonl"
ASSET_V2 = Path(__file__).resolve().parents[1] / "assets" / "ledger-v2"
NODE1, NODE2 = "node1-100-aaaaaa", "node2-200-bbbbbb"
EXPECTED = (
    Trial(index=0, params={"lr": 0.1, "layers": 1}, state=TrialState.FINISHED, metric=0.5, point=0, run_id="r0",
          agent_id=NODE1, started=1700000001.0, ended=1700000002.0, history=(0.9, 0.5)),
    Trial(index=1, params={"lr": 0.1, "layers": 2}, state=TrialState.FAILED, point=1, run_id="r1",
          agent_id=NODE2, started=1700000003.0, ended=1700000004.0),
    Trial(index=2, params={"lr": 0.01, "layers": 1}, state=TrialState.FAILED, point=2, run_id="r2",
          agent_id=NODE2, started=1700000005.0, ended=1700000200.0, dead=True),
    Trial(index=3, params={"lr": 0.01, "layers": 1}, state=TrialState.KILLED, metric=0.7, point=2, run_id="r3",
          agent_id=NODE1, started=1700000201.0, ended=1700000230.0, stopped_at=1, history=(0.8, 0.7)),
    Trial(index=4, params={"lr": 0.01, "layers": 2}, point=3, run_id="r4", agent_id=NODE1, started=1700000231.0),
)


@pytest.fixture
def asset_dir(tmp_path: Path) -> Path:
    """A copy of the frozen asset as a ledger directory (the asset itself is never written)."""
    shutil.copyfile(ASSET, tmp_path / "ledger.jsonl")
    return tmp_path


def test_frozen_v1_ledger_replays(asset_dir: Path) -> None:
    state = Ledger(asset_dir).state()
    assert (state.version, state.header["seed"], state.header["sweep_id"], state.header["config"]["method"],
            state.trials) == (1, 1234, "5f0c0ffee0000000000000000000000a", "grid", EXPECTED)


def test_frozen_v1_ledger_is_continued_in_events_and_never_rewritten(asset_dir: Path) -> None:
    ledger = Ledger(asset_dir)
    ended = ledger.complete(4, TrialState.FINISHED, 0.25)
    trial = ledger.claim(lambda state: Proposal({"lr": 0.1, "layers": 1}, point=0), "new-agent").trial
    state = Ledger(asset_dir).state()
    assert (ended, trial.index, state.trials[:4], state.trials[4].state, state.trials[4].metric, state.version,
            (asset_dir / "ledger.jsonl").read_bytes() == ASSET.read_bytes(),
            sorted(p.name for p in (asset_dir / "events").iterdir())) == \
        (True, 5, EXPECTED[:4], TrialState.FINISHED, 0.25, 1, True, ["00000015.json", "00000016.json"])


@pytest.fixture
def asset_v2_dir(tmp_path: Path) -> Path:
    """A copy of the frozen v2 ledger directory (with the temporary file a killed writer left)."""
    shutil.copytree(ASSET_V2, tmp_path / "v2")
    return tmp_path / "v2"


def test_frozen_v2_ledger_replays(asset_v2_dir: Path) -> None:
    state = Ledger(asset_v2_dir).state()
    assert (state.version, state.header["seed"], state.header["sweep_id"], state.trials, state.conflicts) == \
        (2, 1234, "5f0c0ffee0000000000000000000000b", EXPECTED, ())


def test_frozen_v2_ledger_accepts_new_events(asset_v2_dir: Path) -> None:
    ledger = Ledger(asset_v2_dir)
    ended = ledger.complete(4, TrialState.FINISHED, 0.25)
    state = Ledger(asset_v2_dir).state()
    assert (ended, state.trials[4].state, (asset_v2_dir / "events" / "00000015.json").exists()) == \
        (True, TrialState.FINISHED, True)


ASSET_V3 = Path(__file__).resolve().parents[1] / "assets" / "ledger-v3"


def test_frozen_v3_ledger_replays_prior_runs_enqueued_points_and_config_versions(tmp_path: Path) -> None:
    shutil.copytree(ASSET_V3, tmp_path / "v3")
    state = Ledger(tmp_path / "v3").state()
    prior = Trial(index=-1, params={"lr": 0.1, "layers": 1}, state=TrialState.FINISHED, metric=0.45, run_id="p0",
                  prior=True)
    trials = (
        Trial(index=0, params={"lr": 0.01, "layers": 2}, state=TrialState.FINISHED, metric=0.25, point=3, run_id="r0",
              agent_id=NODE1, started=1700000002.0, ended=1700000003.0, enqueued=0),
        Trial(index=1, params={"lr": 0.1, "layers": 1, "warmup": 100}, state=TrialState.KILLED, point=1, run_id="r1",
              agent_id=NODE1, started=1700000005.0, ended=1700000006.0, requeued="interrupted", version=2),
    )
    assert (state.version, state.trials, state.controls, [v.number for v in state.configs]) == (
        3, trials, Controls(SweepPhase.PAUSED, 5, 2, (Enqueued(0, {"lr": 0.01}),), (prior,)), [1, 2])
    config = stored_config(state.config, "sweep v3")
    assert config.defaults == {"warmup": 0}
    resumed = Controls(SweepPhase.RUNNING, 5, 2, state.controls.enqueued, state.controls.priors)
    step = next_step(config, state.trials, 1234, resumed)  # the interrupted point first, under version 2
    assert (step.params, step.retry_of, step.version) == ({"lr": 0.1, "layers": 1, "warmup": 100}, 1, 2)
