"""Bayesian search: a Latin-hypercube design, then a Gaussian process (scikit-optimize's) with log EI.

Pure: a proposal depends only on (config, history, seed, index), so every agent that rebuilds it
from the ledger gets the same one. The GP's hyperparameters are fitted by MAP with Optuna's GP's
priors, and log EI is maximized by L-BFGS-B from the best trial and from candidates
(``acquisition``). Settings below were chosen by measurement with ``scripts/bench_bayes.py``;
docs/benchmarks.md has the figures, and what else was tried.
"""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from mlflow_sweep.distributions import quantize, value_key
from mlflow_sweep.samplers import outcomes
from mlflow_sweep.trials import Proposal

if TYPE_CHECKING:
    import numpy

    from mlflow_sweep.distributions import Distribution
    from mlflow_sweep.trials import Trial

log = logging.getLogger(__name__)

# Measured with scripts/bench_bayes.py (20 seeds, median regret at 30 / 60 trials; the figures of
# every step are in docs/benchmarks.md). Against skopt's own GP and EI on candidates: the MAP fit
# took Hartmann6 at 30 from 0.44 to 0.24; climbing log EI took Branin at 60 from 4e-4 to 1e-4 and
# the noise floor of 1e-8 (1e-5 before) to 2.5e-6; Yeo-Johnson on a skewed y, kept before, now
# cost Branin 20x at 30 trials (0.0037 -> 0.080) and was dropped. 5-8 design rows beat skopt's 10
# random points.
N_DESIGN = 6          # Latin-hypercube rows before the GP
TRAIN_CAP = 80        # most observations one GP fit sees (the fit is cubic in this)
TRAIN_BEST = 30       # of which the best ones always kept; the rest is a seeded sample
N_RANDOM = 2000       # uniform candidates scored by log EI
N_CLIMB = 10          # climbed by L-BFGS-B: the best candidate and 9 drawn with weight EI (Optuna's rule)
NOISE_MIN = 1e-8      # the GP's noise variance, in units of the standardized y: its lower bound…
NOISE_MAX = 1e5       # …and its upper bound (the prior keeps it small)


def _real(lo: float, hi: float, log_prior: bool = False, q: float | None = None) -> tuple:
    from skopt.space import Real

    dim = Real(lo, hi, prior="log-uniform" if log_prior else "uniform", transform="normalize")
    decode = (lambda x: float(x)) if q is None else (lambda x: quantize(float(x), q))
    return dim, decode, lambda v: min(max(float(v), lo), hi)


def _integer(lo: int, hi: int) -> tuple:
    from skopt.space import Integer

    dim = Integer(lo, hi, transform="normalize")
    return dim, int, lambda v: min(max(int(round(v)), lo), hi)


def _categorical(values: Sequence[Any]) -> tuple:
    from skopt.space import Categorical

    keys = [value_key(v) for v in values]
    dim = Categorical(list(range(len(values))), transform="onehot")
    return dim, lambda i: values[int(i)], lambda v: keys.index(value_key(v))


def _sd3(s: Mapping) -> tuple[float, float]:
    """mu ± 3 sigma: the box searched for normal-type distributions."""
    return s["mu"] - 3 * s["sigma"], s["mu"] + 3 * s["sigma"]


_TABLE: dict[str, Callable[[Mapping], tuple]] = {
    "categorical": lambda s: _categorical(s["values"]),
    "int_uniform": lambda s: _integer(s["min"], s["max"]),
    "uniform": lambda s: _real(s["min"], s["max"]),
    "q_uniform": lambda s: _real(s["min"], s["max"], q=s["q"]),
    "log_uniform": lambda s: _real(math.exp(s["min"]), math.exp(s["max"]), True),
    "q_log_uniform": lambda s: _real(math.exp(s["min"]), math.exp(s["max"]), True, s["q"]),
    "log_uniform_values": lambda s: _real(s["min"], s["max"], True),
    "q_log_uniform_values": lambda s: _real(s["min"], s["max"], True, s["q"]),
    "inv_log_uniform": lambda s: _real(math.exp(-s["max"]), math.exp(-s["min"]), True),
    "inv_log_uniform_values": lambda s: _real(s["min"], s["max"], True),
    "normal": lambda s: _real(*_sd3(s)),
    "q_normal": lambda s: _real(*_sd3(s), q=s["q"]),
    "log_normal": lambda s: _real(*map(math.exp, _sd3(s)), True),
    "q_log_normal": lambda s: _real(*map(math.exp, _sd3(s)), True, s["q"]),
    "beta": lambda s: _real(0.0, 1.0),
    "q_beta": lambda s: _real(0.0, 1.0, q=s["q"]),
}
"""Every W&B distribution → the skopt dimension ``bayes`` searches, in one place.

==========================  =============================================  ==================
W&B distribution            skopt dimension                                 value proposed
==========================  =============================================  ==================
constant                    none (not searched)                             ``value``
categorical                 Categorical(indices of ``values``), one-hot     ``values[i]`` as is
int_uniform                 Integer(min, max)                               int
uniform                     Real(min, max)                                  float
q_uniform                   Real(min, max)                                  round to ``q``
log_uniform                 Real(e^min, e^max, log-uniform)                 float
q_log_uniform               Real(e^min, e^max, log-uniform)                 round to ``q``
log_uniform_values          Real(min, max, log-uniform)                     float
q_log_uniform_values        Real(min, max, log-uniform)                     round to ``q``
inv_log_uniform             Real(e^-max, e^-min, log-uniform)               float
inv_log_uniform_values      Real(min, max, log-uniform)                     float
normal                      Real(mu - 3 sigma, mu + 3 sigma)                float
q_normal                    Real(mu - 3 sigma, mu + 3 sigma)                round to ``q``
log_normal                  Real(e^(mu - 3 sigma), e^(mu + 3 sigma), log)   float
q_log_normal                Real(e^(mu - 3 sigma), e^(mu + 3 sigma), log)   round to ``q``
beta                        Real(0, 1)                                      float
q_beta                      Real(0, 1)                                      round to ``q``
==========================  =============================================  ==================

Quantized distributions are fitted in the continuous space and rounded on output (W&B's
rounding: an int ``q`` gives ints). Normal-type distributions are searched uniformly over
their central 99.7 % (mu ± 3 sigma, in log space for log-normals): the GP needs a bounded
box, and the prior's shape is not used beyond that box; a beta is searched uniformly over [0, 1]. Categorical ``probabilities`` are a
random-search prior and are not used. A categorical with one value, or a normal with
``sigma == 0``, is treated as a constant. The GP works in skopt's normalized unit box.
"""


@dataclass(frozen=True)
class _Dim:
    """One searched parameter: its skopt dimension and the maps between value and point."""

    name: str
    dist: Distribution
    dimension: Any
    decode: Callable[[Any], Any]
    encode: Callable[[Any], Any]


def _dims(parameters: Mapping[str, Distribution]) -> tuple[list[_Dim], dict[str, Any]]:
    """Split parameters into searched dimensions and fixed values (constants, degenerate)."""
    dims, fixed = [], {}
    for name, dist in parameters.items():
        spec = dist.spec()
        if _is_fixed(spec):
            fixed[name] = dist.ppf(0.5)
            continue
        if spec["distribution"] not in _TABLE:
            raise ValueError(f"bayes cannot search {name!r}: no skopt dimension for {dist.name!r}")
        dims.append(_Dim(name, dist, *_TABLE[spec["distribution"]](spec)))
    return dims, fixed


def _is_fixed(spec: Mapping) -> bool:
    """Whether a parameter has one value only, so it is no dimension."""
    name = spec["distribution"]
    if name == "constant":
        return True
    if name == "categorical":
        return len(spec["values"]) == 1
    return name.endswith("normal") and spec.get("sigma", 1.0) <= 0


def _encode(dims: Sequence[_Dim], params: Mapping[str, Any]) -> list | None:
    """A trial's values as a skopt point, or None when some value cannot be placed."""
    try:
        return [d.encode(params[d.name]) for d in dims]
    except (KeyError, ValueError, TypeError, OverflowError):
        return None


def _decode(dims: Sequence[_Dim], point: Sequence[Any], rng: numpy.random.Generator) -> dict:
    """A skopt point as parameter values, each inside its distribution's support."""
    out = {}
    for d, x in zip(dims, point):
        value = d.decode(x)
        if not d.dist.contains(value):  # a bug guard: never hand out a value outside support
            log.warning("bayes: %s=%r is outside %s; sampling instead", d.name, value, d.dist.describe())
            value = d.dist.sample(rng)
        out[d.name] = value
    return out


def _params_key(params: Mapping[str, Any], names: Sequence[str]) -> tuple:
    """A hashable, type-exact key of the searched values (1, 1.0 and True differ)."""
    return tuple(value_key(params.get(n)) for n in names)


def _rng(seed: int, *keys: int) -> numpy.random.Generator:
    """A generator for (seed, *keys); the design uses (seed, 0), trial k (seed, 1, k)."""
    import numpy as np

    return np.random.default_rng([seed % 2**128, *keys])


def _design(dims: Sequence[_Dim], seed: int, row: int) -> list:
    """Row ``row`` of the sweep's fixed maximin Latin-hypercube design (same for every agent)."""
    import numpy as np

    rng = _rng(seed, 0)
    n, d = N_DESIGN, len(dims)
    best, best_score = None, -1.0
    for _ in range(50):
        strata = np.argsort(rng.random((n, d)), axis=0)
        u = (strata + rng.random((n, d))) / n
        score = min(np.sum((u[i] - u[j]) ** 2) for i in range(n) for j in range(i))
        if score > best_score:
            best, best_score = u, score
    return _from_unit(dims, best[row])


def _from_unit(dims: Sequence[_Dim], u: Sequence[float]) -> list:
    """Points of the unit box as skopt points (categoricals: equal strata)."""
    return [_unit_column(d, [x])[0] for d, x in zip(dims, u)]


def _unit_column(d: _Dim, u: Any) -> list:
    """Unit coordinates of one dimension as skopt values."""
    import numpy as np

    u = np.clip(np.asarray(u, dtype=float), 0.0, 1.0)
    if d.dimension.transform_ == "onehot":
        n = len(d.dimension.categories)
        return [int(i) for i in np.minimum((u * n).astype(int), n - 1)]
    return np.asarray(d.dimension.inverse_transform(u)).tolist()


def _candidates(dims: Sequence[_Dim], rng: numpy.random.Generator) -> list[list]:
    """N_RANDOM uniform points of the box, one skopt column per dim."""
    unit = rng.random((N_RANDOM, len(dims)))
    return [_unit_column(d, unit[:, j]) for j, d in enumerate(dims)]


def _transformed(dims: Sequence[_Dim], columns: list[list]) -> numpy.ndarray:
    """Candidate columns in the GP's coordinates (what skopt's Space.transform gives)."""
    import numpy as np

    n = len(columns[0])
    return np.hstack([np.reshape(d.dimension.transform(col), (n, -1)) for d, col in zip(dims, columns)])


def _training_set(obs: list, rng: numpy.random.Generator) -> list:
    """At most TRAIN_CAP observations: the TRAIN_BEST best, then a seeded sample of the rest."""
    if len(obs) <= TRAIN_CAP:
        return obs
    ranked = sorted(obs, key=lambda o: o[1])
    rest = ranked[TRAIN_BEST:]
    picked = rng.choice(len(rest), TRAIN_CAP - TRAIN_BEST, replace=False)
    return ranked[:TRAIN_BEST] + [rest[i] for i in sorted(picked)]


def _fit(space: Any, X: list, y: Any, seed: int) -> Any:
    """The GP (Matern 5/2 with a length scale per dimension, learned noise) by MAP, on one BLAS thread.

    A space of categoricals only keeps skopt's Hamming kernel, fitted by maximum likelihood.
    """
    import numpy as np
    from skopt.learning import GaussianProcessRegressor
    from skopt.learning.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
    from skopt.utils import cook_estimator
    from threadpoolctl import threadpool_limits

    if space.is_categorical:
        model = cook_estimator("GP", space=space, random_state=seed, noise="gaussian")
    else:
        n = space.transformed_n_dims
        kernel = ConstantKernel(1.0, (0.01, 1000.0)) * Matern(
            length_scale=np.ones(n), length_scale_bounds=[(0.01, 100)] * n, nu=2.5) + WhiteKernel(
            noise_level=1.0, noise_level_bounds=(NOISE_MIN, NOISE_MAX))
        model = GaussianProcessRegressor(kernel=kernel, normalize_y=True, noise="gaussian", n_restarts_optimizer=2,
                                         random_state=seed, optimizer=_map_fit)
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(space.transform(X), y)
    return model


def _map_fit(objective: Callable, theta: Any, bounds: Any) -> tuple[Any, float]:
    """L-BFGS-B on the negative log marginal likelihood plus the hyperparameters' negative log prior.

    ``theta`` is (log signal variance, log length scales…, log noise variance) of
    ``ConstantKernel * Matern + WhiteKernel`` with y standardized and x in the unit box. The priors
    are Optuna's GP's: on each inverse squared length scale ``s``, ``-(0.1 / s + 0.1 * s)``
    (length scales near 1 preferred); Gamma(2, 1) on the signal variance; Gamma(1.1, 30) on the
    noise variance. With 10–60 points in several dimensions, maximum likelihood alone often
    explains everything as noise, or puts length scales at the edges of their bounds.
    """
    import numpy as np
    from scipy.optimize import minimize

    def penalized(t: Any) -> tuple[float, Any]:
        value, grad = objective(t, eval_gradient=True)
        signal, scales, noise = np.exp(t[0]), np.exp(2 * t[1:-1]), np.exp(t[-1])
        prior = float(np.sum(0.1 * scales + 0.1 / scales)) - np.log(signal) + signal - 0.1 * np.log(noise) \
            + 30 * noise
        prior_grad = np.concatenate([[signal - 1.0], 0.2 * scales - 0.2 / scales, [30 * noise - 0.1]])
        return value + prior, grad + prior_grad

    result = minimize(penalized, theta, jac=True, method="L-BFGS-B", bounds=bounds)
    return result.x, float(result.fun)


def _model(space: Any, X: list, y: numpy.ndarray, pending: list, seed: int) -> Any:
    """The GP; running trials join as a Kriging believer (their predicted mean, W&B's choice).

    The believer keeps the hyperparameters fitted on real observations, so it costs no second
    fit. Measured with 4 simulated agents (30 trials, 10 seeds), median regret on Branin /
    Hartmann6 / mixed: this 0.081 / 1.08 / 0.028; believer with a full refit 0.029 / 1.27 /
    0.023; constant liar at min 0.12 / 1.49 / 0.070, at mean 0.17 / 1.42 / 0.060, at max
    0.92 / 1.16 / 0.14; ignoring running trials 0.007 / 1.41 / 0.16. Exact repeats are
    excluded anyway (``_first_free``).
    """
    from threadpoolctl import threadpool_limits

    model = _fit(space, X, y, seed)
    if not pending:
        return model
    with threadpool_limits(limits=1):
        believed = model.predict(space.transform(pending))
    return _condition(model, space.transform(X + pending), [*y, *believed])


def _condition(model: Any, Xt: Any, y: Sequence[float]) -> Any:
    """The fitted GP conditioned on more points, keeping its hyperparameters (a Cholesky, no fit)."""
    from sklearn.base import clone
    from sklearn.gaussian_process.kernels import WhiteKernel
    from threadpoolctl import threadpool_limits

    # skopt's kernel is signal + WhiteKernel, and its noise is learnt; pass both as fixed.
    fitted = model.kernel_
    signal = fitted.k1 if isinstance(getattr(fitted, "k2", None), WhiteKernel) else fitted
    believer = clone(model).set_params(kernel=clone(signal), optimizer=None,
                                       noise=max(model.noise_ or 0.0, 1e-10))
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return believer.fit(Xt, list(y))


def _suggest(dims: Sequence[_Dim], history: Sequence[Trial], metric: Any,
             rng: numpy.random.Generator, taken: set) -> list:
    """The point with the highest log EI whose values no trial has yet."""
    import numpy as np
    from skopt.acquisition import gaussian_ei
    from skopt.space import Space
    from threadpoolctl import threadpool_limits

    rows = [(_encode(dims, t.params), v if v is None else v[0]) for t, v in outcomes.targets(history, (metric,))]
    obs = [(x, v) for x, v in rows if x is not None and v is not None]
    pending = [x for x, v in rows if x is not None and v is None][: TRAIN_CAP // 4]
    if len({v for _, v in obs}) < 2:
        columns = _candidates(dims, rng)
        return _first_free(dims, columns, range(len(columns[0])), taken, rng)
    obs = _training_set(obs, rng)
    X, y = [x for x, _ in obs], np.array([v for _, v in obs])
    space = Space([d.dimension for d in dims])
    model = _model(space, X, y, pending, int(rng.integers(2**31)))
    columns = _candidates(dims, rng)
    Xt = _transformed(dims, columns)
    with threadpool_limits(limits=1):
        if space.is_categorical:  # the Hamming kernel has no gradient: EI on the candidates
            scores = gaussian_ei(Xt, model, y_opt=y.min(), xi=0.0)
        else:
            incumbent = space.transform([X[int(np.argmin(y))]])
            columns, scores = _climbed(dims, space, model, Xt, columns, incumbent, float(y.min()), rng)
    return _first_free(dims, columns, np.argsort(-scores, kind="stable"), taken, rng)


def _climbed(dims: Sequence[_Dim], space: Any, model: Any, Xt: Any, columns: list[list], incumbent: Any,
             best: float, rng: numpy.random.Generator) -> tuple[list[list], Any]:
    """Every candidate's log EI, plus climbed points added as candidates: L-BFGS-B from the best
    candidate, N_CLIMB - 1 more drawn with weight EI (so some start away from the best one), and the
    best trial (for precision once the search has converged). One-hot columns stay as they are.
    """
    import numpy as np

    from mlflow_sweep.samplers import acquisition

    scores = acquisition.log_ei(model, Xt, best)
    first = int(np.argmax(scores))
    weights = np.exp(scores - scores[first])
    weights[first] = 0.0
    drawn = min(N_CLIMB - 1, int(np.count_nonzero(weights)))
    others = rng.choice(len(scores), size=drawn, replace=False, p=weights / weights.sum()) if drawn else []
    starts = np.vstack([Xt[[first, *others]], incumbent])
    free = np.concatenate([np.full(d.dimension.transformed_size, d.dimension.transform_ != "onehot") for d in dims])
    moved, values = acquisition.climb(model, starts, free, best)
    points = space.inverse_transform(moved)
    extended = [list(col) + [p[j] for p in points] for j, col in enumerate(columns)]
    return extended, np.concatenate([scores, values])


def _first_free(dims: Sequence[_Dim], columns: list[list], order: Sequence[int], taken: set,
                rng: numpy.random.Generator) -> list:
    """The first candidate in ``order`` whose decoded values are not taken (else the first)."""
    names, seen = [d.name for d in dims], set()
    for i in order:
        point = [col[i] for col in columns]
        raw = tuple(point)
        if raw in seen:  # discrete spaces repeat candidates; decode each once
            continue
        seen.add(raw)
        if _params_key(_decode(dims, point, rng), names) not in taken:
            return point
    return [col[order[0]] for col in columns]


def preload() -> None:
    """Import skopt and scikit-learn now (about 1 s), so the first proposal is quick.

    The agent calls ``propose`` inside the ledger lock; call this before the first claim.
    """
    import scipy.linalg  # noqa: F401
    import scipy.optimize  # noqa: F401
    import scipy.special  # noqa: F401
    import skopt.acquisition  # noqa: F401
    import skopt.learning  # noqa: F401
    import skopt.space  # noqa: F401
    import skopt.utils  # noqa: F401
    import threadpoolctl  # noqa: F401

    from mlflow_sweep.samplers import acquisition  # noqa: F401


def _given(history: Sequence[Trial]) -> int:
    """Points the sweep did not draw (prior runs, enqueued points): each one stands for a design row.

    A sweep started from 10 prior runs fits its GP from the first trial instead of spending six
    trials on a design around what it already knows.
    """
    return sum(1 for t in history if t.prior or t.enqueued is not None)


def propose(config: Any, history: Sequence[Trial], seed: int, index: int) -> Proposal:
    """The next trial's values: design row ``index`` first, then the GP's log-EI maximizer.

    Prior runs and enqueued points in the history take the place of design rows (``_given``).

    Args:
        config: the sweep config (``parameters``, ``metric`` with goal/impute).
        history: every trial so far, in any state; running ones are treated as pending.
        seed: the sweep's effective seed; the design depends on it alone.
        index: the new trial's index; it picks the design row and seeds the rest.
    """
    dims, fixed = _dims(config.parameters)
    if not dims:
        return Proposal(params=dict(fixed))
    rng = _rng(seed, 1, index)
    names = [d.name for d in dims]
    taken = {_params_key(t.params, names) for t in history}
    point = _design(dims, seed, index) if index < N_DESIGN - _given(history) else None
    if point is None or _params_key(_decode(dims, point, rng), names) in taken:
        point = _suggest(dims, history, config.metric, rng, taken)
    values = _decode(dims, point, rng)
    return Proposal(params={n: fixed[n] if n in fixed else values[n] for n in config.parameters})
