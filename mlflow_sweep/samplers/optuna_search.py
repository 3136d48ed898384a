"""Optuna's samplers as methods (``tpe``, ``gp``, ``cmaes``, ``nsga2``): a study rebuilt for each proposal.

Pure: a proposal depends only on (config, history, seed, index). Each call builds an in-memory
Optuna study from the ledger's history (trials in index order; running ones as RUNNING, which
TPE's constant liar and the GP's batch acquisition treat as pending), seeds the sampler from
(seed, index) and asks it for one trial. No Optuna storage is shared between agents: the ledger
is the only state, so the search stays exact across agents and hosts.

TPE and the GP keep no state beyond the trials, so the finished trials are added at once.
CMA-ES and NSGA-II keep theirs in each trial (its generation, and CMA-ES its search
distribution), written while the trial is sampled: their history is replayed trial by trial,
each with its recorded values fixed (Optuna's ``enqueue_trial``), so the sampler assigns the
generations and updates its state as if it had proposed them, in trial order.

Optuna is imported inside the functions: it is an optional extra (``pip install
"mlflow-sweep[optuna]"``), and the GP needs PyTorch besides.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

from mlflow_sweep import methods
from mlflow_sweep.distributions import quantize, value_key
from mlflow_sweep.errors import ConfigError, Problem
from mlflow_sweep.samplers import outcomes
from mlflow_sweep.trials import Proposal

if TYPE_CHECKING:
    import numpy

    from mlflow_sweep.distributions import Distribution
    from mlflow_sweep.trials import Trial

_REPLAYED = frozenset({"cmaes", "nsga2"})
"""Samplers whose state lives in the trials they sampled, so their history is replayed."""


def _float(lo: float, hi: float, log: bool = False, q: float | None = None) -> tuple:
    return ("float", lo, hi, log, q)


def _sd3(s: Mapping) -> tuple[float, float]:
    """mu ± 3 sigma: the box searched for normal-type distributions (as ``bayes``)."""
    return s["mu"] - 3 * s["sigma"], s["mu"] + 3 * s["sigma"]


_BOX: dict[str, Callable[[Mapping], tuple]] = {
    "categorical": lambda s: ("categorical", tuple(s["values"])),
    "int_uniform": lambda s: ("int", int(s["min"]), int(s["max"])),
    "uniform": lambda s: _float(s["min"], s["max"]),
    "q_uniform": lambda s: _float(s["min"], s["max"], q=s["q"]),
    "log_uniform": lambda s: _float(math.exp(s["min"]), math.exp(s["max"]), True),
    "q_log_uniform": lambda s: _float(math.exp(s["min"]), math.exp(s["max"]), True, s["q"]),
    "log_uniform_values": lambda s: _float(s["min"], s["max"], True),
    "q_log_uniform_values": lambda s: _float(s["min"], s["max"], True, s["q"]),
    "inv_log_uniform": lambda s: _float(math.exp(-s["max"]), math.exp(-s["min"]), True),
    "inv_log_uniform_values": lambda s: _float(s["min"], s["max"], True),
    "normal": lambda s: _float(*_sd3(s)),
    "q_normal": lambda s: _float(*_sd3(s), q=s["q"]),
    "log_normal": lambda s: _float(*map(math.exp, _sd3(s)), True),
    "q_log_normal": lambda s: _float(*map(math.exp, _sd3(s)), True, s["q"]),
    "beta": lambda s: _float(0.0, 1.0),
    "q_beta": lambda s: _float(0.0, 1.0, q=s["q"]),
}
"""Every W&B distribution → the box Optuna searches, as ``bayes`` searches it.

Categoricals are searched by the index of their value (so lists and dicts work as values);
quantized distributions in the continuous box, rounded on output (W&B's rounding); normal-type
ones over mu ± 3 sigma (in log space for log-normals); a beta over [0, 1]. Constants, one-value
categoricals and ``sigma == 0`` are no dimension.
"""


def _is_fixed(spec: Mapping) -> bool:
    name = spec["distribution"]
    if name == "constant":
        return True
    if name == "categorical":
        return len(spec["values"]) == 1
    return name.endswith("normal") and spec.get("sigma", 1.0) <= 0


class _Dim:
    """One searched parameter: its Optuna distribution and the maps between value and Optuna's value."""

    def __init__(self, name: str, dist: Distribution, box: tuple) -> None:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        self.name, self.dist, self.kind = name, dist, box[0]
        if self.kind == "categorical":
            self.values, self.keys = box[1], [value_key(v) for v in box[1]]
            self.optuna: Any = CategoricalDistribution(list(range(len(self.values))))
        elif self.kind == "int":
            self.lo, self.hi = box[1], box[2]
            self.optuna = IntDistribution(self.lo, self.hi)
        else:
            self.lo, self.hi, self.q = box[1], box[2], box[4]
            self.optuna = FloatDistribution(self.lo, self.hi, log=box[3])

    def encode(self, value: Any) -> Any:
        """A trial's value as Optuna's, inside the box; ValueError when it cannot be placed."""
        if self.kind == "categorical":
            return self.keys.index(value_key(value))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(value)
        if self.kind == "int":
            return min(max(int(round(value)), self.lo), self.hi)
        return min(max(float(value), self.lo), self.hi)

    def decode(self, value: Any) -> Any:
        """Optuna's value as the parameter's (a category's value, an int, a quantized float)."""
        if self.kind == "categorical":
            return self.values[int(value)]
        if self.kind == "int":
            return int(value)
        return float(value) if self.q is None else quantize(float(value), self.q)


def _dims(parameters: Mapping[str, Distribution]) -> tuple[list[_Dim], dict[str, Any]]:
    """Searched dimensions and fixed values (constants, degenerate distributions)."""
    dims, fixed = [], {}
    for name, dist in parameters.items():
        spec = dist.spec()
        if _is_fixed(spec):
            fixed[name] = dist.ppf(0.5)
        else:
            dims.append(_Dim(name, dist, _BOX[spec["distribution"]](spec)))
    return dims, fixed


def _encode(dims: Sequence[_Dim], params: Mapping[str, Any]) -> dict[str, Any] | None:
    try:
        return {d.name: d.encode(params[d.name]) for d in dims}
    except (KeyError, ValueError, TypeError, OverflowError, IndexError):
        return None


def _seed(seed: int, index: int) -> int:
    """The sampler's seed for trial ``index``: from (seed, index) only, so every agent draws the same."""
    import numpy as np

    return int(np.random.default_rng([seed % 2**128, 2, index]).integers(2**31))


def require(method: str) -> None:
    """Raise the config error that says what to install when ``method``'s packages are missing.

    Args:
        method: an Optuna method (``tpe``, ``gp``, ``cmaes``, ``nsga2``).
    """
    gaps = methods.missing(method)
    if gaps:
        raise ConfigError("sweep config", [Problem("method", methods.missing_reason(method, gaps))])


def _sampler(method: str, seed: int) -> Any:
    """Optuna's sampler behind ``method``, with Optuna's defaults, seeded."""
    import optuna

    cls = getattr(optuna.samplers, methods.METHODS[method].optuna or "")
    if method in ("gp", "cmaes"):
        return cls(seed=seed, warn_independent_sampling=False)
    return cls(seed=seed)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Optuna's per-trial INFO lines and experimental warnings off, and back as they were after."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        optuna.logging.set_verbosity(level)


def _rows(dims: Sequence[_Dim], history: Sequence[Trial], objectives: Sequence[Any]) -> list[tuple]:
    """(Optuna params, values or None for pending, or () for failed) per trial, in index order.

    Values follow ``outcomes.targets`` (imputed as the objective's ``impute`` says) and are given
    back in each objective's own direction; a trial with nothing to impute is failed for Optuna.
    """
    told = {t.index: v for t, v in outcomes.targets(history, objectives)}
    rows = []
    for trial in sorted(history, key=lambda t: t.index):
        params = _encode(dims, trial.params)
        if params is None:
            continue
        if trial.index in told and told[trial.index] is outcomes.PENDING:
            rows.append((params, None))
        elif trial.index in told:
            rows.append((params, tuple(m.sign * v for m, v in zip(objectives, told[trial.index]))))
        else:
            rows.append((params, ()))
    return rows


def _frozen(params: dict, values: tuple | None, distributions: dict) -> Any:
    from optuna.trial import TrialState, create_trial

    if values is None:
        return create_trial(params=params, distributions=distributions, state=TrialState.RUNNING)
    if not values:
        return create_trial(params=params, distributions=distributions, state=TrialState.FAIL)
    return create_trial(params=params, distributions=distributions, values=list(values))


def _replay(study: Any, rows: Sequence[tuple], distributions: dict) -> None:
    """Ask for each past trial with its params fixed, so the sampler runs as if it had proposed it."""
    from optuna.trial import TrialState

    for params, values in rows:
        study.enqueue_trial(params)
        trial = study.ask(distributions)
        trial.relative_params  # noqa: B018 (the sampler records its state while sampling)
        if values is None:
            continue
        if values:
            study.tell(trial, list(values))
        else:
            study.tell(trial, state=TrialState.FAIL)


def _ask(method: str, dims: Sequence[_Dim], history: Sequence[Trial], objectives: Sequence[Any],
         seed: int) -> dict[str, Any]:
    import optuna

    distributions = {d.name: d.optuna for d in dims}
    rows = _rows(dims, history, objectives)
    study = optuna.create_study(directions=[m.goal for m in objectives], sampler=_sampler(method, seed))
    if method in _REPLAYED:
        _replay(study, rows, distributions)
    else:
        study.add_trials([_frozen(p, v, distributions) for p, v in rows])
    return study.ask(distributions).params


def prepare(method: str) -> None:
    """Check ``method``'s packages, then import them now, outside the ledger lock (Optuna about 0.2 s,
    PyTorch for ``gp`` about 1 s), so the first proposal inside the lock is quick.

    Args:
        method: the sweep's method.
    """
    require(method)
    import optuna.samplers  # noqa: F401
    import optuna.trial  # noqa: F401

    if method == "gp":
        import torch  # noqa: F401  (Optuna imports it lazily, at the first GP proposal)


def propose(config: Any, history: Sequence[Trial], seed: int, index: int) -> Proposal:
    """The next trial's values from Optuna's sampler behind ``config.method``.

    Args:
        config: the sweep config (``method``, ``parameters``, ``objectives``).
        history: every trial so far, in any state; running ones are pending.
        seed: the sweep's effective seed.
        index: the new trial's index; with ``seed`` it seeds the sampler.
    """
    require(config.method)
    dims, fixed = _dims(config.parameters)
    if not dims:
        return Proposal(params=dict(fixed))
    with _quiet():
        chosen = _ask(config.method, dims, history, config.objectives, _seed(seed, index))
    values = _decode(dims, chosen, _rng(seed, index))
    return Proposal(params={n: fixed[n] if n in fixed else values[n] for n in config.parameters})


def _rng(seed: int, index: int) -> numpy.random.Generator:
    import numpy as np

    return np.random.default_rng([seed % 2**128, 3, index])


def _decode(dims: Sequence[_Dim], chosen: Mapping[str, Any], rng: numpy.random.Generator) -> dict[str, Any]:
    """Optuna's values as the parameters', each inside its distribution's support (a bug guard samples)."""
    out = {}
    for d in dims:
        value = d.decode(chosen[d.name])
        out[d.name] = value if d.dist.contains(value) else d.dist.sample(rng)
    return out
