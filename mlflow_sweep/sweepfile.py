"""Read a sweep file's text into plain data, keeping what PyYAML alone would lose.

Two things real W&B files rely on that PyYAML (YAML 1.1) reads differently from W&B's server
(YAML 1.2, which reads the file again after ``wandb sweep`` has dumped it):

- ``1e-4`` is a number in YAML 1.2 but text in YAML 1.1. Such plain scalars come back as
  ``NumberText``, a ``str`` that config turns into a number where the schema wants one.
- A duplicate key keeps its last value, as PyYAML and W&B do; each one is reported as a
  warning naming its line instead of being silently dropped.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow_sweep.errors import ConfigError, Problem

# YAML 1.2 core schema floats; PyYAML resolved the scalar as text, so only the forms YAML 1.1
# lacks get here: an exponent without a dot or without a sign (1e-4, 1.0e3, .5E3).
_YAML12_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+$")


class NumberText(str):
    """A plain (unquoted) YAML scalar that YAML 1.2 reads as a number and PyYAML as text."""

    __slots__ = ()


@dataclass(frozen=True)
class Parsed:
    """A parsed sweep file and the warnings its reading produced."""

    data: Any
    warnings: tuple[str, ...] = ()


def read(path: str | Path) -> Parsed:
    """Read a YAML or JSON sweep file; ConfigError with a line and column for a syntax error.

    Args:
        path: the sweep file; ``.json`` is read as JSON, anything else as YAML.
    """
    source = str(path)
    text = _read_text(Path(path), source)
    if source.lower().endswith(".json"):
        return Parsed(_parse_json(text, source))
    return _parse_yaml(text, source)


def plain(data: Any) -> Any:
    """``data`` with every NumberText turned back into a plain ``str``."""
    if isinstance(data, dict):
        return {plain(k): plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [plain(v) for v in data]
    return str(data) if isinstance(data, NumberText) else data


def read_points(given: str) -> tuple[Any, str]:
    """Points to enqueue as a command line gives them: JSON or YAML text, or the path of a YAML or JSON file.

    Text starting with ``{`` or ``[`` is a point or a list of points (``{"lr": 0.01}``, ``[{lr: 0.01},
    {lr: 0.1}]``); anything else names a file. Numbers written ``1e-4`` are numbers, as YAML 1.2
    reads them. Returns the data and how to name its source in messages.

    Args:
        given: the text or the file's path.
    """
    text = given.strip()
    if text.startswith(("{", "[")):
        source = "the points given"
        return numbers(_parse_yaml(text, source).data), source  # YAML reads JSON too
    return numbers(read(given).data), given


def numbers(data: Any) -> Any:
    """``data`` with every NumberText read as the number YAML 1.2 (and W&B) reads."""
    if isinstance(data, dict):
        return {numbers(k): numbers(v) for k, v in data.items()}
    if isinstance(data, list):
        return [numbers(v) for v in data]
    return float(data) if isinstance(data, NumberText) else data


def _read_text(path: Path, source: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, [Problem("", "no such file")]) from None
    except IsADirectoryError:
        raise ConfigError(source, [Problem("", "is a directory, not a sweep file")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [Problem("", f"not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None
    except OSError as exc:
        raise ConfigError(source, [Problem("", f"cannot be read: {exc.strerror}")]) from None


def _parse_json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}:{exc.lineno}:{exc.colno}", [Problem("", f"not valid JSON: {exc.msg}")]) from None


def _parse_yaml(text: str, source: str) -> Parsed:
    import yaml

    loader = _loader()(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        reason = exc.problem or exc.context or "syntax error"
        raise ConfigError(where, [Problem("", f"not valid YAML: {reason}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, [Problem("", f"not valid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    notes = tuple(f"{source}:{mark.line + 1}:{mark.column + 1}: duplicate key {key!r}; "
                  "the last one is used (as PyYAML and W&B do)" for key, mark in loader.duplicates)
    return Parsed(data, notes)


@functools.lru_cache(maxsize=None)
def _loader() -> type:
    """A safe YAML loader that notes duplicate keys and marks YAML 1.2 number text."""
    import yaml

    # The pure-Python loader: its messages are the same on every platform (libyaml's differ),
    # and sweep files are small.
    class Loader(yaml.SafeLoader):
        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self.duplicates: list[tuple[Any, Any]] = []

        def construct_mapping(self, node: Any, deep: bool = False) -> dict:
            seen: set = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, (str, int, float, bool)):
                    continue  # unhashable keys are reported later as non-text keys
                if key in seen:
                    self.duplicates.append((key, key_node.start_mark))
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

        def construct_yaml_str(self, node: Any) -> str:
            text = super().construct_yaml_str(node)
            if node.style is None and _YAML12_FLOAT.match(text):
                return NumberText(text)
            return text

    Loader.add_constructor("tag:yaml.org,2002:str", Loader.construct_yaml_str)
    return Loader
