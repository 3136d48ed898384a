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

from mlflow_sweep import distributions, points, schema, sweepfile
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
    lines = [f"sweep_name: {config.sweep_name or '(generated)'}",
             f"experiment_name: {config.experiment_name}",
             f"method: {config.method}"]
    if config.metric is not None:
        lines.append(f"metric: {_describe_metric(config.metric)}")
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
    problems += _command_problems(data, params) + _metric_problems(data)
    bad = {p.path for p in found}
    dists: dict[str, Distribution] = {}
    for param in params:
        if any(_under(path, schema.format_path(param.path)) for path in bad):
            continue
        dist, param_problems = _check_parameter(param, data.get("method"))
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


def _metric_problems(data: dict) -> list[Problem]:
    out = []
    if data.get("method") == "bayes" and "metric" not in data:
        out.append(Problem("metric", "missing (required for method bayes)"))
    if "early_terminate" in data and "metric" not in data:
        out.append(Problem("metric", "missing (required for early_terminate)"))
    return out


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
        method=raw["method"],
        metric=None if metric is None else Metric(metric["name"], metric["goal"], metric.get("target"),
                                                  metric["impute"], metric["summary"]),
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
    )


def _defaults(dists: Mapping[str, Distribution], params: list[_Param]) -> dict[str, Any]:
    """Each parameter's ``default:``, typed as declared (checked already)."""
    return {p.name: points.coerce(dists[p.name], p.spec["default"]) for p in params
            if isinstance(p.spec, dict) and "default" in p.spec}


_RAW_ORDER = ("command", "program", "experiment_name", "sweep_name", "description", "method", "metric",
              "run_cap", "seed", "early_terminate", "parameters")
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
        metric = dict(raw["metric"])
        raw["metric"] = {"name": metric.pop("name"), **metric}
    if "early_terminate" in raw:
        raw["early_terminate"] = {k: int(v) if k in _HYPERBAND_INTEGERS else v
                                  for k, v in raw["early_terminate"].items()}
    raw["parameters"] = _normalized_specs(data["parameters"], "", dists)
    return {**{k: raw[k] for k in _RAW_ORDER if k in raw}, **raw}


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
