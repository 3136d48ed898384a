"""What a point means in a sweep's search space: values typed as declared, checked, completed.

Points come from three places, and each is read here the same way:

- an enqueued point (``mlflow sweep enqueue``), typed by JSON or YAML: ``check_points`` refuses
  a value outside the space or an unknown name, with its path;
- a prior run, whose params MLflow keeps as text: ``from_text`` reads ``"0.01"`` as 0.01,
  ``"True"`` as True, ``"3"`` as 3 for an integer parameter, and a categorical value as the
  declared value it spells;
- a trial of an earlier config version, or a prior run, after ``mlflow sweep update --config``:
  ``fit`` places it in the new space (a parameter it lacks takes the parameter's ``default:`` or
  its single ``value:``), or says it does not fit.

Matching a value to the declared one is type-exact first (1, 1.0, True and "1" are four values,
as everywhere in the sweep) and then by number: 32.0 for a categorical of ints is 32, 3.0 for an
int_uniform is 3, 1 for a uniform is 1.0. Pure: no mlflow, files or clock.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from mlflow_sweep.distributions import Categorical, Constant, IntUniform, value_key
from mlflow_sweep.errors import Problem, closest
from mlflow_sweep.trials import is_number

if TYPE_CHECKING:
    import numpy

    from mlflow_sweep.config import SweepConfig
    from mlflow_sweep.distributions import Distribution


class _NotAValue:
    """``coerce``'s "no value of this parameter" (None can be a categorical value)."""

    def __repr__(self) -> str:
        return "NOT_A_VALUE"

    def __bool__(self) -> bool:
        return False


NOT_A_VALUE: Any = _NotAValue()


def coerce(dist: Distribution, value: Any) -> Any:
    """``value`` as a value of ``dist`` in the declared type, or ``NOT_A_VALUE``.

    The declared type is that of the listed values for ``values``/``value``, int for
    ``int_uniform`` and for a distribution quantized by an int ``q``, float for the other ranges.

    Args:
        dist: the parameter's distribution.
        value: a typed value (JSON, YAML, Python).
    """
    if isinstance(dist, (Categorical, Constant)):
        if dist.contains(value):
            return value
        declared = dist.values if isinstance(dist, Categorical) else (dist.value,)
        return next((v for v in declared if _same_number(v, value)), NOT_A_VALUE)
    if not is_number(value):
        return NOT_A_VALUE
    if _wants_int(dist):
        if not float(value).is_integer():
            return NOT_A_VALUE
        typed: Any = int(value)
    else:
        typed = float(value)
    return typed if dist.contains(typed) else NOT_A_VALUE


def _wants_int(dist: Distribution) -> bool:
    q = getattr(dist, "q", None)
    return isinstance(dist, IntUniform) or (isinstance(q, int) and not isinstance(q, bool))


def _same_number(declared: Any, value: Any) -> bool:
    return is_number(declared) and is_number(value) and declared == value


def from_text(dist: Distribution, text: str) -> Any:
    """An MLflow param's text as a value of ``dist`` in the declared type, or ``NOT_A_VALUE``.

    A categorical value spelled as the agent logs it (``str()``) is that value; otherwise the text
    is read as JSON, as a Python literal, as a float, and as itself, and the first reading that is
    a value of the parameter wins.

    Args:
        dist: the parameter's distribution.
        text: the param as MLflow keeps it.
    """
    if isinstance(dist, (Categorical, Constant)):
        declared = dist.values if isinstance(dist, Categorical) else (dist.value,)
        spelled = next((v for v in declared if str(v) == text), NOT_A_VALUE)
        if spelled is not NOT_A_VALUE:
            return spelled
    for reading in _readings(text):
        value = coerce(dist, reading)
        if value is not NOT_A_VALUE:
            return value
    return NOT_A_VALUE


def _readings(text: str) -> list[Any]:
    """The values a text may spell: JSON, a Python literal, a float, the text itself."""
    out = []
    for read in (json.loads, ast.literal_eval, float):
        try:
            out.append(read(text))
        except Exception:  # noqa: BLE001  a text that is not this kind of value
            continue
    return [*out, text]


@dataclass(frozen=True)
class Placed:
    """Where a point landed in a space: its params, or why it does not fit (``outside`` or ``missing``)."""

    params: dict[str, Any] | None
    why: str | None = None
    """``outside`` (a value is not one of the parameter's) or ``missing`` (a parameter has no value)."""
    name: str | None = None
    """The parameter that decided ``why``."""


def fit(config: SweepConfig, params: Mapping[str, Any]) -> Placed:
    """A trial's (or prior run's) values in ``config``'s space, in the config's parameter order.

    A parameter the point lacks takes its ``default:`` or single ``value:``; parameters the config
    no longer has are dropped.

    Args:
        config: the config in effect.
        params: the point's values under MLflow param names, typed.
    """
    return _place(config, params, lambda dist, value: coerce(dist, value))


def from_run(config: SweepConfig, params: Mapping[str, str]) -> Placed:
    """A prior run's params (MLflow's text) in ``config``'s space, as ``fit`` places a typed point.

    Args:
        config: the config the sweep is created with.
        params: the run's params, as text.
    """
    return _place(config, params, from_text)


def _place(config: SweepConfig, params: Mapping[str, Any], read: Any) -> Placed:
    out: dict[str, Any] = {}
    for name, dist in config.parameters.items():
        if name not in params:
            backfill = _backfill(config, name, dist)
            if backfill is NOT_A_VALUE:
                return Placed(None, "missing", name)
            out[name] = backfill
            continue
        value = read(dist, params[name])
        if value is NOT_A_VALUE:
            return Placed(None, "outside", name)
        out[name] = value
    return Placed(out)


def _backfill(config: SweepConfig, name: str, dist: Distribution) -> Any:
    """What a point without ``name`` had: the parameter's ``default:``, else its single value."""
    if name in config.defaults:
        return config.defaults[name]
    values = dist.grid_values()
    return values[0] if values is not None and len(values) == 1 else NOT_A_VALUE


def check_points(config: SweepConfig, points: Sequence[Any]) -> tuple[list[dict[str, Any]], list[Problem]]:
    """Enqueued points checked against ``config``: each one's typed values, or every problem with its path.

    A point is a mapping of parameter names (flat, ``optimizer.lr``, or nested blocks as mappings)
    to values; parameters it leaves out are sampled when it is claimed. Paths are ``[i].name``.

    Args:
        config: the config in effect.
        points: the points as given.
    """
    checked: list[dict[str, Any]] = []
    problems: list[Problem] = []
    for i, point in enumerate(points):
        if not isinstance(point, Mapping):
            problems.append(Problem(f"[{i}]", f"{point!r} is not a mapping of parameter names to values"))
            continue
        params, found = _check_point(config, _flat(config, point), f"[{i}].")
        checked.append(params)
        problems += found
    return checked, problems


def _flat(config: SweepConfig, point: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A point with nested blocks (``{"optimizer": {"lr": 0.1}}``) under dotted names."""
    groups = config.groups()
    out: dict[str, Any] = {}
    for key, value in point.items():
        name = f"{prefix}{key}"
        if name in groups and name not in config.parameters and isinstance(value, Mapping):
            out.update(_flat(config, value, f"{name}."))
        else:
            out[name] = value
    return out


def _check_point(config: SweepConfig, point: Mapping[str, Any], where: str) -> tuple[dict[str, Any], list[Problem]]:
    params: dict[str, Any] = {}
    problems = []
    for name, value in point.items():
        dist = config.parameters.get(name)
        if dist is None:
            close = closest(str(name), list(config.parameters))
            hint = f"did you mean {close!r}?" if close else f"known: {', '.join(config.parameters)}"
            problems.append(Problem(f"{where}{name}", "is not a parameter of the sweep", hint))
            continue
        typed = coerce(dist, value)
        if typed is NOT_A_VALUE:
            problems.append(Problem(f"{where}{name}", f"{value!r} is outside the search space: {dist.describe()}"))
            continue
        params[name] = typed
    return params, problems


def partial(config: SweepConfig, params: Mapping[str, Any]) -> dict[str, Any] | None:
    """An enqueued point's values in ``config``'s space (typed as declared), or None when one no longer fits.

    A config updated after the point was enqueued may have dropped some of its parameters (they
    are dropped here too) or narrowed their space (then the point does not fit).

    Args:
        config: the config in effect.
        params: the point's values as enqueued.
    """
    out: dict[str, Any] = {}
    for name, value in params.items():
        dist = config.parameters.get(name)
        if dist is None:
            continue
        typed = coerce(dist, value)
        if typed is NOT_A_VALUE:
            return None
        out[name] = typed
    return out


def complete(config: SweepConfig, params: Mapping[str, Any], rng: numpy.random.Generator) -> dict[str, Any]:
    """A point with every parameter of ``config``, in its order: the given values, the others drawn with ``rng``.

    Args:
        config: the config in effect.
        params: values already in the space (``partial``).
        rng: draws the missing parameters from their distributions.
    """
    return {name: params[name] if name in params else dist.sample(rng) for name, dist in config.parameters.items()}


def same_point(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two points have the same values, type-exact (1, 1.0 and True differ)."""
    return value_key(dict(a)) == value_key(dict(b))
