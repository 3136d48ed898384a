"""The sweep file's JSON Schema (package data ``mlflow_sweep.schemas``) and its errors as Problems.

The schema is the single source of truth for the file's shape and its defaults. jsonschema's
messages are rewritten here so that each names the offending key as a dotted path, the value and
the rule, as a user needs them to fix the file.
"""
from __future__ import annotations

import copy
import functools
import json
import re
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from mlflow_sweep.errors import Problem, closest

if TYPE_CHECKING:
    from jsonschema import ValidationError

SCHEMA_PACKAGE = "mlflow_sweep.schemas"
SCHEMA_FILE = "sweep.schema.json"

_TYPE_NAMES = {
    "number": "a number", "integer": "an integer", "string": "a string", "array": "a list",
    "object": "a mapping", "boolean": "true or false", "null": "null",
}
# PyYAML (YAML 1.1) reads a float only with a dot and a signed exponent: 1e-3 and 1.0e3 are text.
_SCIENTIFIC = re.compile(r"^[-+]?(\d+|(?=\.\d))(\.\d*)?[eE]([-+]?)(\d+)$")
_NAME_RULE = "use letters, digits, _, - and ., starting with a letter or _"


def schema_source() -> str:
    """Where the schema is loaded from (for diagnostics and the packaging test)."""
    from importlib import resources

    return str(resources.files(SCHEMA_PACKAGE).joinpath(SCHEMA_FILE))


@functools.lru_cache(maxsize=None)
def load_schema() -> dict:
    """The parsed schema, read once from the installed package."""
    from importlib import resources

    text = resources.files(SCHEMA_PACKAGE).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    return json.loads(text)


@functools.lru_cache(maxsize=None)
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load_schema())


def with_defaults(data: Any, definition: str | None = None) -> Any:
    """A copy of ``data`` with the schema's ``default`` values filled in: the schema owns every default.

    Defaults are filled as W&B's sweeps engine fills them: wherever a ``properties`` keyword holds
    for an object (no error among its properties), each absent property that has a ``default`` gets
    it. So a default inside an ``if``/``then`` branch applies only where the branch does (``run_cap``
    10 unless the method is grid), and an object with a problem gets none (its problem is reported).

    Args:
        data: a parsed sweep file, or a part of one when ``definition`` is given.
        definition: the name of a ``$defs`` entry (``hyperband``, ``normal``, ...) that ``data`` is
            an instance of; None for a whole sweep file.
    """
    filled = copy.deepcopy(data)
    filler = _filler()
    if definition is not None:
        filler = filler.evolve(schema=load_schema()["$defs"][definition])
    for _ in filler.iter_errors(filled):
        pass  # the errors are validate()'s to report; here only the filling matters
    return filled


@functools.lru_cache(maxsize=None)
def _filler() -> Any:
    """The schema's validator, whose ``properties`` keyword also sets defaults (jsonschema's FAQ recipe)."""
    from jsonschema import Draft202012Validator, validators

    check_properties = Draft202012Validator.VALIDATORS["properties"]

    def properties(validator: Any, properties: dict, instance: Any, schema: dict) -> Iterator[Any]:
        errors = list(check_properties(validator, properties, instance, schema))
        yield from errors
        if not errors and isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))

    return validators.extend(Draft202012Validator, {"properties": properties})(load_schema())


def validate(data: Any) -> list[Problem]:
    """Every schema violation in ``data`` as a Problem, deduplicated, in jsonschema's order."""
    problems: list[Problem] = []
    for error in _validator().iter_errors(data):
        for problem in _problems(error):
            if problem not in problems:
                problems.append(problem)
    return problems


def number_wanted(data: Any) -> list[tuple[tuple, Any]]:
    """Where the schema wants a number but ``data`` holds something else: (path, the value found)."""
    out = []
    for error in _validator().iter_errors(data):
        for leaf in _leaf_errors(error):
            wanted = leaf.validator_value if isinstance(leaf.validator_value, list) else [leaf.validator_value]
            if leaf.validator == "type" and {"number", "integer"} & set(wanted):
                found = (tuple(leaf.absolute_path), leaf.instance)
                if found not in out:
                    out.append(found)
    return out


def _leaf_errors(error: ValidationError) -> Iterator[ValidationError]:
    if error.context:
        for sub in error.context:
            yield from _leaf_errors(sub)
    else:
        yield error


def yaml_float(text: str) -> str:
    """How to write the number ``text`` so that YAML 1.1 (PyYAML) reads it as one: ``1e-3`` → ``1.0e-3``."""
    match = _SCIENTIFIC.match(text.strip())
    if not match:
        return repr(float(text))
    whole, frac, sign, exp = match.groups()
    lead = text.strip()[0] if text.strip()[0] in "+-" else ""
    return f"{lead}{whole or '0'}{frac if frac and len(frac) > 1 else '.0'}e{sign or '+'}{exp}"


def format_path(parts: Iterable[Any]) -> str:
    """``['parameters', 'lr', 'values', 0]`` → ``parameters.lr.values[0]``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def suggest(word: object, choices: Iterable[str]) -> str | None:
    """A "did you mean" hint when ``word`` is close to one of ``choices``."""
    close = closest(word, choices)
    return f"did you mean {close!r}?" if close else None


def number_text_hint(value: object) -> str | None:
    """The fix for a number written as text, e.g. ``'1e-3'`` or ``"0.5"``.

    Unquoted ``1e-3`` in YAML is read as a number with a warning (config), so text that gets
    here was quoted (or came from JSON or Python).
    """
    if not isinstance(value, str):
        return None
    try:
        float(value)
    except ValueError:
        return None
    return "a quoted number is text; write it without quotes"


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _problems(error: ValidationError) -> list[Problem]:
    path = list(error.absolute_path)
    handler = _HANDLERS.get(str(error.validator))
    if handler is None:
        return [Problem(format_path(path), error.message)]
    return handler(error, path)


def _type(error: ValidationError, path: list) -> list[Problem]:
    wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
    names = " or ".join(_TYPE_NAMES.get(t, t) for t in wanted)
    if wanted == ["string", "array"]:
        names = "a string or a list of strings"
    hint = number_text_hint(error.instance) if set(wanted) & {"number", "integer"} else None
    if hint is None and wanted == ["object"]:
        hint = _mapping_hint(path, error.instance)
    return [Problem(format_path(path), f"{_short(error.instance)} is not {names}", hint)]


def _mapping_hint(path: list, value: object) -> str | None:
    """How to write a scalar that should have been a mapping, where we know."""
    if path[:1] == ["parameters"] and len(path) % 2 == 0 and not isinstance(value, (list, dict)):
        return f"for a constant write 'value: {value}'"
    if path == ["metric"] and isinstance(value, str):
        return f"write 'metric: {{name: {value}}}'"
    return None


def _enum(error: ValidationError, path: list) -> list[Problem]:
    allowed = list(error.validator_value) if error.validator == "enum" else [error.validator_value]
    reason = f"{_short(error.instance)} is not one of {', '.join(map(str, allowed))}"
    return [Problem(format_path(path), reason, suggest(error.instance, map(str, allowed)))]


def _required(error: ValidationError, path: list) -> list[Problem]:
    instance = error.instance if isinstance(error.instance, dict) else {}
    if "x-reason" in error.schema:
        return [Problem(format_path(path), f"{_short(instance)} {error.schema['x-reason']}")]
    reason = error.schema.get("x-missing") or _missing_reason(instance)
    return [Problem(format_path([*path, key]), reason)
            for key in error.validator_value if key not in instance]


def _missing_reason(instance: dict) -> str:
    dist = instance.get("distribution")
    return f"missing (required for {dist})" if isinstance(dist, str) else "missing (required)"


def _additional(error: ValidationError, path: list) -> list[Problem]:
    known = list(error.schema.get("properties", {}))
    extras = [key for key in error.instance if key not in known]
    return [_unknown_key(key, error.instance[key], known, error.schema, path) for key in extras]


def _unknown_key(key: str, value: Any, known: list[str], subschema: dict, path: list) -> Problem:
    where = format_path([*path, key])
    if "distribution" in known and key in _parameter_keys():
        shape = _def_name(subschema)
        allowed = ", ".join(k for k in known if k != "distribution")
        reason = f"not allowed for distribution {shape}" if shape else "not allowed here"
        return Problem(where, reason, f"allowed: {allowed}")
    return Problem(where, "unknown key", _misplaced_hint(value, path) or suggest(key, known))


def _misplaced_hint(value: Any, path: list) -> str | None:
    """Two mistakes seen in public W&B files: a whole config under a key, a parameter indented too deep."""
    if not isinstance(value, dict):
        return None
    if not path and {"parameters", "method"} & set(value):
        return "it holds a sweep configuration; its keys belong at the top level of the file"
    if path[:1] == ["parameters"] and {"values", "value", "distribution", "min", "max"} & set(value):
        return f"it looks like a parameter indented one level too deep, under {path[-1]}"
    return None


def _def_name(subschema: dict) -> str | None:
    """The ``$defs`` name of a parameter shape, e.g. ``categorical``."""
    return next((name for name, d in load_schema()["$defs"].items() if d is subschema), None)


@functools.lru_cache(maxsize=None)
def _parameter_keys() -> frozenset[str]:
    defs = load_schema()["$defs"]
    return frozenset(k for d in defs.values() if "distribution" in d.get("properties", {})
                     for k in d["properties"])


def _pattern(error: ValidationError, path: list) -> list[Problem]:
    if "propertyNames" in error.absolute_schema_path:
        name = error.instance
        return [Problem(format_path([*path, name]), f"{name!r} is not a valid parameter name", _NAME_RULE)]
    return [Problem(format_path(path), f"{_short(error.instance)} does not match {error.validator_value}")]


def _size(error: ValidationError, path: list) -> list[Problem]:
    limit = error.validator_value
    if limit == 1:
        return [Problem(format_path(path), "must not be empty")]
    unit = {"minItems": "items", "minProperties": "keys", "minLength": "characters"}[str(error.validator)]
    return [Problem(format_path(path), f"must have at least {limit} {unit}")]


def _bound(error: ValidationError, path: list) -> list[Problem]:
    rule = {"minimum": "at least", "exclusiveMinimum": "greater than",
            "maximum": "at most", "exclusiveMaximum": "less than"}[str(error.validator)]
    return [Problem(format_path(path), f"{_short(error.instance)} must be {rule} {error.validator_value}")]


_HANDLERS = {
    "type": _type, "enum": _enum, "const": _enum, "required": _required,
    "additionalProperties": _additional, "pattern": _pattern, "minItems": _size,
    "minProperties": _size, "minLength": _size, "minimum": _bound, "exclusiveMinimum": _bound,
    "maximum": _bound, "exclusiveMaximum": _bound,
}
