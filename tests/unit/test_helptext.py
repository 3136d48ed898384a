"""``--help`` written for people, like git's or pip's: rendered from the commands' docstrings."""
from __future__ import annotations

import re

import pytest

from mlflow_sweep import cli, helptext
from mlflow_sweep.cli import SweepCLI

COMMANDS = list(helptext.commands(SweepCLI))
FIRE_OR_PYTHON = re.compile(r"INFO: |Showing help|NAME\n|SYNOPSIS|FLAGS|Optional|\bstr\b|\bint\b|\bNone\b|--sweep_id"
                            r"|=SWEEP_ID|mlflow-sweep [a-z]+ --")


def help_of(*args: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert cli.main([*args]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_usage_options_with_defaults_environment_and_an_example(command, capsys):
    text = help_of(command, "--help", capsys=capsys)
    assert text.startswith(f"usage: mlflow sweep {command}") and not FIRE_OR_PYTHON.search(text), text
    options = text.split("\noptions:\n")[1].split("\n\n")[0]
    rows = re.split(r"\n(?=  -)", options)
    assert rows[-1].startswith("  -h, --help")
    assert all("default" in row for row in rows[:-1]), options  # every option says its default
    assert "\nenvironment:\n  MLFLOW_TRACKING_URI\n" in text or command == "validate"
    assert re.search(rf"\nexamples?:\n  mlflow sweep {command}\b", text), text


def test_group_help_lists_commands_environment_and_an_example(capsys):
    text = help_of("--help", capsys=capsys)
    assert text == help_of(capsys=capsys) == help_of("help", capsys=capsys) == help_of("-h", capsys=capsys)
    assert text.startswith("usage: mlflow sweep COMMAND [OPTIONS]\n") and not FIRE_OR_PYTHON.search(text)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_SWEEP_LEDGER_DIR", "MLFLOW_SWEEP_HEARTBEAT_TIMEOUT"):
        assert f"\n  {name}\n      " in text
    assert "\nexample:\n  mlflow sweep init " in text


def test_help_command_and_help_anywhere_give_the_commands_help(capsys):
    expected = help_of("run", "--help", capsys=capsys)
    assert help_of("help", "run", capsys=capsys) == expected == help_of("run", "--count", "3", "-h", capsys=capsys)


def test_a_command_added_later_gets_its_help_from_its_docstring_alone():
    class WithStop(SweepCLI):
        def stop(self, sweep_id: str | None = None, now: bool = False, reason: str = "user") -> None:
            """Stop a sweep: no new trial starts, running trials finish.

            Args:
                sweep_id (ID): the sweep's parent run ID; default: the most recently initialized sweep.
                now (flag): stop running trials too.
                reason (TEXT): why, recorded in the ledger.
            Environment:
                MLFLOW_TRACKING_URI
                MY_VAR: a variable the shared table does not know.
            Example:
                mlflow sweep stop --sweep-id 3f2a9c
            """

    assert list(helptext.commands(WithStop)) == ["stop"]  # the class's own commands, in order
    assert "\n  stop   Stop a sweep: no new trial starts, running trials finish.\n" in helptext.render_group(WithStop)
    text = helptext.render_command("stop", WithStop.stop)
    assert text.startswith("usage: mlflow sweep stop [--sweep-id ID] [--now] [--reason TEXT]\n")
    assert "  --now           stop running trials too; default: off\n" in text
    assert "  --reason TEXT   why, recorded in the ledger; default: user\n" in text
    assert "  MY_VAR\n      a variable the shared table does not know\n" in text
    assert text.endswith("\nexample:\n  mlflow sweep stop --sweep-id 3f2a9c")


def test_the_docstring_format_is_the_one_docs_design_describes():
    from pathlib import Path

    design = (Path(__file__).resolve().parents[2] / "docs" / "design.md").read_text()
    assert "## Command help" in design and "sweep_id (ID):" in design


def test_help_imports_nothing_heavy_not_even_fire():
    """``mlflow sweep --help`` stays fast (no slower than 1.5x ``mlflow --help``): it needs neither Fire nor MLflow."""
    import json
    import subprocess
    import sys

    code = ("import contextlib, io, json, sys\nfrom mlflow_sweep import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    cli.main(['--help']); cli.main(['run', '--help'])\n"
            "print(json.dumps([m for m in ('fire', 'mlflow', 'numpy', 'yaml', 'jsonschema') if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_every_setting_the_agent_reads_is_in_the_group_help(capsys):
    from mlflow_sweep import settings

    variables = [value for name, value in vars(settings).items()
                 if name.isupper() and isinstance(value, str) and value.startswith("MLFLOW_SWEEP_")]
    text = help_of("--help", capsys=capsys)
    assert variables and [v for v in variables if v not in text] == []


def test_the_help_shows_each_settings_default_from_the_settings_table(capsys):
    from mlflow_sweep import settings

    text = " ".join(help_of("--help", capsys=capsys).split())
    assert [name for name, (default, _) in settings.SECONDS.items() if f"{name} " not in text
            or f"default: {default:g}" not in text.split(f"{name} ", 1)[1].split(" MLFLOW_", 1)[0]] == []
    run = help_of("run", "--help", capsys=capsys)
    assert f"default: {settings.MAX_FAILURES}" in run.split("\n  --max-failures N", 1)[1].split("\n  -", 1)[0]
