"""Distributions: support, q, types, W&B semantics and the shape of samples against scipy."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from mlflow_sweep.distributions import REGISTRY, from_spec, infer_distribution

W_AND_B_NAMES = {
    "constant", "categorical", "int_uniform", "uniform", "q_uniform", "log_uniform",
    "log_uniform_values", "q_log_uniform", "q_log_uniform_values", "inv_log_uniform",
    "inv_log_uniform_values", "normal", "q_normal", "log_normal", "q_log_normal", "beta", "q_beta",
}
QUICK = settings(max_examples=60, deadline=None)


def scipy_base(d) -> stats.rv_continuous:
    """The scipy distribution a real-valued W&B distribution is (before rounding to q)."""
    s = d.spec()
    lo, hi = s.get("min"), s.get("max")
    table = {
        "uniform": lambda: stats.uniform(lo, hi - lo),
        "log_uniform": lambda: stats.loguniform(math.exp(lo), math.exp(hi)),
        "log_uniform_values": lambda: stats.loguniform(lo, hi),
        "inv_log_uniform": lambda: stats.loguniform(math.exp(-hi), math.exp(-lo)),
        "inv_log_uniform_values": lambda: stats.loguniform(lo, hi),
        "normal": lambda: stats.norm(s.get("mu"), s.get("sigma")),
        "log_normal": lambda: stats.lognorm(s=s.get("sigma"), scale=math.exp(s.get("mu"))),
        "beta": lambda: stats.beta(s.get("a"), s.get("b")),
    }
    return table[d.name.removeprefix("q_")]()


# --- hypothesis strategies: one per family, then q on top --------------------------------
QS = st.sampled_from([1, 2, 5, 0.1, 0.25, 0.001, 2.5])
_range = st.tuples(st.floats(-1e3, 1e3), st.floats(1e-2, 1e3)).map(lambda t: (t[0], t[0] + t[1]))
_log_range = st.tuples(st.floats(-8, 4), st.floats(0.05, 4)).map(lambda t: (t[0], t[0] + t[1]))
_value_range = st.tuples(st.floats(1e-4, 10), st.floats(1.01, 1e3)).map(lambda t: (t[0], t[0] * t[1]))


def _ranged(name: str, bounds) -> st.SearchStrategy:
    return bounds.map(lambda b: {"distribution": name, "min": b[0], "max": b[1]})


REAL_SPECS = st.one_of(
    _ranged("uniform", _range), _ranged("log_uniform", _log_range),
    _ranged("inv_log_uniform", _log_range), _ranged("log_uniform_values", _value_range),
    _ranged("inv_log_uniform_values", _value_range),
    st.builds(lambda mu, sigma: {"distribution": "normal", "mu": mu, "sigma": sigma},
              st.floats(-100, 100), st.floats(0.01, 10)),
    st.builds(lambda mu, sigma: {"distribution": "log_normal", "mu": mu, "sigma": sigma},
              st.floats(-3, 3), st.floats(0.01, 2)),
    st.builds(lambda a, b: {"distribution": "beta", "a": a, "b": b}, st.floats(0.1, 20), st.floats(0.1, 20)),
)
Q_SPECS = st.builds(
    lambda spec, q: {**spec, "distribution": "q_" + spec["distribution"], "q": q},
    REAL_SPECS.filter(lambda s: not s["distribution"].startswith("inv_")), QS,
)
INT_SPECS = st.tuples(st.integers(-1000, 1000), st.integers(1, 50)).map(
    lambda t: {"distribution": "int_uniform", "min": t[0], "max": t[0] + t[1]})
U = st.floats(0.0, 1.0, exclude_max=True)


def checked(spec: dict):
    """The distribution of a spec as a sweep file gives it: the schema fills its defaults (q, mu, sigma, ...)."""
    from mlflow_sweep import schema

    return from_spec(schema.with_defaults(spec, spec["distribution"]))


def test_registry_has_every_wandb_distribution() -> None:
    assert set(REGISTRY) == W_AND_B_NAMES
    assert all(cls.name == name for name, cls in REGISTRY.items())


@QUICK
@given(REAL_SPECS, U)
def test_real_samples_lie_in_the_scipy_support(spec: dict, u: float) -> None:
    d = from_spec(spec)
    x = d.ppf(u)
    lo, hi = scipy_base(d).support()
    assert isinstance(x, float) and lo - 1e-9 * max(1, abs(lo)) <= x <= hi + 1e-9 * max(1, abs(hi))
    assert d.contains(x)


@QUICK
@given(Q_SPECS, U)
def test_quantized_samples_are_multiples_of_q_with_the_type_of_q(spec: dict, u: float) -> None:
    d = from_spec(spec)
    x, q = d.ppf(u), spec["q"]
    assert type(x) is type(q)
    assert abs(x / q - round(x / q)) < 1e-6
    assert d.contains(x)
    assert d.contains(json.loads(json.dumps(x)))


@QUICK
@given(INT_SPECS, U)
def test_int_uniform_gives_ints_within_both_bounds(spec: dict, u: float) -> None:
    d = from_spec(spec)
    x = d.ppf(u)
    assert type(x) is int and spec["min"] <= x <= spec["max"] and d.contains(x)
    assert not d.contains(float(x)) and not d.contains(True)


@QUICK
@given(st.one_of(REAL_SPECS, Q_SPECS, INT_SPECS), U, U)
def test_ppf_is_monotone(spec: dict, u1: float, u2: float) -> None:
    d = from_spec(spec)
    lo, hi = sorted((u1, u2))
    assert d.ppf(lo) <= d.ppf(hi)


@pytest.mark.parametrize("u", [1.938579240858085e-296, 1e-20, 1.0 - 1e-15])
def test_beta_is_finite_next_to_its_bounds(u: float) -> None:
    values = [from_spec({"distribution": "beta", "a": 3.0, "b": 3.0}).ppf(v) for v in sorted((0.0, u, 0.5))]
    assert values == sorted(values) and all(0.0 <= v <= 1.0 for v in values), values


@QUICK
@given(st.one_of(REAL_SPECS, Q_SPECS, INT_SPECS), st.integers(0, 2**32))
def test_sample_uses_only_the_given_generator(spec: dict, seed: int) -> None:
    d = from_spec(spec)
    first = [d.sample(np.random.default_rng(seed)) for _ in range(2)]
    assert first[0] == first[1] and d.contains(first[0])


FALSY = [0, 0.0, False, "", None, [], {}]


@pytest.mark.parametrize("value", FALSY, ids=repr)
def test_falsy_constant_round_trips(value) -> None:
    d = from_spec(json.loads(json.dumps(from_spec({"distribution": "constant", "value": value}).spec())))
    x = d.sample(np.random.default_rng(0))
    assert (x, type(x)) == (value, type(value)) and d.grid_values() == (value,)
    assert d.contains(value) and not d.contains("x")


def test_falsy_categorical_values_stay_distinct_through_json() -> None:
    d = from_spec({"distribution": "categorical", "values": FALSY + [{"a": [1, 2]}]})
    again = from_spec(json.loads(json.dumps(d.spec())))
    assert again == d
    seen = {json.dumps(again.ppf((i + 0.5) / len(d.values))) for i in range(len(d.values))}
    assert len(seen) == len(d.values)
    for i, value in enumerate(d.values):
        assert d.index(json.loads(json.dumps(value))) == i
    assert d.index(1) is None and d.index(True) is None and not d.contains(0.5)


@pytest.mark.parametrize("spec, expected", [
    ({"values": [1, 2]}, "categorical"),
    ({"values": [1], "probabilities": [1.0]}, "categorical"),
    ({"value": 0}, "constant"),
    ({"min": 1, "max": 5}, "int_uniform"),
    ({"min": 1, "max": 5.0}, "uniform"),
    ({"min": 0.0, "max": 5}, "uniform"),
    ({"min": False, "max": True}, "uniform"),
    ({"distribution": "log_uniform_values", "min": 1, "max": 5}, "log_uniform_values"),
    ({"distribution": "categorical_w_probabilities", "values": [1]}, "categorical"),
    ({"parameters": {}}, None),
])
def test_infer_distribution_follows_wandb(spec: dict, expected: str | None) -> None:
    assert infer_distribution(spec) == expected


@pytest.mark.parametrize("spec, expected", [
    ({"distribution": "uniform", "min": 0.0001, "max": 0.1}, "uniform(min=0.0001, max=0.1)"),
    ({"distribution": "q_uniform", "min": 0, "max": 10}, "q_uniform(min=0, max=10, q=1.0)"),
    ({"distribution": "normal"}, "normal(mu=0.0, sigma=1.0)"),
    ({"distribution": "categorical", "values": ["a", 1, True]}, 'categorical(values=["a", 1, true])'),
    ({"distribution": "constant", "value": "x"}, 'constant(value="x")'),
])
def test_describe_and_spec_with_the_schemas_defaults(spec: dict, expected: str) -> None:
    d = checked(spec)
    assert d.describe() == expected
    assert from_spec(json.loads(json.dumps(d.spec()))) == d


@pytest.mark.parametrize("spec, expected", [
    ({"distribution": "constant", "value": 3}, (3,)),
    ({"distribution": "categorical", "values": [3, "a"]}, (3, "a")),
    ({"distribution": "int_uniform", "min": -1, "max": 2}, (-1, 0, 1, 2)),
    ({"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.25}, (0.0, 0.25, 0.5, 0.75, 1.0)),
    ({"distribution": "q_uniform", "min": 0, "max": 10, "q": 5}, (0, 5, 10)),
    ({"distribution": "q_uniform", "min": 0.3, "max": 0.6, "q": 0.1}, (0.3, 0.4, 0.5, 0.6)),
    ({"distribution": "categorical", "values": [1, 2], "probabilities": [0.5, 0.5]}, None),
    ({"distribution": "uniform", "min": 0, "max": 1}, None),
    ({"distribution": "q_log_uniform_values", "min": 1, "max": 10}, None),
    ({"distribution": "q_normal"}, None),
])
def test_grid_values_are_what_wandb_grid_accepts(spec: dict, expected) -> None:
    d = checked(spec)
    assert (d.grid_values(), d.grid_size()) == (expected, None if expected is None else len(expected))


@pytest.mark.parametrize("spec", [
    {"distribution": "q_uniform", "min": 0.05, "max": 1, "q": 0.1},  # 0.0 .. 1.0 once rounded: 11 values
    {"distribution": "q_uniform", "min": -0.26, "max": 0.26, "q": 0.25},
    {"distribution": "int_uniform", "min": -5, "max": 5},
], ids=str)
def test_grid_size_counts_exactly_the_grid_values(spec: dict) -> None:
    d = checked(spec)
    assert d.grid_size() == len(d.grid_values())


@QUICK
@given(_range, QS, U)
def test_q_uniform_grid_holds_every_sample(bounds, q, u) -> None:
    d = from_spec({"distribution": "q_uniform", "min": bounds[0], "max": bounds[1], "q": q})
    grid = d.grid_values()
    assert len(grid) < 2e6 and d.grid_size() == len(grid)
    assert d.ppf(u) in grid and all(d.contains(x) for x in grid[:50])


@pytest.mark.parametrize("spec, problem", [
    ({"distribution": "uniform", "min": 0.9, "max": 0.1}, "min 0.9 must be less than max 0.1"),
    ({"distribution": "int_uniform", "min": 3, "max": 3}, "min 3 must be less than max 3"),
    ({"distribution": "log_uniform_values", "min": 0, "max": 1}, "min 0 must be greater than 0"),
    ({"distribution": "categorical", "values": []}, "values must not be empty"),
    ({"distribution": "categorical", "values": [1, 2], "probabilities": [1.0]},
     "probabilities has 1 entries but values has 2"),
    ({"distribution": "categorical", "values": [1, 2], "probabilities": [0.5, 0.6]},
     "probabilities must sum to 1, but sum to 1.1"),
])
def test_problems_name_the_values(spec: dict, problem: str) -> None:
    assert from_spec(spec).problems() == (problem,)


def test_unknown_distribution_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown distribution 'gamma'"):
        from_spec({"distribution": "gamma"})


def test_import_needs_no_mlflow_numpy_or_scipy() -> None:
    code = ("import sys, mlflow_sweep.distributions; "
            "print(sorted({'mlflow', 'numpy', 'scipy'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- statistics against scipy, fixed seeds ------------------------------------------------
N = 4000
CONTINUOUS = [
    {"distribution": "uniform", "min": -2.0, "max": 3.0},
    {"distribution": "log_uniform", "min": -9.2, "max": -2.3},
    {"distribution": "log_uniform_values", "min": 1e-4, "max": 0.1},
    {"distribution": "inv_log_uniform", "min": 0.5, "max": 4.0},
    {"distribution": "inv_log_uniform_values", "min": 0.01, "max": 100.0},
    {"distribution": "normal", "mu": 3.0, "sigma": 2.0},
    {"distribution": "log_normal", "mu": 0.5, "sigma": 0.7},
]


@pytest.mark.parametrize("spec", CONTINUOUS, ids=lambda s: s["distribution"])
def test_continuous_samples_match_scipy_ks(spec: dict) -> None:
    d = from_spec(spec)
    rng = np.random.default_rng(12345)
    xs = [d.sample(rng) for _ in range(N)]
    assert stats.kstest(xs, scipy_base(d).cdf).pvalue > 1e-3


def _assert_within_5_sigma(counts: dict, probs: dict, n: int) -> None:
    """W&B's check: every bin's count is within 5 sigma of its binomial expectation."""
    assert set(counts) <= set(probs), set(counts) - set(probs)
    for value, p in probs.items():
        got, sigma = counts.get(value, 0), math.sqrt(n * p * (1 - p))
        assert abs(got - n * p) <= 5 * sigma + 1, (value, got, n * p)


QUANTIZED = [
    {"distribution": "q_uniform", "min": 0.0, "max": 10.0, "q": 2},
    {"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 0.1},
    {"distribution": "q_log_uniform", "min": 0.0, "max": 3.0, "q": 1},
    {"distribution": "q_log_uniform_values", "min": 1.0, "max": 64.0, "q": 4},
    {"distribution": "q_normal", "mu": 0.0, "sigma": 3.0, "q": 1},
    {"distribution": "q_log_normal", "mu": 1.0, "sigma": 0.5, "q": 0.5},
    {"distribution": "q_beta", "a": 2.0, "b": 5.0, "q": 0.1},
]


@pytest.mark.parametrize("spec", QUANTIZED, ids=lambda s: s["distribution"])
def test_quantized_bins_match_scipy_within_5_sigma(spec: dict) -> None:
    d = from_spec(spec)
    rng = np.random.default_rng(777)
    counts: dict = {}
    for _ in range(N):
        x = d.sample(rng)
        counts[x] = counts.get(x, 0) + 1
    base, q = scipy_base(d), spec["q"]
    ks = range(round(min(counts) / q), round(max(counts) / q) + 1)  # empty bins count too
    probs = {d.ppf(base.cdf(k * q)): base.cdf(k * q + q / 2) - base.cdf(k * q - q / 2) for k in ks}
    _assert_within_5_sigma(counts, probs, N)


@pytest.mark.parametrize("spec, probs", [
    ({"distribution": "int_uniform", "min": 2, "max": 6}, {k: 0.2 for k in range(2, 7)}),
    ({"distribution": "categorical", "values": ["a", "b", "c"]}, {v: 1 / 3 for v in "abc"}),
    ({"distribution": "categorical", "values": ["a", "b", "c"], "probabilities": [0.7, 0.0, 0.3]},
     {"a": 0.7, "b": 0.0, "c": 0.3}),
])
def test_discrete_frequencies_within_5_sigma(spec: dict, probs: dict) -> None:
    d = from_spec(spec)
    rng = np.random.default_rng(99)
    counts: dict = {}
    for _ in range(N):
        x = d.sample(rng)
        counts[x] = counts.get(x, 0) + 1
    _assert_within_5_sigma(counts, probs, N)
