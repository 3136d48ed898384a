"""Random search: trial k's values come from a generator seeded with (seed, k) only."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from mlflow_sweep.trials import Proposal

if TYPE_CHECKING:
    import numpy

    from mlflow_sweep.trials import Trial


def trial_rng(seed: int, index: int) -> numpy.random.Generator:
    """The generator for trial ``index`` of a sweep with ``seed``, independent of any history.

    Args:
        seed: the sweep's effective seed (any int; negatives are mapped, SeedSequence wants >= 0).
        index: the trial's index.
    """
    import numpy

    return numpy.random.default_rng([seed % 2**128, index])


def propose(config: Any, history: Sequence[Trial], seed: int, index: int) -> Proposal:
    """Sample every parameter for trial ``index``; history is ignored, so every agent draws the same trial."""
    rng = trial_rng(seed, index)
    return Proposal(params={name: dist.sample(rng) for name, dist in config.parameters.items()})
