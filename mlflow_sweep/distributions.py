"""One small object per W&B sweep distribution, and the registry that maps names to them.

Semantics follow W&B's ``sweeps`` engine (``params.py``): ``log_uniform`` bounds are natural
logs, the ``*_values`` variants take the bounds as values, quantized distributions round to a
multiple of ``q`` and return ints when ``q`` is an int. Samples are plain Python values.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from mlflow_sweep.trials import is_number

if TYPE_CHECKING:
    import numpy

_INF = float("inf")
# statistics.NormalDist.inv_cdf needs 0 < u < 1; rng.random() can return exactly 0.0.
_U_FLOOR = 1e-300


def value_key(value: Any) -> str:
    """Canonical JSON text of a value, so 1, 1.0, True and "1" are four different values."""
    return json.dumps(value, sort_keys=True, default=str)


def _decimals(q: float) -> int:
    exponent = Decimal(repr(q)).as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def quantize(x: float, q: float) -> int | float:
    """Round ``x`` to a multiple of ``q`` as W&B does; int ``q`` gives an int."""
    k = round(x / q)
    if isinstance(q, int):
        return int(k * q)
    # k * q alone gives 0.30000000000000004 for q=0.1; keep q's own decimals instead.
    return float(round(k * q, _decimals(q)))


def _on_grid(x: float, q: float) -> bool:
    k = x / q
    return abs(k - round(k)) <= 1e-9 * max(1.0, abs(k))


def _fmt(value: Any) -> str:
    if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool)):
        return repr(value)
    return value_key(value)


def _std_normal(u: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(min(max(u, _U_FLOOR), 1.0 - 2.0**-53))


@dataclass(frozen=True)
class Distribution:
    """Base of every distribution; subclasses are frozen dataclasses whose fields are the spec."""

    name: ClassVar[str] = ""

    def sample(self, rng: numpy.random.Generator) -> Any:
        """Draw one value with the given generator."""
        return self.ppf(float(rng.random()))

    def ppf(self, u: float) -> Any:
        """The value at quantile ``u`` in [0, 1)."""
        raise NotImplementedError

    def contains(self, x: Any) -> bool:
        """Whether ``x`` is a value this distribution can produce."""
        raise NotImplementedError

    def grid_values(self) -> tuple | None:
        """The finite support in grid order, or None when a grid cannot enumerate it."""
        return None

    def grid_size(self) -> int | None:
        """How many values ``grid_values`` gives, counted without building them; None when it gives none."""
        values = self.grid_values()
        return None if values is None else len(values)

    def problems(self) -> tuple[str, ...]:
        """Reasons this spec is unusable that a JSON Schema cannot express (empty when fine)."""
        return ()

    def spec(self) -> dict:
        """The normalized, JSON-able spec, defaults filled in."""
        out: dict[str, Any] = {"distribution": self.name}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def describe(self) -> str:
        """Short human form, e.g. ``uniform(min=0.0001, max=0.1)``."""
        spec = self.spec()
        del spec["distribution"]
        return f"{self.name}({', '.join(f'{k}={_fmt(v)}' for k, v in spec.items())})"

    @classmethod
    def from_spec(cls, spec: Mapping) -> Distribution:
        """Build from a checked spec with its defaults filled (``config`` does both), taking this class's fields."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in spec.items() if k in names})


@dataclass(frozen=True)
class Constant(Distribution):
    """A single fixed value."""

    name: ClassVar[str] = "constant"
    value: Any

    def ppf(self, u: float) -> Any:
        return self.value

    def contains(self, x: Any) -> bool:
        return value_key(x) == value_key(self.value)

    def grid_values(self) -> tuple:
        return (self.value,)

    def spec(self) -> dict:
        return {"distribution": self.name, "value": self.value}


@dataclass(frozen=True)
class Categorical(Distribution):
    """One of ``values``, uniformly or with ``probabilities``."""

    name: ClassVar[str] = "categorical"
    values: tuple
    probabilities: tuple | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))
        if self.probabilities is not None:
            object.__setattr__(self, "probabilities", tuple(self.probabilities))

    def ppf(self, u: float) -> Any:
        return self.values[self._index_at(u)]

    def _index_at(self, u: float) -> int:
        n = len(self.values)
        if self.probabilities is None:
            return min(int(u * n), n - 1)
        total, acc = float(sum(self.probabilities)), 0.0
        for i, p in enumerate(self.probabilities):
            acc += p / total
            if u < acc:
                return i
        return max(i for i, p in enumerate(self.probabilities) if p > 0)

    def index(self, x: Any) -> int | None:
        """Position of ``x`` in ``values`` (type-exact), or None."""
        key = value_key(x)
        return next((i for i, v in enumerate(self.values) if value_key(v) == key), None)

    def contains(self, x: Any) -> bool:
        return self.index(x) is not None

    def grid_values(self) -> tuple | None:
        # W&B's grid refuses categorical parameters with probabilities.
        return self.values if self.probabilities is None else None

    def problems(self) -> tuple[str, ...]:
        if not self.values:
            return ("values must not be empty",)
        if self.probabilities is None:
            return ()
        if len(self.probabilities) != len(self.values):
            n, m = len(self.probabilities), len(self.values)
            return (f"probabilities has {n} entries but values has {m}",)
        if any(not is_number(p) or p < 0 for p in self.probabilities):
            return ("probabilities must be non-negative numbers",)
        if not math.isclose(sum(self.probabilities), 1.0, abs_tol=1e-6):
            return (f"probabilities must sum to 1, but sum to {sum(self.probabilities)!r}",)
        return ()


@dataclass(frozen=True)
class IntUniform(Distribution):
    """An integer in [min, max], both ends included."""

    name: ClassVar[str] = "int_uniform"
    min: int
    max: int

    def ppf(self, u: float) -> int:
        return min(int(self.min + math.floor(u * (self.max - self.min + 1))), int(self.max))

    def contains(self, x: Any) -> bool:
        return isinstance(x, int) and not isinstance(x, bool) and self.min <= x <= self.max

    def grid_values(self) -> tuple:
        return tuple(range(int(self.min), int(self.max) + 1))

    def grid_size(self) -> int:
        return int(self.max) - int(self.min) + 1  # int_uniform 0..1e9 is counted, not built

    def problems(self) -> tuple[str, ...]:
        return _check_range(self.min, self.max)


def _check_range(lo: Any, hi: Any, positive: bool = False) -> tuple[str, ...]:
    if not (is_number(lo) and is_number(hi)):
        return ()  # the schema reports non-numbers
    if positive and lo <= 0:
        return (f"min {lo!r} must be greater than 0",)
    if lo >= hi:
        return (f"min {lo!r} must be less than max {hi!r}",)
    return ()


@dataclass(frozen=True)
class _Real(Distribution):
    """Base of real-valued distributions: a transform of ``u``, then rounding when ``q`` is set."""

    def _raw(self, u: float) -> float:
        raise NotImplementedError

    def _bounds(self) -> tuple[float, float]:
        return (-_INF, _INF)

    def _q(self) -> float | None:
        return getattr(self, "q", None)

    def ppf(self, u: float) -> int | float:
        q = self._q()
        x = float(self._raw(u))
        return x if q is None else quantize(x, q)

    def contains(self, x: Any) -> bool:
        q = self._q()
        if not is_number(x):
            return False
        lo, hi = self._bounds()
        if q is None:
            tol = 1e-9 * max(1.0, abs(x))
            return lo - tol <= x <= hi + tol
        if isinstance(q, int) and not isinstance(x, int):
            return False
        lo_q = quantize(lo, q) if math.isfinite(lo) else lo
        hi_q = quantize(hi, q) if math.isfinite(hi) else hi
        tol = 1e-9 * max(1.0, abs(x))
        return _on_grid(x, q) and lo_q - tol <= x <= hi_q + tol


@dataclass(frozen=True)
class _Ranged(_Real):
    """Base of the min/max distributions; ``_positive``: the bounds are values that must be > 0."""

    min: float
    max: float
    _positive: ClassVar[bool] = False

    def problems(self) -> tuple[str, ...]:
        return _check_range(self.min, self.max, positive=self._positive)


@dataclass(frozen=True)
class Uniform(_Ranged):
    """A real number in [min, max]."""

    name: ClassVar[str] = "uniform"

    def _raw(self, u: float) -> float:
        return self.min + u * (self.max - self.min)

    def _bounds(self) -> tuple[float, float]:
        return (self.min, self.max)


@dataclass(frozen=True)
class QUniform(Uniform):
    """``uniform`` rounded to a multiple of ``q``."""

    name: ClassVar[str] = "q_uniform"
    q: float

    def grid_values(self) -> tuple:
        # Every multiple of q that sampling can produce (W&B's grid uses arange(min, max, q),
        # which drops max and ignores the rounding; we enumerate exactly what ppf returns).
        first, last = self._steps()
        return tuple(quantize(k * self.q, self.q) for k in range(first, last + 1))

    def grid_size(self) -> int:
        first, last = self._steps()
        return last - first + 1

    def _steps(self) -> tuple[int, int]:
        """The multiples of q, as ``k`` in ``k * q``, that the rounded bounds reach."""
        return round(self.min / self.q), round(self.max / self.q)


@dataclass(frozen=True)
class LogUniform(_Ranged):
    """``exp(uniform(min, max))``: the bounds are natural logs."""

    name: ClassVar[str] = "log_uniform"

    def _raw(self, u: float) -> float:
        return math.exp(self.min + u * (self.max - self.min))

    def _bounds(self) -> tuple[float, float]:
        return (math.exp(self.min), math.exp(self.max))


@dataclass(frozen=True)
class QLogUniform(LogUniform):
    """``log_uniform`` rounded to a multiple of ``q``."""

    name: ClassVar[str] = "q_log_uniform"
    q: float


@dataclass(frozen=True)
class LogUniformValues(_Ranged):
    """Log-uniform between the values min and max (min > 0)."""

    name: ClassVar[str] = "log_uniform_values"
    _positive: ClassVar[bool] = True

    def _raw(self, u: float) -> float:
        lo, hi = math.log(self.min), math.log(self.max)
        return math.exp(lo + u * (hi - lo))

    def _bounds(self) -> tuple[float, float]:
        return (self.min, self.max)


@dataclass(frozen=True)
class QLogUniformValues(LogUniformValues):
    """``log_uniform_values`` rounded to a multiple of ``q``."""

    name: ClassVar[str] = "q_log_uniform_values"
    q: float


@dataclass(frozen=True)
class InvLogUniform(_Ranged):
    """``exp(-uniform(min, max))``: ``log(1/x)`` is uniform on [min, max]."""

    name: ClassVar[str] = "inv_log_uniform"

    def _raw(self, u: float) -> float:
        return math.exp(-(self.min + (1.0 - u) * (self.max - self.min)))

    def _bounds(self) -> tuple[float, float]:
        return (math.exp(-self.max), math.exp(-self.min))


@dataclass(frozen=True)
class InvLogUniformValues(_Ranged):
    """``inv_log_uniform`` with the bounds given as values of x (W&B's v2)."""

    name: ClassVar[str] = "inv_log_uniform_values"
    _positive: ClassVar[bool] = True

    def _raw(self, u: float) -> float:
        lo, hi = -math.log(self.max), -math.log(self.min)
        return math.exp(-(lo + (1.0 - u) * (hi - lo)))

    def _bounds(self) -> tuple[float, float]:
        return (self.min, self.max)


@dataclass(frozen=True)
class Normal(_Real):
    """Normal with mean ``mu`` and standard deviation ``sigma``."""

    name: ClassVar[str] = "normal"
    mu: float
    sigma: float

    def _raw(self, u: float) -> float:
        return self.mu + self.sigma * _std_normal(u) if self.sigma > 0 else self.mu


@dataclass(frozen=True)
class QNormal(Normal):
    """``normal`` rounded to a multiple of ``q``."""

    name: ClassVar[str] = "q_normal"
    q: float


@dataclass(frozen=True)
class LogNormal(_Real):
    """``exp(normal(mu, sigma))``."""

    name: ClassVar[str] = "log_normal"
    mu: float
    sigma: float

    def _raw(self, u: float) -> float:
        z = _std_normal(u) if self.sigma > 0 else 0.0
        return math.exp(self.mu + self.sigma * z)

    def _bounds(self) -> tuple[float, float]:
        return (0.0, _INF)


@dataclass(frozen=True)
class QLogNormal(LogNormal):
    """``log_normal`` rounded to a multiple of ``q``."""

    name: ClassVar[str] = "q_log_normal"
    q: float


@dataclass(frozen=True)
class Beta(_Real):
    """Beta(``a``, ``b``) on [0, 1], as W&B's ``beta``; a = b = 1 is uniform."""

    name: ClassVar[str] = "beta"
    a: float
    b: float

    def _raw(self, u: float) -> float:
        from scipy.stats import beta  # only a sweep with a beta parameter pays for scipy

        # scipy's root finder returns NaN for u within ~1e-300 of 0 or 1; so close, the bound is the answer
        u = min(max(u, 1e-12), 1.0 - 1e-12)
        return float(beta.ppf(u, self.a, self.b))

    def _bounds(self) -> tuple[float, float]:
        return (0.0, 1.0)


@dataclass(frozen=True)
class QBeta(Beta):
    """``beta`` rounded to a multiple of ``q``."""

    name: ClassVar[str] = "q_beta"
    q: float


REGISTRY: dict[str, type[Distribution]] = {
    cls.name: cls
    for cls in (
        Constant, Categorical, IntUniform, Uniform, QUniform, LogUniform, QLogUniform,
        LogUniformValues, QLogUniformValues, InvLogUniform, InvLogUniformValues,
        Normal, QNormal, LogNormal, QLogNormal, Beta, QBeta,
    )
}
"""Every W&B distribution name → its class."""

_ALIASES = {"categorical_w_probabilities": "categorical"}


def from_spec(spec: Mapping) -> Distribution:
    """Build the distribution a checked parameter spec describes, its defaults filled by the schema.

    ``spec["distribution"]`` must be set; ``config`` infers it where W&B does.
    """
    name = _ALIASES.get(spec["distribution"], spec["distribution"])
    if name not in REGISTRY:
        raise ValueError(f"unknown distribution {name!r} (known: {', '.join(REGISTRY)})")
    return REGISTRY[name].from_spec(spec)


def infer_distribution(spec: Mapping) -> str | None:
    """W&B's inference when ``distribution`` is omitted; None when nothing matches."""
    if "distribution" in spec:
        return _ALIASES.get(spec["distribution"], spec["distribution"])
    if "values" in spec:
        return "categorical"
    if "value" in spec:
        return "constant"
    if "min" in spec and "max" in spec:
        ints = all(isinstance(spec[k], int) and not isinstance(spec[k], bool) for k in ("min", "max"))
        return "int_uniform" if ints else "uniform"
    return None
