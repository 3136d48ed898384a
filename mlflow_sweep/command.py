"""Build a trial's argv from the sweep's ``command`` and the trial's parameters (pure).

A string command runs through ``/bin/sh -c`` with every substituted value shell-quoted where
needed, so ``&&``, pipes and ``export`` work and no value can inject a command. W&B's list form runs without a shell; its macros follow W&B's agent
(``wandb/sdk/launch/sweeps/utils.py`` ``create_sweep_command_args``): ``${args}`` gives
``--name=value`` for every top-level parameter, its name as written (``--model.lr=0.01``),
``${args_no_boolean_flags}`` gives ``--name`` for True and nothing for False. A value is
``str()`` of it, as W&B writes it; a nested ``parameters:`` block is one top-level parameter
passed whole as JSON, which any program can parse (W&B would write Python's repr).
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


def format_value(value: Any) -> str:
    """A value as W&B's agent writes it on the command line: ``str()`` (``True``, ``1e-05``, ``['a']``)."""
    return str(value)


def params_json(config: Any, params: Mapping[str, Any]) -> str:
    """The trial's params as W&B's ``${args_json}``: nested blocks as objects, flat names kept flat.

    Args:
        config: the sweep config (``config.nest`` puts each name in its place in the tree).
        params: the trial's values under MLflow param names.
    """
    return json.dumps(config.nest(params))


def _text(value: Any, block: bool) -> str:
    return json.dumps(value) if block else format_value(value)


def _arg_lists(config: Any, params: Mapping[str, Any]) -> dict[str, list[str]]:
    tree = config.nest(params)
    blocks = config.groups()
    top = [(k, v, _text(v, k in blocks)) for k, v in tree.items()]
    return {
        "args": [f"--{k}={text}" for k, _, text in top],
        "args_no_hyphens": [f"{k}={text}" for k, _, text in top],
        "args_no_boolean_flags": [f"--{k}" if v is True else f"--{k}={text}" for k, v, text in top
                                  if v is not False],
        "args_no_equals": [x for k, _, text in top for x in (f"--{k}", text)],
        "args_json": [json.dumps(tree)],
    }


def _macros(config: Any, params: Mapping[str, Any], interpreter: str, json_file: str) -> dict:
    macros: dict[str, list[str]] = {
        "env": [ENV], "interpreter": [interpreter], "args_json_file": [json_file],
        **_arg_lists(config, params),
    }
    if getattr(config, "program", None):
        macros["program"] = [config.program]
    return macros


def _lookup(name: str, config: Any, params: Mapping[str, Any]) -> tuple[bool, str]:
    """``${name}``: a parameter's value, or a nested block's values as JSON."""
    if name in params:
        return True, format_value(params[name])
    path = config.groups().get(name)
    if path is None:
        return False, ""
    node: Any = config.nest(params)
    for part in path:
        node = node[part]
    return True, json.dumps(node)


def _substitute(text: str, render: Callable[[str], str | None]) -> str:
    def one(match: re.Match) -> str:
        out = render(match.group(1))
        return match.group(0) if out is None else out

    return PLACEHOLDER.sub(one, text)


def _renderer(macros: dict, config: Any, params: Mapping[str, Any], environ: Mapping[str, str],
              quote: Callable[[str], str]) -> Callable[[str], str | None]:
    def render(name: str) -> str | None:
        if name.startswith("envvar:"):
            var = name[len("envvar:"):]
            return quote(environ.get(var, var))  # W&B leaves the name when the variable is unset
        found, text = _lookup(name, config, params)
        if found:
            return quote(text)
        if name in macros:
            return " ".join(quote(x) for x in macros[name])
        if name == "program":
            raise SweepError("command uses ${program} but the sweep config sets no 'program'")
        return None  # not ours: left for the shell, e.g. ${HOME}

    return render


def _expand_list(command: tuple, macros: dict, config: Any, params: Mapping[str, Any],
                 environ: Mapping[str, str]) -> list[str]:
    render = _renderer(macros, config, params, environ, quote=lambda s: s)
    ours = {*params, *config.groups()}  # a parameter named like a macro wins, as in the string form
    argv: list[str] = []
    for chunk in command:
        chunk = str(chunk)
        whole = PLACEHOLDER.fullmatch(chunk)
        if whole and whole.group(1) in macros and whole.group(1) not in ours:
            argv.extend(macros[whole.group(1)])  # a macro as a whole element: one or many args
        else:
            argv.append(_substitute(chunk, render))
    return argv


def build_argv(config: Any, params: Mapping[str, Any], *, interpreter: str, json_file: str,
               environ: Mapping[str, str] | None = None) -> list[str]:
    """The argv that runs one trial.

    Args:
        config: the sweep config (``command``: str or tuple; ``program``: str or None).
        params: the trial's values under MLflow param names (flat names as written).
        interpreter: what ``${interpreter}`` becomes (the agent passes its Python).
        json_file: what ``${args_json_file}`` becomes; the agent writes ``params_json`` there.
        environ: variables for ``${envvar:NAME}``; defaults to ``os.environ``.
    """
    if config.command is None:
        from mlflow_sweep.config import NO_COMMAND

        raise SweepError(f"the sweep has no command: {NO_COMMAND}")
    environ = os.environ if environ is None else environ
    macros = _macros(config, params, interpreter, json_file)
    if isinstance(config.command, str):
        cmd = _substitute(config.command, _renderer(macros, config, params, environ, shlex.quote))
        return [SHELL, "-c", cmd]
    return _expand_list(tuple(config.command), macros, config, params, environ)
