"""The command line, parsed once: which text goes to which parameter of the command.

``parse`` reads ``COMMAND [ARGS]`` against the command method's signature, with Fire's
conventions: ``--name VALUE`` or ``--name=VALUE`` (``-`` and ``_`` alike), ``-x`` for the one
parameter whose name starts with x, a bool parameter as a flag without a value, a list parameter
as an option that may be given again (and takes comma-separated values), and positional
arguments filling the parameters not named, in order (a keyword-only parameter is an option only);
after ``--`` every argument is positional.
Every mistake is refused here, before anything runs, in one line (exit 2): an unknown command or
option (with a "did you mean"), a missing value, an option given twice, too many or too few
arguments. Fire reads a checked call that leaves nothing to guess (``Call.fire_argv``) and turns
each text into a value by the parameter's annotation (``parse_fns``), so a new option needs
nothing but the method's signature and docstring.

Pure text work: neither Fire nor anything heavy is imported, so a usage error costs nothing.
"""
from __future__ import annotations

import functools
import inspect
import json
import re
import typing
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from mlflow_sweep import helptext
from mlflow_sweep.errors import UsageError, closest
from mlflow_sweep.trials import check_count

_OPTION = re.compile(r"^(--.|-[A-Za-z])")
"""What Fire takes for an option; ``-5``, ``-.5`` and ``-`` are values."""


@dataclass(frozen=True)
class Call:
    """A command and the text given for each parameter (the others keep their defaults)."""

    command: str
    texts: Mapping[str, str]

    def fire_argv(self) -> list[str]:
        """The call as Fire reads it with no guessing: ``COMMAND --name=TEXT ...``."""
        return [self.command, *(f"--{name}={text}" for name, text in self.texts.items())]


def parse(cli: type, argv: list[str]) -> Call:
    """The command ``argv`` names and the text of each parameter given; UsageError for any mistake.

    Args:
        cli: the Fire class whose public methods are the commands.
        argv: the arguments after the program name, starting with the command.
    """
    commands = helptext.commands(cli)
    if not argv or argv[0] not in commands:
        raise unknown_command(argv[0] if argv else "", commands)
    name, method = argv[0], commands[argv[0]]
    params = dict(list(inspect.signature(method).parameters.items())[1:])
    texts, positional = _named_and_positional(name, params, argv[1:])
    free = [p for p in params if p not in texts and params[p].kind is not inspect.Parameter.KEYWORD_ONLY]
    if len(positional) > len(free):
        raise UsageError(f"too many arguments for {name}; see '{helptext.PROG} {name} --help'")
    texts.update(zip(free, positional))
    if any(params[p].default is inspect.Parameter.empty for p in params if p not in texts):
        raise UsageError(f"missing argument; {helptext.usage(name, method)}")
    return Call(name, texts)


def unknown_command(word: str, commands: Mapping[str, Any]) -> UsageError:
    """The error for a word that names no command, with a "did you mean"."""
    hint = helptext.did_you_mean(word, list(commands))
    return UsageError(f"unknown command '{word}'{hint}; see '{helptext.PROG} --help'")


def _named_and_positional(command: str, params: Mapping[str, inspect.Parameter],
                          args: list[str]) -> tuple[dict[str, str], list[str]]:
    """The options' texts by parameter name, and the positional arguments in order."""
    texts: dict[str, str] = {}
    positional: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--":
            return texts, positional + args[i + 1:]
        i += 1
        if not _OPTION.match(token):
            positional.append(token)
            continue
        flag, has_value, value = token.partition("=")
        name = _parameter(command, flag, params)
        repeatable = helptext.repeatable(params[name])
        if name in texts and not repeatable:
            raise UsageError(f"{flag} is given more than once")
        if not has_value and _is_flag(params[name]):
            value = "True"
        elif not has_value and i < len(args) and not _OPTION.match(args[i]):
            value, i = args[i], i + 1
        if not value:
            raise UsageError(f"{flag} needs a value")
        texts[name] = _more(texts.get(name), value) if repeatable else value
    return texts, positional


def _more(text: str | None, value: str) -> str:
    """A repeatable option's values so far (a JSON list), with ``value``'s comma-separated items added."""
    items = json.loads(text) if text else []
    return json.dumps(items + [item.strip() for item in value.split(",") if item.strip()])


def _parameter(command: str, flag: str, params: Mapping[str, inspect.Parameter]) -> str:
    """The parameter an option names: ``--sweep-id``/``--sweep_id`` -> sweep_id, ``-c`` -> count."""
    bare = flag.lstrip("-").replace("-", "_")
    if flag.startswith("--") and bare in params:
        return bare
    starting = [p for p in params if p.startswith(bare)] if not flag.startswith("--") and len(bare) == 1 else []
    if len(starting) == 1:
        return starting[0]
    see = f"see '{helptext.PROG} {command} --help'"
    if starting:
        choices = " or ".join(_spelled(p) for p in starting)
        raise UsageError(f"option {flag} for {command} could be {choices}; {see}")
    close = closest(bare, params)
    hint = f" (did you mean {_spelled(close)}?)" if close else ""
    raise UsageError(f"unknown option {flag} for {command}{hint}; {see}")


def _is_flag(param: inspect.Parameter) -> bool:
    """A bool parameter is given as a flag without a value (``--now``), as ``helptext`` shows it."""
    return isinstance(param.default, bool)


def _spelled(name: str) -> str:
    return "--" + name.replace("_", "-")


def parse_fns(method: Callable[..., Any]) -> dict[str, Callable[[str], Any]]:
    """How Fire turns each parameter's text into its value, by the parameter's annotation.

    ``str`` keeps the text as typed (a sweep ID ``00123``, ``1e5`` or ``0x1F``, a device list
    ``0,1``, a JSON point), ``int`` is a count (every whole number a command takes is one: a
    number of trials or failures), and anything else is left to Fire's own reading of values.

    Args:
        method: a command method of the Fire class.
    """
    fns: dict[str, Callable[[str], Any]] = {}
    for name, hint in typing.get_type_hints(method).items():
        if name == "return":
            continue
        kinds = {kind for kind in typing.get_args(hint) or (hint,) if kind is not type(None)}
        if kinds == {str}:
            fns[name] = str
        elif kinds == {int}:
            fns[name] = functools.partial(_count, flag=_spelled(name))
        elif len(kinds) == 1 and typing.get_origin(next(iter(kinds))) is list:
            fns[name] = json.loads  # a repeatable option: its values as parse gathered them
    return fns


def _count(text: str, flag: str) -> int:
    """A count from its text, read as Fire reads a value (so ``2.5`` is refused as the number it is)."""
    from fire.parser import DefaultParseValue

    return check_count(DefaultParseValue(text), flag)
