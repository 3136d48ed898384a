"""``--help`` for people: rendered from the command methods' docstrings, not by Fire.

Fire stays the dispatcher; the help is ours, so it reads like git's or pip's: a usage line with
the flags as the README spells them (``--sweep-id``), every option with its default, the
environment variables that matter, an example; no Fire banner and no Python type names.

A command documents itself in its docstring (the format is in docs/design.md)::

    One-line summary, shown in the list of commands.

    Paragraphs for the command's own help.

    Args:
        sweep_id (ID): the sweep's parent run ID; default: the most recently initialized sweep.
    Environment:
        MLFLOW_TRACKING_URI
    Example:
        mlflow sweep run --sweep-id 3f2a9c --count 5

``(ID)`` is the placeholder shown after the flag; a parameter without a default is a positional
argument; a bool parameter is a flag without a value; a list parameter (``list[str] | None``) is
an option that may be given more than once, shown as ``--prior-run RUN_ID ...``. A signature default other than None is
added as "default: …" unless the text already says one. An environment variable without its own
text takes it from ``ENVIRONMENT``. Pure text work: nothing heavy is imported, so help costs no
more than Python starting.
"""
from __future__ import annotations

import inspect
import re
import textwrap
from dataclasses import dataclass
from typing import Any, Callable

from mlflow_sweep import settings
from mlflow_sweep.errors import closest

PROG = "mlflow sweep"
WIDTH = 88
ENVIRONMENT = {
    "MLFLOW_TRACKING_URI": "the tracking store; default: sqlite:///mlflow.db in the current directory",
    "MLFLOW_SWEEP_LEDGER_DIR": "a directory every agent can reach, for ledgers of sweeps whose artifacts are "
                               "not on a shared filesystem (a tracking server with proxied or cloud artifacts)",
    **{name: f"{meaning}; default: {default:g}" for name, (default, meaning) in settings.SECONDS.items()},
}
_SECTIONS = ("Args", "Environment", "Example", "Examples")


@dataclass(frozen=True)
class Option:
    """One parameter of a command as the help shows it."""

    name: str
    placeholder: str
    text: str
    positional: bool
    flag: bool
    many: bool = False

    @property
    def spelled(self) -> str:
        """``--sweep-id ID``, ``--dry-run``, ``--prior-run RUN_ID ...`` or ``FILE``."""
        if self.positional:
            return self.placeholder
        dashed = "--" + self.name.replace("_", "-")
        return dashed if self.flag else f"{dashed} {self.placeholder}" + " ..." * self.many


def repeatable(param: inspect.Parameter) -> bool:
    """A list parameter is an option that may be given more than once (``--prior-run A --prior-run B``)."""
    return str(param.annotation).startswith("list[")


def commands(cli: type) -> dict[str, Callable[..., Any]]:
    """The commands of a Fire class in the order they are defined (private names excluded)."""
    return {name: member for name, member in vars(cli).items() if callable(member) and not name.startswith("_")}


def summary(method: Callable[..., Any]) -> str:
    """The first line of a command's docstring."""
    return (inspect.getdoc(method) or "").split("\n", 1)[0].strip()


def did_you_mean(word: str, choices: list[str]) -> str:
    """`` (did you mean 'status'?)`` for a near miss, else an empty string."""
    close = closest(word, choices)
    return f" (did you mean '{close}'?)" if close else ""


def render_group(cli: type) -> str:
    """Help for ``mlflow sweep`` itself: every command with its summary, the environment, examples."""
    table = commands(cli)
    width = max(len(name) for name in table) + 3
    intro, sections = _parse(inspect.getdoc(cli) or "")
    lines = [f"usage: {PROG} COMMAND [OPTIONS]", "", *intro, "", "commands:"]
    lines += [_row(name, summary(method), width) for name, method in table.items()]
    lines += _environment(sections.get("Environment", []) or [f"    {name}" for name in ENVIRONMENT])
    lines += _example(sections)
    lines += ["", *textwrap.wrap(f"'{PROG} COMMAND --help' shows a command's options. 'mlflow-sweep' and "
                                 "'python -m mlflow_sweep' are the same program.", WIDTH)]
    return "\n".join(lines)


def render_command(name: str, method: Callable[..., Any]) -> str:
    """Help for one command: usage, description, arguments and options, environment, example."""
    intro, sections = _parse(inspect.getdoc(method) or "")
    options = _options(method, sections.get("Args", []))
    lines = [*textwrap.wrap(usage(name, method), WIDTH, subsequent_indent=" " * (len(PROG) + len(name) + 8)),
             "", *intro]
    width = max([len(o.spelled) for o in options] + [len("-h, --help")]) + 3
    positional = [o for o in options if o.positional]
    if positional:
        lines += ["", "arguments:", *(_row(o.spelled, o.text, width) for o in positional)]
    lines += ["", "options:", *(_row(o.spelled, o.text, width) for o in options if not o.positional)]
    lines.append(_row("-h, --help", "show this help", width))
    lines += _environment(sections.get("Environment", []))
    lines += _example(sections)
    return "\n".join(lines)


def usage(name: str, method: Callable[..., Any]) -> str:
    """``usage: mlflow sweep run [--sweep-id ID] [--count N] …`` for one command."""
    options = _options(method, _parse(inspect.getdoc(method) or "")[1].get("Args", []))
    return " ".join([f"usage: {PROG} {name}", *(o.spelled if o.positional else f"[{o.spelled}]" for o in options)])


def _parse(doc: str) -> tuple[list[str], dict[str, list[str]]]:
    """Free text (summary and paragraphs) and the indented lines of each known section."""
    intro: list[str] = []
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in doc.splitlines():
        header = line.strip().rstrip(":")
        if line.strip().endswith(":") and header in _SECTIONS and not line.startswith(" "):
            current = sections.setdefault("Example" if header == "Examples" else header, [])
        elif current is not None and (line.startswith(" ") or not line.strip()):
            current.append(line)
        else:
            current = None
            intro.append(line)
    return _paragraphs(intro), sections


def _paragraphs(lines: list[str]) -> list[str]:
    """Docstring paragraphs re-wrapped to the help's width, blank lines kept between them."""
    out: list[str] = []
    for block in "\n".join(lines).strip().split("\n\n"):
        out += [*textwrap.wrap(" ".join(block.split()), WIDTH, break_on_hyphens=False), ""]
    return out[:-1]


def _entries(lines: list[str]) -> dict[str, str]:
    """``name (X): text`` entries of a section, continuation lines joined."""
    entries: dict[str, str] = {}
    key = None
    for line in lines:
        match = re.match(r"^ {4}(\S[^:]*?)(?::\s*(.*))?$", line)
        if match and not line.startswith(" " * 5):
            key = match.group(1)
            entries[key] = match.group(2) or ""
        elif key is not None and line.strip():
            entries[key] += " " + line.strip()
    return entries


def _options(method: Callable[..., Any], arg_lines: list[str]) -> list[Option]:
    documented = {}
    for key, text in _entries(arg_lines).items():
        name, _, placeholder = key.partition(" (")
        documented[name.strip()] = (placeholder.rstrip(")").strip(), text)
    options = []
    for param in list(inspect.signature(method).parameters.values())[1:]:
        placeholder, text = documented.get(param.name, ("", ""))
        positional = param.default is inspect.Parameter.empty
        flag = isinstance(param.default, bool)
        if not positional and param.default is not None and "default" not in text.lower():
            shown = ("on" if param.default else "off") if flag else param.default
            text = f"{text.rstrip('.')}; default: {shown}"
        options.append(Option(param.name, placeholder or param.name.upper(), text.rstrip("."), positional, flag,
                              repeatable(param)))
    return options


def _row(left: str, text: str, width: int) -> str:
    """``  left    text`` with the text wrapped under itself."""
    body = textwrap.wrap(text, WIDTH - width - 2, break_on_hyphens=False) or [""]
    first = f"  {left:<{width}}{body[0]}" if len(left) < width else f"  {left}\n  {' ' * width}{body[0]}"
    return "\n".join([first, *(f"  {' ' * width}{more}" for more in body[1:])])


def _environment(lines: list[str]) -> list[str]:
    """Each variable on its own line and its text indented below: the names are too long for a column."""
    out = []
    for name, text in _entries(lines).items():
        text = (text or ENVIRONMENT.get(name, "")).rstrip(".")
        out += [f"  {name}", *textwrap.wrap(text, WIDTH, initial_indent=" " * 6, subsequent_indent=" " * 6)]
    return ["", "environment:", *out] if out else []


def _example(sections: dict[str, list[str]]) -> list[str]:
    lines = [line.strip() for line in sections.get("Example", []) if line.strip()]
    return ["", "example:" if len(lines) == 1 else "examples:", *(f"  {line}" for line in lines)] if lines else []
