"""Build a trial's argv from the sweep's ``command`` and the trial's parameters (pure).

A string command runs through ``/bin/sh -c`` with every substituted value shell-quoted where
needed (SPEC §4a). W&B's list form runs without a shell; its macros follow W&B's agent
(``wandb/sdk/launch/sweeps/utils.py`` ``create_sweep_command_args``): ``${args}`` gives
``--name=value``, ``${args_no_boolean_flags}`` gives ``--name`` for True and nothing for False.
"""
from __future__ import annotations

import json
import os
import re
import shlex
from typing import Any, Callable, Mapping

from mlflow_sweep.errors import SweepError

SHELL = "/bin/sh"
ENV = "/usr/bin/env"
PLACEHOLDER = re.compile(r"\$\{(envvar:[A-Za-z0-9_]*|[A-Za-z_][A-Za-z0-9_.\-]*)\}")
"""``${name}``, ``${outer.inner}``, a macro such as ``${args}``, or ``${envvar:NAME}``."""


def nest(params: Mapping[str, Any]) -> dict[str, Any]:
    """Turn flat dotted names into nested dicts: ``{"a.b": 1, "c": 2}`` -> ``{"a": {"b": 1}, "c": 2}``.

    Args:
        params: a trial's parameters under flat dotted names, in config order.
    """
    out: dict[str, Any] = {}
    for name, value in params.items():
        *outer, leaf = name.split(".")
        node = out
        for part in outer:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def format_value(value: Any) -> str:
    """A value as text for the command line: str/int/float/bool as W&B's agent, the rest as JSON."""
    if isinstance(value, (str, bool, int, float)):
        return str(value)  # floats print as repr: no precision lost; bools as True/False (W&B)
    return json.dumps(value)


def _arg_lists(params: Mapping[str, Any]) -> dict[str, list[str]]:
    top = nest(params)  # a nested parameter goes whole, as JSON (SPEC §4a)
    args = [f"--{k}={format_value(v)}" for k, v in top.items()]
    no_bool = [f"--{k}" if v is True else f"--{k}={format_value(v)}" for k, v in top.items()
               if v is not False]
    return {
        "args": args,
        "args_no_hyphens": [f"{k}={format_value(v)}" for k, v in top.items()],
        "args_no_boolean_flags": no_bool,
        "args_no_equals": [x for k, v in top.items() for x in (f"--{k}", format_value(v))],
        "args_json": [json.dumps(top)],
    }


def _macros(config: Any, params: Mapping[str, Any], interpreter: str, json_file: str) -> dict:
    macros: dict[str, list[str]] = {
        "env": [ENV], "interpreter": [interpreter], "args_json_file": [json_file],
        **_arg_lists(params),
    }
    if getattr(config, "program", None):
        macros["program"] = [config.program]
    return macros


def _lookup(name: str, params: Mapping[str, Any]) -> tuple[bool, Any]:
    if name in params:
        return True, params[name]
    group = {k[len(name) + 1:]: v for k, v in params.items() if k.startswith(name + ".")}
    return (True, nest(group)) if group else (False, None)


def _substitute(text: str, render: Callable[[str], str | None]) -> str:
    def one(match: re.Match) -> str:
        out = render(match.group(1))
        return match.group(0) if out is None else out

    return PLACEHOLDER.sub(one, text)


def _renderer(macros: dict, params: Mapping[str, Any], environ: Mapping[str, str],
              quote: Callable[[str], str]) -> Callable[[str], str | None]:
    def render(name: str) -> str | None:
        if name.startswith("envvar:"):
            var = name[len("envvar:"):]
            return quote(environ.get(var, var))  # W&B leaves the name when the variable is unset
        found, value = _lookup(name, params)
        if found:
            return quote(format_value(value))
        if name in macros:
            return " ".join(quote(x) for x in macros[name])
        if name == "program":
            raise SweepError("command uses ${program} but the sweep config sets no 'program'")
        return None  # not ours: left for the shell, e.g. ${HOME}

    return render


def _expand_list(command: tuple, macros: dict, params: Mapping[str, Any],
                 environ: Mapping[str, str]) -> list[str]:
    render = _renderer(macros, params, environ, quote=lambda s: s)
    argv: list[str] = []
    for chunk in command:
        chunk = str(chunk)
        whole = PLACEHOLDER.fullmatch(chunk)
        if whole and whole.group(1) in macros and whole.group(1) not in params:
            argv.extend(macros[whole.group(1)])  # a macro as a whole element: one or many args
        else:
            argv.append(_substitute(chunk, render))
    return argv


def build_argv(config: Any, params: Mapping[str, Any], *, interpreter: str, json_file: str,
               environ: Mapping[str, str] | None = None) -> list[str]:
    """The argv that runs one trial.

    Args:
        config: the sweep config (``command``: str or tuple; ``program``: str or None).
        params: the trial's parameters under flat dotted names.
        interpreter: what ``${interpreter}`` becomes (the agent passes its Python).
        json_file: what ``${args_json_file}`` becomes; the agent writes ``nest(params)`` there.
        environ: variables for ``${envvar:NAME}``; defaults to ``os.environ``.
    """
    environ = os.environ if environ is None else environ
    macros = _macros(config, params, interpreter, json_file)
    if isinstance(config.command, str):
        cmd = _substitute(config.command, _renderer(macros, params, environ, shlex.quote))
        return [SHELL, "-c", cmd]
    return _expand_list(tuple(config.command), macros, params, environ)
