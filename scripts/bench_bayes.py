#!/usr/bin/env python
"""Benchmark ``bayes`` side by side with Optuna's GP and TPE, in parallel, on two objectives, and time proposals.

One run gives every table of docs/benchmarks.md's search section (Optuna and PyTorch needed:
``pip install -e '.[optuna]' torch``):

- Regret at 30 and 60 trials on Branin, Hartmann6 and a mixed space (log-real, int, 3-way
  categorical): our ``bayes`` and ``random`` against Optuna's ``GPSampler`` and ``TPESampler``
  (Optuna's own ask/tell loop, its defaults, seeded). Each run goes to the largest trial count;
  the regret at a smaller one is that of the run's first trials (no method looks at the count).
- 8 agents in parallel against one agent: each proposal is made with the 7 trials begun before
  it and not yet finished as running (pending), trials finishing in the order they began.
- Two objectives (Branin-Currin, both minimized): the hypervolume of the trials' Pareto front
  against the reference point (18, 6), for ``random`` and the model-based methods that search
  several objectives (Optuna's TPE, GP and NSGA-II behind ``metrics:``), same seeds.
- One proposal's time after 25 … 200 finished trials, ``bayes`` next to Optuna's methods.

    nice -n 10 python scripts/bench_bayes.py --save bench.json          # everything, 20 seeds
    python scripts/bench_bayes.py --seeds 3 --budgets 15 --only regret --problems branin
    python scripts/bench_bayes.py --load bench.json                     # print a saved run again
    python scripts/bench_bayes.py --reuse bench.json --methods bayes --save new.json   # rerun bayes only

Every seed's trace (the value of each trial, in order) is saved, so ``--reuse`` keeps the runs of
methods not named by ``--methods`` (their results are deterministic) and reruns the others.
P(b<x) is the share of (bayes seed, x seed) pairs in which bayes ended lower (ties count half).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from mlflow_sweep.config import config_from_dict
from mlflow_sweep.samplers import propose
from mlflow_sweep.samplers import random as random_search
from mlflow_sweep.trials import Trial, TrialState


@dataclass(frozen=True)
class Problem:
    """A W&B parameter block, its objective (to minimize) and known optimum."""

    name: str
    parameters: Mapping[str, Mapping]
    objective: Callable[[Mapping[str, Any]], float]
    optimum: float


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


PROBLEMS = {
    "branin": Problem("branin", {"x1": {"min": -5.0, "max": 10.0}, "x2": {"min": 0.0, "max": 15.0}},
                      _branin, 0.397887),
    "hartmann6": Problem("hartmann6", {f"x{i}": {"min": 0.0, "max": 1.0} for i in range(6)}, _hartmann6, -3.32237),
    "mixed": Problem("mixed", {"lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1.0},
                               "depth": {"min": 1, "max": 20}, "kind": {"values": ["a", "b", "c"]}}, _mixed, 0.0),
}


def _branin_currin(p: Mapping[str, Any]) -> tuple[float, float]:
    """Branin on the rescaled box and Currin's exponential function, both minimized (x in [0, 1]²)."""
    x0, x1 = p["x0"], p["x1"]
    f1 = _branin({"x1": 15 * x0 - 5, "x2": 15 * x1})
    factor = 1 - math.exp(-1 / (2 * x1)) if x1 > 0 else 1.0
    f2 = factor * (2300 * x0**3 + 1900 * x0**2 + 2092 * x0 + 60) / (100 * x0**3 + 500 * x0**2 + 4 * x0 + 20)
    return f1, f2


TWO_OBJECTIVE = {"x0": {"min": 0.0, "max": 1.0}, "x1": {"min": 0.0, "max": 1.0}}
REFERENCE = (18.0, 6.0)
"""The reference point of Branin-Currin's hypervolume (as BoTorch's test problem uses)."""


def hypervolume(points: list[tuple[float, float]], reference: tuple[float, float] = REFERENCE) -> float:
    """The area dominated by ``points`` (both minimized) and bounded by ``reference``."""
    inside = sorted(p for p in points if p[0] < reference[0] and p[1] < reference[1])
    area, ceiling = 0.0, reference[1]
    for f1, f2 in inside:
        if f2 < ceiling:
            area += (reference[0] - f1) * (ceiling - f2)
            ceiling = f2
    return area


def _config(parameters: Mapping, method: str, objectives: int = 1) -> Any:
    data: dict[str, Any] = {"method": method, "parameters": parameters, "command": "true"}
    if objectives == 1:
        data["metric"] = {"name": "y"}
    else:
        data["metrics"] = [{"name": f"y{k}"} for k in range(objectives)]
    return config_from_dict(data, "bench")


def run_ours(problem: Problem, method: str, seed: int, trials: int, agents: int = 1) -> list[float]:
    """Objective values of one sweep with our sampler, in trial order; ``agents`` in flight at once."""
    config = _config(problem.parameters, "random" if method == "random" else method)
    history: list[Trial] = []
    running: deque[int] = deque()
    for i in range(trials):
        if len(running) == agents:
            _finish(history, running.popleft(), problem.objective)
        params = propose(config, history, seed, i).params
        history.append(Trial(index=i, params=params, state=TrialState.RUNNING))
        running.append(i)
    while running:
        _finish(history, running.popleft(), problem.objective)
    return [t.metric for t in history]


def _finish(history: list[Trial], index: int, objective: Callable) -> None:
    trial = history[index]
    history[index] = Trial(index=index, params=trial.params, state=TrialState.FINISHED,
                           metric=objective(trial.params))


def _suggest(trial: Any, name: str, spec: Mapping) -> Any:
    if "values" in spec:
        return trial.suggest_categorical(name, spec["values"])
    if isinstance(spec["min"], int):
        return trial.suggest_int(name, spec["min"], spec["max"])
    return trial.suggest_float(name, spec["min"], spec["max"], log=spec.get("distribution") == "log_uniform_values")


def run_optuna(problem: Problem, method: str, seed: int, trials: int, agents: int = 1) -> list[float]:
    """Objective values of one Optuna study (its own ask/tell loop, default settings), in trial order."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    sampler = {"optuna_gp": optuna.samplers.GPSampler, "optuna_tpe": optuna.samplers.TPESampler}[method](seed=seed)
    study = optuna.create_study(sampler=sampler)
    for _ in range(trials):
        trial = study.ask()
        study.tell(trial, problem.objective({n: _suggest(trial, n, s) for n, s in problem.parameters.items()}))
    return [t.value for t in study.trials]


RUNNERS = {"bayes": run_ours, "random": run_ours, "optuna_gp": run_optuna, "optuna_tpe": run_optuna}
TWO_METHODS = ("random", "tpe", "gp", "nsga2")


def run_two(method: str, seed: int, trials: int) -> list[list[float]]:
    """Both objectives of every trial of one Branin-Currin sweep through our method."""
    config = _config(TWO_OBJECTIVE, method, objectives=2)
    history: list[Trial] = []
    for i in range(trials):
        params = propose(config, history, seed, i).params
        values = _branin_currin(params)
        history.append(Trial(index=i, params=params, state=TrialState.FINISHED,
                             metrics={"y0": values[0], "y1": values[1]}))
    return [[t.metrics["y0"], t.metrics["y1"]] for t in history]


def _timed(label: str, work: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    out = work()
    print(f"  {label:<34} {time.perf_counter() - start:8.1f} s  (load {os.getloadavg()[0]:.1f})", flush=True)
    return out


def collect(args: argparse.Namespace, reused: Mapping) -> dict:
    """Every trace this run asks for; those of methods not in ``--methods`` come from ``--reuse``."""
    out: dict[str, dict] = {"seeds": args.seeds, "trials": max(args.budgets), "traces": {}, "parallel": {},
                            "two": {}, "timing": reused.get("timing", {})}
    seeds = range(args.seeds)
    for kind in ("traces", "parallel", "two"):
        out[kind] = {k: v for k, v in reused.get(kind, {}).items()}
    if "regret" in args.only:
        for name in args.problems:
            for method in RUNNERS:
                key = f"{name}/{method}"
                if method in args.methods:
                    out["traces"][key] = _timed(key, lambda: [RUNNERS[method](PROBLEMS[name], method, s, out["trials"])
                                                              for s in seeds])
    if "parallel" in args.only:
        for name in args.problems:
            for method in args.parallel_methods:
                key = f"{name}/{method}/{args.agents}"
                if method in args.methods:
                    runner = RUNNERS.get(method, run_ours)
                    out["parallel"][key] = _timed(key, lambda: [runner(PROBLEMS[name], method, s, out["trials"],
                                                                       args.agents) for s in seeds])
    if "two" in args.only:
        for method in TWO_METHODS:
            if method in args.methods:
                out["two"][method] = _timed(f"branin-currin/{method}",
                                            lambda: [run_two(method, s, out["trials"]) for s in seeds])
    if "timing" in args.only:
        out["timing"] = time_proposals(args.timing_sizes, args.timing_reps, args.timing_methods)
    return out


def regret(trace: list[float], optimum: float, n: int) -> float:
    return min(trace[:n]) - optimum


def p_lower(ours: list[float], theirs: list[float]) -> float:
    """Share of (ours, theirs) pairs where ours is lower; a tie counts half."""
    wins = sum((a < b) + 0.5 * (a == b) for a in ours for b in theirs)
    return wins / (len(ours) * len(theirs))


def _cell(xs: list[float]) -> str:
    q25, q50, q75 = np.percentile(xs, [25, 50, 75])
    return f"{q50:.4g} [{q25:.3g}, {q75:.3g}]"


def print_regret(saved: dict, budgets: list[int]) -> None:
    methods = list(RUNNERS)
    for n in budgets:
        print(f"\nRegret after {n} trials, {saved['seeds']} seeds: median [q25, q75]; lower is better")
        print("| problem | " + " | ".join(methods) + " | P(b<gp) | P(b<tpe) |")
        print("|---" * (len(methods) + 3) + "|")
        for name, problem in PROBLEMS.items():
            reg = {m: [regret(t, problem.optimum, n) for t in saved["traces"][f"{name}/{m}"]]
                   for m in methods if f"{name}/{m}" in saved["traces"]}
            if not reg:
                continue
            cells = " | ".join(_cell(reg[m]) if m in reg else "—" for m in methods)
            wins = [f"{p_lower(reg['bayes'], reg[m]):.2f}" if "bayes" in reg and m in reg else "—"
                    for m in ("optuna_gp", "optuna_tpe")]
            print(f"| {name} | {cells} | {' | '.join(wins)} |")


def print_parallel(saved: dict, budgets: list[int]) -> None:
    if not saved["parallel"]:
        return
    print("\nParallel agents against one (median regret; ratio = parallel / sequential, same trial count)")
    print("| problem | method | agents | trials | sequential | parallel | ratio |")
    print("|---|---|---|---|---|---|---|")
    for key, traces in saved["parallel"].items():
        name, method, agents = key.split("/")
        sequential = saved["traces"].get(f"{name}/{method}")
        if sequential is None:
            continue
        for n in budgets:
            opt = PROBLEMS[name].optimum
            seq = statistics.median(regret(t, opt, n) for t in sequential)
            par = statistics.median(regret(t, opt, n) for t in traces)
            print(f"| {name} | {method} | {agents} | {n} | {seq:.4g} | {par:.4g} | {par / seq:.2f} |")


def print_two(saved: dict, budgets: list[int]) -> None:
    if not saved["two"]:
        return
    print(f"\nBranin-Currin, two objectives: hypervolume of the front (reference {REFERENCE}); higher is better")
    print("| method | " + " | ".join(f"{n} trials" for n in budgets) + " | P(>random) at each |")
    print("|---" * (len(budgets) + 2) + "|")
    base = {n: [hypervolume([tuple(v) for v in run[:n]]) for run in saved["two"].get("random", [])] for n in budgets}
    for method, runs in saved["two"].items():
        hv = {n: [hypervolume([tuple(v) for v in run[:n]]) for run in runs] for n in budgets}
        wins = " / ".join(f"{1 - p_lower(hv[n], base[n]):.2f}" if base[n] else "—" for n in budgets)
        print(f"| {method} | " + " | ".join(_cell(hv[n]) for n in budgets) + f" | {wins} |")


def time_proposals(sizes: list[int], reps: int, names: list[str]) -> dict:
    """Median wall time of one proposal on Hartmann6 after n finished trials (and 4 running)."""
    out: dict[str, dict] = {}
    for method in names:
        out[method] = {}
        for n in sizes:
            out[method][str(n)] = _time_one(method, n, reps)
            print(f"  timing {method:<6} {n:>4} finished: {out[method][str(n)]:.3f} s "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
    return out


def _time_one(method: str, n: int, reps: int, running: int = 4) -> float:
    problem = PROBLEMS["hartmann6"]
    config = _config(problem.parameters, method)
    history = []
    for i in range(n + running):
        params = random_search.propose(config, [], 1, i).params
        done = i < n
        history.append(Trial(index=i, params=params, state=TrialState.FINISHED if done else TrialState.RUNNING,
                             metric=problem.objective(params) if done else None))
    propose(config, history, 0, n + running)  # warm-up: imports
    times = []
    for r in range(reps):
        start = time.perf_counter()
        propose(config, history, r + 1, n + running)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def print_timing(saved: dict) -> None:
    if not saved["timing"]:
        return
    sizes = list(next(iter(saved["timing"].values())))
    print("\nOne proposal on Hartmann6 with 4 running trials (median), seconds")
    print("| finished trials | " + " | ".join(saved["timing"]) + " |")
    print("|---" * (len(saved["timing"]) + 1) + "|")
    for n in sizes:
        print(f"| {n} | " + " | ".join(f"{saved['timing'][m][n]:.3f}" for m in saved["timing"]) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budgets", type=int, nargs="+", default=[30, 60], help="trial counts to report")
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    parser.add_argument("--only", nargs="+", default=["regret", "parallel", "two", "timing"],
                        choices=["regret", "parallel", "two", "timing"])
    parser.add_argument("--methods", nargs="+", default=[*RUNNERS, *TWO_METHODS],
                        help="methods to run; the others' traces come from --reuse, if it has them")
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--parallel-methods", nargs="+", default=["bayes"])
    parser.add_argument("--timing-sizes", type=int, nargs="+", default=[25, 50, 100, 200])
    parser.add_argument("--timing-reps", type=int, default=3)
    parser.add_argument("--timing-methods", nargs="+", default=["bayes", "tpe", "gp", "cmaes", "nsga2"])
    parser.add_argument("--save", help="write every trace to this JSON file")
    parser.add_argument("--load", help="print the tables of a saved run instead of running")
    parser.add_argument("--reuse", help="take the traces of methods not in --methods from this saved run")
    args = parser.parse_args()
    if args.load:
        saved = json.loads(Path(args.load).read_text())
    else:
        reused = json.loads(Path(args.reuse).read_text()) if args.reuse else {}
        print(f"{args.seeds} seeds, up to {max(args.budgets)} trials, load {os.getloadavg()[0]:.1f}", flush=True)
        saved = collect(args, reused)
        if args.save:
            Path(args.save).write_text(json.dumps(saved))
    budgets = [n for n in args.budgets if n <= saved["trials"]]
    print_regret(saved, budgets)
    print_parallel(saved, budgets)
    print_two(saved, budgets)
    print_timing(saved)


if __name__ == "__main__":
    main()
