"""Grid search: a fixed point order, and the lowest point no live trial holds.

Point ``i`` is the ``i``-th element of the cartesian product of every parameter's
``grid_values()`` in the config's parameter order, the last parameter varying fastest
(``itertools.product`` order). A trial holds its point unless it is ``dead`` (its agent
went silent), so failed trials are not retried but a dead agent's point comes back.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from mlflow_sweep.distributions import value_key
from mlflow_sweep.trials import DONE, Proposal

if TYPE_CHECKING:
    from mlflow_sweep.trials import Trial, _Done


def axes(config: Any) -> list[tuple[str, tuple]]:
    """Each parameter's name and grid values, in point order; ValueError when one is infinite."""
    out = []
    for name, dist in config.parameters.items():
        values = dist.grid_values()
        if values is None:
            raise ValueError(f"parameter {name!r} ({dist.describe()}) has no finite grid")
        out.append((name, tuple(values)))
    return out


def point_params(config: Any, point: int) -> dict[str, Any]:
    """The parameters of grid point ``point``."""
    return _decode(axes(config), point)


def point_of(config: Any, params: Mapping[str, Any]) -> int | None:
    """The point index of a parameter set, or None when it is not on the grid."""
    return _encode(axes(config), params)


def _decode(grid: list[tuple[str, tuple]], point: int) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, values in reversed(grid):
        point, digit = divmod(point, len(values))
        params[name] = values[digit]
    return dict(reversed(params.items()))


def _encode(grid: list[tuple[str, tuple]], params: Mapping[str, Any]) -> int | None:
    point = 0
    for name, values in grid:
        key = value_key(params[name]) if name in params else None
        digit = next((i for i, v in enumerate(values) if value_key(v) == key), None)
        if digit is None:
            return None
        point = point * len(values) + digit
    return point


def _held(grid: list[tuple[str, tuple]], history: Sequence[Trial]) -> set[int]:
    held = set()
    for trial in history:
        if trial.dead:
            continue
        point = trial.point if trial.point is not None else _encode(grid, trial.params)
        if point is not None:
            held.add(point)
    return held


def propose(config: Any, history: Sequence[Trial], seed: int, index: int) -> Proposal | _Done:
    """The lowest point no live trial holds, or DONE; ``seed`` and ``index`` are unused."""
    grid = axes(config)
    held = _held(grid, history)
    point = next((p for p in range(config.grid_size()) if p not in held), None)
    if point is None:
        return DONE
    return Proposal(params=_decode(grid, point), point=point)
