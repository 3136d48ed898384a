"""Read a sweep file, check it once, and return one frozen SweepConfig.

Steps: read YAML or JSON (syntax errors with line:col) → infer each parameter's distribution
as W&B does → the JSON Schema → the checks a schema cannot express → W&B aliases and defaults.
Every problem found is reported at once, schema problems first, each group sorted by path.
"""
from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from mlflow_sweep import distributions, methods, points, schema, sweepfile
from mlflow_sweep.distributions import Distribution
from mlflow_sweep.errors import ConfigError, Problem
from mlflow_sweep.trials import is_number

MACROS = frozenset({"env", "interpreter", "program", "args", "args_no_hyphens",
                    "args_no_boolean_flags", "args_no_equals", "args_json", "args_json_file"})
IGNORED_KEYS = ("controller", "entity", "job", "image_uri", "apiVersion", "kind")
_ALIASES = (("project", "experiment_name"), ("name", "sweep_name"))
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_ARGS_MACROS = frozenset({"args", "args_no_hyphens", "args_no_boolean_flags", "args_no_equals", "args_json",
                          "args_json_file"})
_ENVVAR = re.compile(r"^envvar:[A-Za-z0-9_]+$")
_NUMERIC_KEYS = ("min", "max", "mu", "sigma", "q", "a", "b")
_MAX_GRID_VALUES = 100_000
_NUMBER_PASSES = 4
NO_COMMAND = ("neither program nor command is set, so 'mlflow sweep run' cannot start trials; "
              "run them from Python with mlflow_sweep.agent(sweep_id, function=train)")


@dataclass(frozen=True)
class Metric:
    """The metric a sweep optimizes, as the checked file gives it (the schema fills the defaults).

    ``goal`` is ``minimize`` or ``maximize``; ``target`` None means none; ``impute`` is what
    ``bayes`` assumes for a failed trial; ``summary`` picks which logged value counts.
    """

    name: str
    goal: str
    target: float | None
    impute: str
    summary: str

    def summarize(self, values: Sequence[float]) -> float | None:
        """A trial's single value: the best in the goal's direction, or the last; NaN and ±inf skipped."""
        finite = [v for v in values if is_number(v)]
        if not finite:
            return None
        if self.summary == "last":
            return finite[-1]
        return max(finite) if self.goal == "maximize" else min(finite)

    def reached(self, value: float) -> bool:
        """True when ``value`` meets ``target`` in the goal's direction: the sweep then claims no new trial."""
        if self.target is None:
            return False
        return value >= self.target if self.goal == "maximize" else value <= self.target

    @property
    def sign(self) -> float:
        """1 to minimize, -1 to maximize: ``sign * value`` is always to be minimized."""
        return -1.0 if self.goal == "maximize" else 1.0


@dataclass(frozen=True)
class SweepConfig:
    """A checked, normalized sweep file; ``raw`` rebuilds an equal config via config_from_dict."""

    parameters: Mapping[str, Distribution]
    method: str
    metric: Metric | None
    run_cap: int | None
    command: str | tuple[str, ...] | None
    program: str | None
    experiment_name: str
    sweep_name: str | None
    seed: int | None
    early_terminate: Mapping | None
    description: str | None
    raw: Mapping
    source: str
    warnings: tuple[str, ...] = ()
    paths: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Each parameter's key path in the file's tree: ``("model.lr",)`` for a flat name
    written with a dot, ``("optimizer", "lr")`` for a leaf of a nested ``parameters:`` block."""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    """Each parameter's ``default:`` (mlflow-sweep's own key), typed as declared: the value of runs
    that did not set it (trials of an earlier config version, prior runs)."""
    metrics: tuple[Metric, ...] = ()
    """The objectives of a sweep with several (``metrics:``); empty when it has ``metric`` or none."""

    @property
    def objectives(self) -> tuple[Metric, ...]:
        """What the sweep optimizes: ``(metric,)``, the ``metrics`` list, or nothing."""
        return self.metrics or ((self.metric,) if self.metric is not None else ())

    def count(self, histories: Mapping[str, Sequence[float]]) -> dict[str, float]:
        """Each objective's counted value from the values a trial logged (``Metric.summarize``).

        Pure, so the agent and tests compute a trial's values the same way; an objective the
        trial logged no finite value for is left out.

        Args:
            histories: objective name -> the values the trial logged under it, in logging order.
        """
        values = {m.name: m.summarize(histories.get(m.name, ())) for m in self.objectives}
        return {name: value for name, value in values.items() if value is not None}

    def nest(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """A trial's params in W&B's run-config shape: nested blocks as dicts, flat names kept flat.

        Args:
            params: the trial's values under MLflow param names (the keys of ``parameters``).
        """
        return nest(params, self.paths)

    def grid_size(self) -> int | None:
        """How many points a grid over every parameter has; None when a parameter has no finite grid."""
        sizes = [dist.grid_size() for dist in self.parameters.values()]
        return None if None in sizes else math.prod(sizes)  # type: ignore[arg-type]

    def groups(self) -> dict[str, tuple[str, ...]]:
        """Every nested block (and block within a block) by its dotted name, with its key path."""
        out: dict[str, tuple[str, ...]] = {}
        for path in self.paths.values():
            for i in range(1, len(path)):
                out.setdefault(".".join(path[:i]), path[:i])
        return out


def nest(params: Mapping[str, Any], paths: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    """Build the nested tree from flat params: ``{"model.lr": 1, "o.lr": 2}`` → ``{"model.lr": 1, "o": {"lr": 2}}``
    when ``model.lr`` is a flat name and ``o.lr`` a leaf of block ``o``.

    Args:
        params: values under MLflow param names, in config order.
        paths: each name's key path (``SweepConfig.paths``); a name without one stays flat.
    """
    out: dict[str, Any] = {}
    for name, value in params.items():
        *outer, leaf = paths.get(name, (name,))
        node = out
        for part in outer:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


@dataclass(frozen=True)
class _Param:
    """One leaf parameter while checking: MLflow name, path in the file, spec."""

    name: str
    path: tuple
    spec: Any

    @property
    def key_path(self) -> tuple[str, ...]:
        """The names along the nested tree, without the ``parameters`` levels."""
        return tuple(str(k) for k in self.path[1::2])


def load_config(path: str | Path) -> SweepConfig:
    """Read and check a YAML or JSON sweep file.

    Args:
        path: the sweep file; ``.json`` is read as JSON, anything else as YAML.
    """
    parsed = sweepfile.read(path)
    return config_from_dict(parsed.data, str(path), notes=parsed.warnings)


def config_from_dict(data: Any, source: str, *, notes: Sequence[str] = ()) -> SweepConfig:
    """Check a parsed sweep file and build its SweepConfig; raises ConfigError listing every problem.

    The packages the method needs (Optuna's extra) must be installed, or that is a problem too;
    ``stored_config`` (an existing sweep, for ``status`` and ``finalize``) does not ask.

    Args:
        data: the parsed file (or a config's ``raw``).
        source: the file name used in messages.
        notes: warnings from reading the file (e.g. duplicate keys), kept first.
    """
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {_kind(data)}"
        raise ConfigError(source, [Problem("", f"the file is {kind}, but must be a mapping with keys "
                                                 "such as command and parameters")])
    data, numbers = _numbers_from_text(data)
    data = _with_inferred_distributions(data)
    found = _sorted(schema.validate(data))
    filled = schema.with_defaults(_unaliased(data))
    params = list(_leaves(filled.get("parameters"), ("parameters",), ""))
    dists, semantic = _check_semantics(data, params, found)
    if not found:
        semantic += _install_problems(data)
    if found or semantic:
        raise ConfigError(source, found + _sorted(semantic))
    return _build(filled, dists, params, source, (*notes, *numbers, *_warnings(data, params)))


def stored_config(raw: Mapping[str, Any], source: str) -> SweepConfig:
    """Rebuild the SweepConfig of an existing sweep from the normalized form its ledger keeps (``raw``).

    That form passed every check when the sweep was made, so it is not checked again: a rule
    tightened in a later release must not make a running sweep impossible to open. Distributions
    are built from their stored specs and defaults are filled in as at ``init`` (so a default added
    later reaches older sweeps too). Raises LedgerError when the stored form cannot be built at all.

    Args:
        raw: ``SweepConfig.raw`` as the ledger's header holds it.
        source: how the sweep is named in messages (``sweep <id>``).
    """
    from mlflow_sweep.errors import LedgerError

    try:
        data = schema.with_defaults(_unaliased(_with_inferred_distributions(dict(raw))))
        params = list(_leaves(data.get("parameters"), ("parameters",), ""))
        dists = {p.name: distributions.from_spec(_coerced(p.spec)) for p in params}
        return _build(data, dists, params, source, ())
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise LedgerError(f"{source}: the sweep's config in its ledger cannot be read "
                          f"({type(exc).__name__}: {exc})") from None


def render_config(config: SweepConfig) -> str:
    """The normalized config as plain text, incl. each parameter's inferred distribution."""
    sampler = methods.METHODS[config.method].optuna
    lines = [f"sweep_name: {config.sweep_name or '(generated)'}",
             f"experiment_name: {config.experiment_name}",
             f"method: {config.method}" + (f" (Optuna's {sampler})" if sampler else "")]
    if config.metric is not None:
        lines.append(f"metric: {_describe_metric(config.metric)}")
    if config.metrics:
        lines.append("metrics:")
        lines += [f"  {_describe_metric(m)}" for m in config.metrics]
    lines.append(f"run_cap: {_describe_run_cap(config)}")
    lines += [f"{key}: {value}" for key, value in (
        ("seed", config.seed), ("program", config.program), ("description", config.description))
        if value is not None]
    if config.early_terminate:
        lines.append(f"early_terminate: {_describe_block(config.early_terminate)}")
    lines += [f"command: {_describe_command(config.command)}", "parameters:"]
    lines += [f"  {name}: {dist.describe()}" + (f" (default {config.defaults[name]!r} for earlier runs)"
                                                 if name in config.defaults else "")
              for name, dist in config.parameters.items()]
    return "\n".join(lines)


def _describe_command(command: str | tuple[str, ...] | None) -> str:
    if command is None:
        return f"none ({NO_COMMAND})"
    return command if isinstance(command, str) else " ".join(command)


# --- numbers written as YAML 1.1 text ----------------------------------------------------------


def _numbers_from_text(data: dict) -> tuple[dict, list[str]]:
    """``1e-4`` as a number wherever the schema wants one, with a warning per key.

    YAML 1.2 (and so W&B's server) reads ``1e-4`` as a number, PyYAML as text; sweepfile marks
    such scalars. Inference runs again after each pass: ``min: 1e-4`` decides the distribution.
    """
    if not _has_number_text(data):
        return data, []
    data = copy.deepcopy(data)
    notes: list[str] = []
    for _ in range(_NUMBER_PASSES):
        paths = [p for p, value in schema.number_wanted(_with_inferred_distributions(data))
                 if isinstance(value, sweepfile.NumberText)]
        if not paths:
            break
        for path in paths:
            notes.append(_set_number(data, path))
    return sweepfile.plain(data), sorted(notes)


def _has_number_text(node: Any) -> bool:
    if isinstance(node, dict):
        return any(_has_number_text(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_number_text(v) for v in node)
    return isinstance(node, sweepfile.NumberText)


def _set_number(data: Any, path: tuple) -> str:
    *outer, last = path
    for part in outer:
        data = data[part]
    text = data[last]
    data[last] = number = float(text)
    spelled = schema.yaml_float(text)
    return (f"{schema.format_path(path)}: {text} is text to PyYAML (YAML 1.1); read as the number "
            f"{number!r}, as W&B does (write {spelled} to make it a number for every YAML reader)")


# --- inference and leaves --------------------------------------------------------------------


def _with_inferred_distributions(data: dict) -> dict:
    """A copy with ``distribution`` filled in where W&B would infer it."""
    data = copy.deepcopy(data)
    for param in _leaves(data.get("parameters"), ("parameters",), ""):
        spec = param.spec
        if isinstance(spec, dict) and "distribution" not in spec:
            inferred = distributions.infer_distribution(spec)
            if inferred is not None:
                spec["distribution"] = inferred
    return data


def _leaves(params: Any, path: tuple, prefix: str) -> Iterator[_Param]:
    """Every leaf parameter in file order; nested groups become dotted names."""
    if not isinstance(params, dict):
        return
    for key, spec in params.items():
        name = f"{prefix}{key}"
        if isinstance(spec, dict) and "parameters" in spec:
            yield from _leaves(spec["parameters"], (*path, key, "parameters"), f"{name}.")
        else:
            yield _Param(name, (*path, key), spec)


def _groups(params: list[_Param]) -> set[str]:
    """Dotted names of nested blocks, which ``${outer}`` may address whole (not flat dotted names)."""
    return {".".join(p.key_path[:i]) for p in params for i in range(1, len(p.key_path))}


# --- semantic checks -------------------------------------------------------------------------


def _check_semantics(data: dict, params: list[_Param], found: list[Problem]) -> tuple[dict, list[Problem]]:
    """Checks a schema cannot express; returns the distributions built and the problems."""
    problems = _foreign_values(data, ())
    problems += _duplicate_names(params) + _alias_conflicts(data)
    problems += _command_problems(data, params) + _metric_problems(data) + _scheduler_problems(data)
    bad = {p.path for p in found}
    dists: dict[str, Distribution] = {}
    for param in params:
        if any(_under(path, schema.format_path(param.path)) for path in bad):
            continue
        dist, param_problems = _check_parameter(param, effective_method(data))
        problems += param_problems
        if dist is not None:
            dists[param.name] = dist
    return dists, problems


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "[")


def _check_parameter(param: _Param, method: Any) -> tuple[Distribution | None, list[Problem]]:
    where = schema.format_path(param.path)
    spec = param.spec
    infinite = [k for k in _NUMERIC_KEYS if isinstance(spec.get(k), float) and not is_number(spec[k])]
    if infinite:
        return None, [Problem(f"{where}.{k}", f"{spec[k]!r} is not a finite number") for k in infinite]
    dist = distributions.from_spec(_coerced(spec))
    problems = [Problem(where, reason) for reason in dist.problems()]
    if not problems and method == "grid":
        problems += _grid_problems(where, dist)
    if not problems and "default" in spec and points.coerce(dist, spec["default"]) is points.NOT_A_VALUE:
        problems.append(Problem(f"{where}.default", f"{spec['default']!r} is not a value of {dist.describe()}",
                                _default_hint(dist, spec["default"])))
    return dist, problems


def _default_hint(dist: Distribution, value: Any) -> str | None:
    """For a number YAML 1.1 read as text (``default: 1e-4``) where the parameter is a range."""
    if not isinstance(value, str) or dist.name in ("categorical", "constant"):
        return None
    try:
        float(value)
    except ValueError:
        return None
    return "YAML reads it as text; write it with a decimal point, e.g. 1.0e-4"


def _coerced(spec: dict) -> dict:
    """int_uniform bounds as ints: JSON Schema counts 3.0 as an integer, Python does not."""
    if spec.get("distribution") != "int_uniform":
        return spec
    return {**spec, **{k: int(spec[k]) for k in ("min", "max")}}


def _grid_problems(where: str, dist: Distribution) -> list[Problem]:
    if dist.name == "categorical" and dist.grid_values() is None:
        return [Problem(where, "probabilities cannot be used with method grid, which tries every value once")]
    size = dist.grid_size()
    if size is not None and size > _MAX_GRID_VALUES:
        return [Problem(where, f"{dist.describe()} has {size} values, too many for method grid "
                               f"(at most {_MAX_GRID_VALUES})")]
    if dist.grid_values() is None:
        return [Problem(where, f"{dist.describe()} is not finite, but method grid needs a finite set of values",
                        "use values, value, int_uniform or q_uniform")]
    return []


def _foreign_values(node: Any, path: tuple) -> list[Problem]:
    """Values YAML can make that JSON cannot hold (dates, non-text keys); the ledger is JSON."""
    if isinstance(node, dict):
        out = [Problem(schema.format_path(path), f"key {k!r} is not text", _key_hint(k))
               for k in node if not isinstance(k, str)]
        return out + [p for k, v in node.items() for p in _foreign_values(v, (*path, str(k)))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _foreign_values(v, (*path, i))]
    if isinstance(node, (str, int, float, bool)) or node is None:
        return []
    hint = f"quote it: '{node}'" if isinstance(node, date) else None
    return [Problem(schema.format_path(path), f"{node!r} is a {_kind(node)}, not a JSON value", hint)]


def _key_hint(key: Any) -> str:
    if isinstance(key, bool):
        return "YAML reads yes/no/on/off/true/false as booleans; quote the key"
    return f"quote it: '{key}'"


def _duplicate_names(params: list[_Param]) -> list[Problem]:
    """A flat name and a nested leaf that render to one MLflow param name, which holds one value."""
    first: dict[str, _Param] = {}
    out = []
    for param in params:
        if param.name in first:
            other = schema.format_path(first[param.name].path)
            out.append(Problem(schema.format_path(param.path), f"{param.name!r} is already defined at {other}",
                               "both would be the MLflow param of that name, which holds one value; rename one"))
        first.setdefault(param.name, param)
    return out


def _unaliased(data: dict) -> dict:
    """W&B's names (``project``, ``name``) under ours; ours wins when both are given (a conflict is a problem)."""
    out = {k: v for k, v in data.items() if k not in dict(_ALIASES)}
    for alias, key in _ALIASES:
        if alias in data:
            out.setdefault(key, data[alias])
    return out


def _alias_conflicts(data: dict) -> list[Problem]:
    return [Problem(alias, f"{data[alias]!r} conflicts with {key} {data[key]!r}", "give only one of them")
            for alias, key in _ALIASES if alias in data and key in data and data[alias] != data[key]]


def _command_problems(data: dict, params: list[_Param]) -> list[Problem]:
    command = data.get("command")
    if command is None:
        return []  # W&B's default command with program; without, the sweep is for the function agent
    if isinstance(command, str):
        pieces = [("command", command)]
    elif isinstance(command, list):
        pieces = [(f"command[{i}]", part) for i, part in enumerate(command) if isinstance(part, str)]
    else:
        return []
    known = {p.name for p in params} | _groups(params)
    return [problem for where, text in pieces for problem in _placeholder_problems(where, text, known, data)]


def _placeholder_problems(where: str, text: str, known: set[str], data: dict) -> list[Problem]:
    out = []
    for name in _PLACEHOLDER.findall(text):
        if name in known or _ENVVAR.match(name) or (name in MACROS and name != "program"):
            continue
        if name == "program":
            if not data.get("program"):
                out.append(Problem(where, "${program} is used, but program is not set"))
            continue
        out.append(Problem(where, f"${{{name}}} is not a parameter", _unknown_hint(name, known)))
    return out


def _unknown_hint(name: str, known: set[str]) -> str:
    if name.isupper() and name.replace("_", "").isalnum():
        return f"for an environment variable write ${name} or ${{envvar:{name}}}"
    return f"known: {', '.join(sorted(known))}" if known else "no parameters are defined"


def effective_method(data: Mapping) -> str:
    """The method a (checked) file runs: W&B's ``method: custom`` with the optuna engine is Optuna's default."""
    method = data.get("method", "random")
    scheduler = data.get("scheduler")
    if method == methods.CUSTOM and isinstance(scheduler, dict) and scheduler.get("engine") == "optuna":
        return methods.ENGINE_DEFAULT
    return method


def _metric_problems(data: dict) -> list[Problem]:
    """``metric`` or ``metrics`` where the method or hyperband needs one, and what several objectives allow."""
    method = effective_method(data)
    entry = methods.METHODS.get(method) if isinstance(method, str) else None
    single, several = "metric" in data, "metrics" in data
    out = []
    if single and several:
        out.append(Problem("metrics", "cannot be given together with metric: use metric for one objective, "
                                      "metrics for several"))
    if entry is not None and entry.needs_metric and not (single or several):
        out.append(Problem("metric", f"missing (required for method {method})"))
    if entry is not None and several and not single and not entry.several:
        out.append(Problem("method", f"{method} optimizes one metric, but metrics has several; for several "
                                     f"objectives use method {', '.join(methods.SEVERAL)} (or grid, random)"))
    if "early_terminate" in data and not single:
        out.append(Problem("early_terminate", "hyperband ranks trials by one metric, so it cannot be used with "
                                              "metrics (several objectives)") if several
                   else Problem("metric", "missing (required for early_terminate)"))
    return out + _duplicate_objectives(data.get("metrics"))


def _duplicate_objectives(entries: Any) -> list[Problem]:
    if not isinstance(entries, list):
        return []
    first: dict[str, int] = {}
    out = []
    for i, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            continue
        if name in first:
            out.append(Problem(f"metrics[{i}].name", f"{name!r} is already metrics[{first[name]}].name"))
        first.setdefault(name, i)
    return out


_WANDB_METHODS = ("grid", "random", "bayes")


def _scheduler_problems(data: dict) -> list[Problem]:
    """W&B's ``scheduler`` block: what its engines mean here, and what cannot be rebuilt by every agent."""
    method, scheduler = data.get("method"), data.get("scheduler")
    if not isinstance(scheduler, dict):
        if method == methods.CUSTOM:
            return [Problem("method", "custom needs a scheduler block that names the engine",
                            "scheduler: {engine: optuna}; or name Optuna's sampler: method tpe, gp, cmaes or nsga2")]
        return []
    engine, out = scheduler.get("engine"), []
    if engine == "ax":
        out.append(Problem("scheduler.engine", "'ax' is not supported (supported: optuna, wandb)"))
    elif engine == "wandb" and method not in _WANDB_METHODS:
        out.append(Problem("method", f"{method!r} cannot run on scheduler engine wandb, which runs grid, random "
                                     "or bayes (W&B's rule)"))
    elif engine == "optuna" and method in _WANDB_METHODS:
        out.append(Problem("method", f"{method!r} cannot run on scheduler engine optuna: write method custom "
                                     "(Optuna's default sampler, TPE) or name one: tpe, gp, cmaes, nsga2"))
    out += [Problem(f"scheduler.{key}", "not supported: every agent rebuilds the search from the sweep's "
                                        "history, so the sampler is named by method (tpe, gp, cmaes, nsga2), "
                                        "not built by a function in a file")
            for key in ("source", "optimizer", "search_space") if key in scheduler]
    if "early_terminate" in data:
        out.append(Problem("early_terminate", "cannot be used together with scheduler (W&B's rule)"))
    return out


def _install_problems(data: dict) -> list[Problem]:
    """The packages the method needs and this Python lacks (Optuna's extra, PyTorch for gp)."""
    method = effective_method(data)
    gaps = methods.missing(method) if isinstance(method, str) else []
    return [Problem("method", methods.missing_reason(method, gaps))] if gaps else []


def _sorted(problems: list[Problem]) -> list[Problem]:
    """Stable sort by path, with list indices in numeric order."""
    def key(problem: Problem) -> list:
        return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", problem.path)]

    return sorted(problems, key=key)


def _kind(value: Any) -> str:
    names = {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}
    return next((n for t, n in names.items() if type(value) is t), type(value).__name__)


# --- building ----------------------------------------------------------------------------------


def _build(data: dict, dists: dict[str, Distribution], params: list[_Param], source: str,
           warnings: Sequence[str]) -> SweepConfig:
    raw = _normalized(data, dists)
    metric = raw.get("metric")
    command = raw.get("command")
    return SweepConfig(
        parameters=dists,
        method=effective_method(raw),
        metric=None if metric is None else _metric(metric),
        run_cap=raw.get("run_cap"),
        command=command if command is None or isinstance(command, str) else tuple(command),
        program=raw.get("program"),
        experiment_name=raw["experiment_name"],
        sweep_name=raw.get("sweep_name"),
        seed=raw.get("seed"),
        early_terminate=raw.get("early_terminate"),
        description=raw.get("description"),
        raw=raw,
        source=source,
        warnings=tuple(warnings),
        paths={p.name: p.key_path for p in params},
        defaults=_defaults(dists, params),
        metrics=tuple(_metric(m) for m in raw.get("metrics", ())),
    )


def _defaults(dists: Mapping[str, Distribution], params: list[_Param]) -> dict[str, Any]:
    """Each parameter's ``default:``, typed as declared (checked already)."""
    return {p.name: points.coerce(dists[p.name], p.spec["default"]) for p in params
            if isinstance(p.spec, dict) and "default" in p.spec}


def _metric(entry: Mapping) -> Metric:
    """A ``metric`` (or ``metrics`` entry) of the filled file, its defaults from the schema."""
    return Metric(entry["name"], entry["goal"], entry.get("target"), entry["impute"], entry["summary"])


_RAW_ORDER = ("command", "program", "experiment_name", "sweep_name", "description", "method", "scheduler",
              "metric", "metrics", "run_cap", "seed", "early_terminate", "parameters")
_INTEGERS = ("run_cap", "seed")
_HYPERBAND_INTEGERS = ("min_iter", "max_iter", "s")


def _normalized(data: dict, dists: dict[str, Distribution]) -> dict:
    """The config as plain JSON-able data (aliases resolved and defaults filled already), specs normalized.

    JSON Schema counts 3.0 as an integer, Python does not: integers become ints here.
    """
    raw = dict(data)
    if isinstance(raw.get("command"), list):
        raw["command"] = [str(part) for part in raw["command"]]  # W&B allows [python, x.py, --epochs, 5]
    raw.update({k: int(raw[k]) for k in _INTEGERS if k in raw})
    if "metric" in raw:
        raw["metric"] = _name_first(raw["metric"])
    if "metrics" in raw:
        raw["metrics"] = [_name_first(entry) for entry in raw["metrics"]]
    if "early_terminate" in raw:
        raw["early_terminate"] = {k: int(v) if k in _HYPERBAND_INTEGERS else v
                                  for k, v in raw["early_terminate"].items()}
    raw["parameters"] = _normalized_specs(data["parameters"], "", dists)
    return {**{k: raw[k] for k in _RAW_ORDER if k in raw}, **raw}


def _name_first(entry: Mapping) -> dict:
    metric = dict(entry)
    return {"name": metric.pop("name"), **metric}


def _normalized_specs(params: dict, prefix: str, dists: dict[str, Distribution]) -> dict:
    out = {}
    for key, spec in params.items():
        if "parameters" in spec:
            out[key] = {"parameters": _normalized_specs(spec["parameters"], f"{prefix}{key}.", dists)}
        else:
            dist = dists[f"{prefix}{key}"]
            out[key] = dist.spec()
            if "default" in spec:
                out[key]["default"] = points.coerce(dist, spec["default"])
    return out


def _warnings(data: dict, params: list[_Param]) -> tuple[str, ...]:
    found = [f"{key} is ignored (W&B only)" for key in IGNORED_KEYS if key in data]
    if isinstance(data.get("metric"), dict) and "impute_while_running" in data["metric"]:
        found.append("metric.impute_while_running is ignored (W&B only)")
    found += [f"metrics[{i}].impute_while_running is ignored (W&B only)"
              for i, entry in enumerate(data.get("metrics", ())) if "impute_while_running" in entry]
    if "command" not in data and "program" not in data:
        found.append(NO_COMMAND)
    unused = _unused(data.get("command"), params)
    if unused:
        names = ", ".join(unused)
        found.append(f"parameter{'s' * (len(unused) > 1)} {names} {'are' if len(unused) > 1 else 'is'} not "
                     "used in command; the command will not see "
                     f"{'them' if len(unused) > 1 else 'it'} (pass parameters with ${{args}} or ${{name}}, "
                     "or read them from the JSON file named by MLFLOW_SWEEP_PARAMS_FILE)")
    return tuple(found)


def _unused(command: Any, params: list[_Param]) -> list[str]:
    """Parameters a command never passes: no args macro, and neither ``${name}`` nor its block."""
    if command is None:
        return []
    text = command if isinstance(command, str) else " ".join(str(part) for part in command)
    used = set(_PLACEHOLDER.findall(text))
    if used & _ARGS_MACROS:
        return []
    return [p.name for p in params if p.name not in used
            and not any(".".join(p.key_path[:i]) in used for i in range(1, len(p.key_path)))]


def _describe_metric(metric: Metric) -> str:
    extra = f", target {metric.target}" if metric.target is not None else ""
    return f"{metric.name} ({metric.goal}; summary {metric.summary}, impute {metric.impute}{extra})"


def _describe_run_cap(config: SweepConfig) -> str:
    if config.run_cap is not None:
        return str(config.run_cap)
    return f"none (the whole grid, {config.grid_size()} points)"


def _describe_block(block: Mapping) -> str:
    args = ", ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in block.items() if k != "type")
    return f"{block.get('type', 'hyperband')}({args})"
