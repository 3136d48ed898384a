#!/usr/bin/env python
"""Benchmark ``bayes`` against ``random`` and Optuna's TPE, and time one ``bayes`` proposal (target: ≤ 1 s).

Problems: Branin (2-d), Hartmann6 (6-d), a mixed space (log-real, int, 3-way categorical) and
a real task (3-fold CV accuracy of scikit-learn's GradientBoostingClassifier on the bundled
breast-cancer data). Regret is the distance to the known optimum; for the real task, to the
best accuracy any method found. Optuna is a benchmark-only extra: pip install -e '.[bench]'.

    nice -n 10 python scripts/bench_bayes.py                 # 30 trials, 20 seeds, everything
    python scripts/bench_bayes.py --seeds 3 --trials 15 --problems branin --no-timing
    python scripts/bench_bayes.py --no-timing --save regrets.json   # keep every seed's regret

Besides medians and quartiles, the table gives P(bayes < other): the share of (bayes seed, other
seed) pairs in which bayes ended with the lower regret (ties count half), a summary that does not
flip with one seed the way a median comparison can. ``--load FILE`` re-prints a saved
run, ``--first K`` restricted to its first K seeds.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from mlflow_sweep.samplers import bayes, random as random_search
from mlflow_sweep.trials import Trial, TrialState


@dataclass(frozen=True)
class Problem:
    """A W&B parameter block, its objective, direction and known optimum (None: unknown)."""

    name: str
    parameters: Mapping[str, Mapping]
    objective: Callable[[Mapping[str, Any]], float]
    goal: str = "minimize"
    optimum: float | None = None


def _branin(p: Mapping[str, Any]) -> float:
    x1, x2 = p["x1"], p["x2"]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                 [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_H_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                        [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])


def _hartmann6(p: Mapping[str, Any]) -> float:
    x = np.array([p[f"x{i}"] for i in range(6)])
    return float(-_H_ALPHA @ np.exp(-np.sum(_H_A * (x - _H_P) ** 2, axis=1)))


_MIXED = {"a": (-3.0, 4, 0.3), "b": (-2.0, 12, 0.0), "c": (-1.0, 8, 0.6)}


def _mixed(p: Mapping[str, Any]) -> float:
    """Minimum 0 at lr=1e-2, depth=12, kind=b; each kind moves the optimum and the floor."""
    log_lr, depth, floor = _MIXED[p["kind"]]
    d = math.log10(p["lr"]) - log_lr
    return d**2 + 0.01 * (p["depth"] - depth) ** 2 + 0.3 * math.sin(3 * d) ** 2 + floor


@lru_cache(maxsize=None)
def _breast_cancer() -> tuple:
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer(return_X_y=True)


@lru_cache(maxsize=None)
def _gbc_accuracy(lr: float, n_estimators: int, max_depth: int, subsample: float) -> float:
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    X, y = _breast_cancer()
    model = GradientBoostingClassifier(learning_rate=lr, n_estimators=n_estimators,
                                       max_depth=max_depth, subsample=subsample, random_state=0)
    return float(cross_val_score(model, X, y, cv=StratifiedKFold(3, shuffle=True, random_state=0)).mean())


def _gbc(p: Mapping[str, Any]) -> float:
    return _gbc_accuracy(p["learning_rate"], p["n_estimators"], p["max_depth"], p["subsample"])


PROBLEMS = {
    "branin": Problem("branin", {"x1": {"min": -5.0, "max": 10.0}, "x2": {"min": 0.0, "max": 15.0}},
                      _branin, optimum=0.397887),
    "hartmann6": Problem("hartmann6", {f"x{i}": {"min": 0.0, "max": 1.0} for i in range(6)},
                         _hartmann6, optimum=-3.32237),
    "mixed": Problem("mixed", {"lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1.0},
                               "depth": {"min": 1, "max": 20}, "kind": {"values": ["a", "b", "c"]}},
                     _mixed, optimum=0.0),
    "gbc": Problem("gbc", {"learning_rate": {"distribution": "log_uniform_values", "min": 1e-3, "max": 1.0},
                           "n_estimators": {"min": 5, "max": 50}, "max_depth": {"min": 1, "max": 5},
                           "subsample": {"min": 0.5, "max": 1.0}},
                   _gbc, goal="maximize"),
}


@dataclass(frozen=True)
class _Metric:
    name: str
    goal: str = "minimize"
    impute: str = "worst"
    summary: str = "best"
    target: float | None = None


@dataclass(frozen=True)
class _Config:
    """Stand-in for SweepConfig while mlflow_sweep.config is not there."""

    parameters: Mapping[str, Any]
    metric: _Metric
    method: str


def make_config(problem: Problem, method: str) -> Any:
    """The sweep config for a problem, through config_from_dict when it exists."""
    data = {"method": method, "metric": {"name": "y", "goal": problem.goal},
            "parameters": problem.parameters, "command": "true"}
    try:
        from mlflow_sweep.config import config_from_dict
    except ImportError:
        from mlflow_sweep.distributions import from_spec, infer_distribution

        params = {n: from_spec({**s, "distribution": infer_distribution(s)}) for n, s in problem.parameters.items()}
        return _Config(params, _Metric("y", problem.goal), method)
    return config_from_dict(data, "bench")


def run_ours(problem: Problem, method: str, seed: int, trials: int) -> list[float]:
    """Objective values of one sweep with our sampler, in trial order."""
    module = bayes if method == "bayes" else random_search
    config, history = make_config(problem, method), []
    for i in range(trials):
        params = module.propose(config, history, seed, i).params
        value = problem.objective(params)
        history.append(Trial(index=i, params=params, state=TrialState.FINISHED, metric=value))
    return [t.metric for t in history]


def _suggest(trial: Any, name: str, spec: Mapping) -> Any:
    if "values" in spec:
        return trial.suggest_categorical(name, spec["values"])
    if isinstance(spec["min"], int):
        return trial.suggest_int(name, spec["min"], spec["max"])
    log = spec.get("distribution") == "log_uniform_values"
    return trial.suggest_float(name, spec["min"], spec["max"], log=log)


def run_tpe(problem: Problem, method: str, seed: int, trials: int) -> list[float]:
    """Objective values of one Optuna TPE study (default settings), in trial order."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=problem.goal, sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(lambda t: problem.objective({n: _suggest(t, n, s) for n, s in problem.parameters.items()}),
                   n_trials=trials)
    return [t.value for t in study.trials]


RUNNERS = {"bayes": run_ours, "random": run_ours, "tpe": run_tpe}


def _best(values: list[float], goal: str) -> float:
    return max(values) if goal == "maximize" else min(values)


def regrets(problem: Problem, results: dict[str, list[list[float]]]) -> dict[str, list[float]]:
    """Final regret of every run; the real task's optimum is the best value any run found."""
    optimum = problem.optimum
    if optimum is None:
        optimum = _best([v for runs in results.values() for run in runs for v in run], problem.goal)
    sign = -1.0 if problem.goal == "maximize" else 1.0
    return {m: [sign * (_best(run, problem.goal) - optimum) for run in runs] for m, runs in results.items()}


def _stats(xs: list[float]) -> tuple[float, float, float]:
    q25, q50, q75 = np.percentile(xs, [25, 50, 75])
    return float(q50), float(q25), float(q75)


def bench_problem(problem: Problem, seeds: int, trials: int) -> dict[str, list[float]]:
    """Run every method on one problem and return the final regrets per method."""
    results: dict[str, list[list[float]]] = {}
    for method, runner in RUNNERS.items():
        start = time.perf_counter()
        results[method] = [runner(problem, method, seed, trials) for seed in range(seeds)]
        print(f"  {problem.name:<10} {method:<7} {time.perf_counter() - start:7.1f} s", flush=True)
    return regrets(problem, results)


def p_lower(ours: list[float], theirs: list[float]) -> float:
    """Share of (ours, theirs) pairs where ours is lower; a tie counts half."""
    wins = sum((a < b) + 0.5 * (a == b) for a in ours for b in theirs)
    return wins / (len(ours) * len(theirs))


def print_table(rows: dict[str, dict[str, list[float]]], trials: int, seeds: int) -> None:
    """One line per problem and method: median regret, IQR, and P(bayes lower) against each other."""
    print(f"\nRegret after {trials} trials, {seeds} seeds (median [q25, q75]); lower is better")
    print(f"{'problem':<10} | {'bayes':<30} | {'random':<30} | {'optuna tpe':<30} | P(b<random) | P(b<tpe)")
    for name, reg in rows.items():
        cells = [_stats(reg[m]) for m in ("bayes", "random", "tpe")]
        text = [f"{m:.4g} [{lo:.3g}, {hi:.3g}]" for m, lo, hi in cells]
        p = (p_lower(reg["bayes"], reg["random"]), p_lower(reg["bayes"], reg["tpe"]))
        print(f"{name:<10} | {text[0]:<30} | {text[1]:<30} | {text[2]:<30} | {p[0]:<11.2f} | {p[1]:.2f}")


def time_proposals(sizes: list[int], reps: int) -> None:
    """Median wall time of one bayes proposal after n completed trials, also with 4 running."""
    print(f"\nOne bayes proposal (median of {reps}), seconds")
    print(f"{'completed':>9} | {'hartmann6':>9} | {'mixed':>9} | {'hartmann6 + 4 running':>21}")
    for n in sizes:
        cells = [_time_one(PROBLEMS[name], n, reps, running) for name, running in
                 (("hartmann6", 0), ("mixed", 0), ("hartmann6", 4))]
        print(f"{n:>9} | {cells[0]:>9.3f} | {cells[1]:>9.3f} | {cells[2]:>21.3f}", flush=True)


def _time_one(problem: Problem, n: int, reps: int, running: int) -> float:
    config = make_config(problem, "bayes")
    history = []
    for i in range(n + running):
        params = random_search.propose(config, [], 1, i).params
        done = i < n
        history.append(Trial(index=i, params=params, state=TrialState.FINISHED if done else TrialState.RUNNING,
                             metric=problem.objective(params) if done else None))
    bayes.propose(config, history, 0, n + running)  # warm-up: imports
    times = []
    for r in range(reps):
        start = time.perf_counter()
        bayes.propose(config, history, r + 1, n + running)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    parser.add_argument("--timing-sizes", type=int, nargs="+", default=[25, 50, 100, 200])
    parser.add_argument("--timing-reps", type=int, default=5)
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--save", help="write every seed's final regret per problem and method to this JSON file")
    parser.add_argument("--load", help="print the table of a run saved with --save instead of running")
    parser.add_argument("--first", type=int, help="with --load: only the first K seeds")
    args = parser.parse_args()
    if args.load:
        saved = json.loads(Path(args.load).read_text())
        k = args.first or saved["seeds"]
        rows = {name: {m: runs[:k] for m, runs in reg.items()} for name, reg in saved["regrets"].items()}
        print_table(rows, saved["trials"], k)
        return
    rows = {name: bench_problem(PROBLEMS[name], args.seeds, args.trials) for name in args.problems}
    if args.save:
        Path(args.save).write_text(json.dumps({"trials": args.trials, "seeds": args.seeds, "regrets": rows}))
    print_table(rows, args.trials, args.seeds)
    if not args.no_timing:
        time_proposals(args.timing_sizes, args.timing_reps)


if __name__ == "__main__":
    main()
