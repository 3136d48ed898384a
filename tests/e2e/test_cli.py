"""The command line: help at every level, the three entry points, flags and bad usage.

Help is ours (``helptext``), printed to stdout; Fire only dispatches. Each entry point
(``python -m mlflow_sweep``, ``mlflow-sweep``, the ``mlflow`` launcher) is started once as a real
process; everything else runs ``cli.main`` in this process.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_sweep import cli

pytestmark = [pytest.mark.e2e]

BIN = Path(sys.executable).parent
COMMANDS = ["init", "run", "finalize", "status", "validate", "list", "stop", "pause", "resume", "cancel",
            "retry", "update", "enqueue"]
GOOD = Path(__file__).resolve().parent.parent / "configs" / "good" / "grid.yaml"


def _run(argv: list[str], store) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=store.root, env=store.env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [["--help"], *([c, "--help"] for c in COMMANDS), ["run", "-h"]],
                         ids=lambda a: " ".join(a))
def test_help_in_process_at_every_level(args: list[str], capsys: pytest.CaptureFixture[str]):
    code = cli.main(args)
    out, err = capsys.readouterr()
    name = "" if args[0].startswith("-") else f" {args[0]}"
    assert (code, out.startswith(f"usage: mlflow sweep{name}"), err) == (0, True, "")


def test_help_lists_every_command_and_the_sweep_id_flag(capsys: pytest.CaptureFixture[str]):
    cli.main(["--help"])
    top = capsys.readouterr().out
    cli.main(["run", "--help"])
    run = capsys.readouterr().out
    listed = [line.split()[0] for line in top.split("commands:\n")[1].split("\n\n")[0].splitlines()]
    assert listed == COMMANDS
    assert run.startswith("usage: mlflow sweep run [--sweep-id ID] [--count N] [--max-failures N] [--gpus LIST]\n"
                          "                       [--gpus-per-trial N]\n")


def test_help_through_python_dash_m(store):
    proc = _run([sys.executable, "-m", "mlflow_sweep", "init", "--help"], store)
    usage = "usage: mlflow sweep init FILE [--prior-run RUN_ID ...]"
    assert (proc.returncode, proc.stdout.startswith(usage)) == (0, True)


def test_console_script_mlflow_sweep(store):
    proc = _run([str(BIN / "mlflow-sweep"), "--help"], store)
    assert (proc.returncode, proc.stdout.startswith("usage: mlflow sweep COMMAND")) == (0, True)


@pytest.mark.parametrize("args", [["sweep", "--help"], ["sweep", "run", "--help"]], ids=" ".join)
def test_mlflow_sweep_help_through_the_installed_launcher(args: list[str], store):
    proc = _run([str(BIN / "mlflow"), *args], store)
    assert (proc.returncode, proc.stdout.startswith("usage: mlflow sweep")) == (0, True), proc.stderr


def test_mlflow_help_lists_sweep_next_to_mlflow_commands(store):
    proc = _run([str(BIN / "mlflow"), "--help"], store)
    commands = [line.split()[0] for line in proc.stdout.split("Commands:")[1].splitlines() if line.startswith("  ")
                and not line.startswith("   ")]
    assert proc.returncode == 0
    assert {"sweep", "experiments", "runs", "server"} <= set(commands)


def _click_main(main, args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """(exit code, stdout) of a click entry point called in process as ``mlflow ARGS``."""
    monkeypatch.setattr(sys, "argv", ["mlflow", *args])
    with pytest.raises(SystemExit) as info:
        main()
    return info.value.code or 0, capsys.readouterr().out


@pytest.mark.parametrize("args", [["--version"], ["experiments", "--help"], ["server", "--help"]], ids=" ".join)
def test_other_mlflow_commands_are_unchanged(args: list[str], capsys, monkeypatch):
    """The launcher hands anything but ``sweep`` to MLflow's click group; what it prints is MLflow's own.

    In process: the installed ``mlflow`` script itself is run by the help test above.
    """
    from mlflow import cli as mlflow_cli

    from mlflow_sweep import launcher

    monkeypatch.setattr(mlflow_cli.cli, "commands", dict(mlflow_cli.cli.commands))  # the launcher adds 'sweep'
    theirs = _click_main(lambda: mlflow_cli.cli(prog_name="mlflow"), args, capsys, monkeypatch)
    ours = _click_main(launcher.main, args, capsys, monkeypatch)
    assert ours == theirs and ours[0] == 0 and ours[1]


@pytest.mark.parametrize("args", [
    ["--sweep-id", "00123"], ["--sweep_id", "00123"], ["--sweep-id=1e5"], ["--sweep_id=123"],
    ["--sweep-id", "0x1F"], ["--sweep-id", "True"], ["-s", "00123"],
], ids=" ".join)
def test_sweep_id_flags_keep_the_text_as_typed(args: list[str], monkeypatch: pytest.MonkeyPatch):
    from mlflow_sweep import agent_loop

    seen = {}
    monkeypatch.setattr(agent_loop, "run_agent", lambda sweep_id, **kw: seen.update(sweep_id=sweep_id, **kw))
    assert cli.main(["run", *args, "--count", "2"]) == 0
    typed = args[-1].split("=")[-1]
    assert {k: seen.get(k) for k in ("sweep_id", "count", "max_failures")} == {
        "sweep_id": typed, "count": 2, "max_failures": 5}


@pytest.mark.parametrize(("args", "message"), [
    (["init"], "missing argument; usage: mlflow sweep init FILE"),
    (["bogus"], "unknown command 'bogus'; see 'mlflow sweep --help'"),
    (["stauts"], "unknown command 'stauts' (did you mean 'status'?); see 'mlflow sweep --help'"),
    (["finalise", "--help"], "unknown command 'finalise' (did you mean 'finalize'?); see 'mlflow sweep --help'"),
    (["run", "--cuont", "3"], "unknown option --cuont for run (did you mean --count?); see 'mlflow sweep run --help'"),
    (["run", "--sweep-id"], "--sweep-id needs a value"),
    (["run", "--sweep-id", "--count", "3"], "--sweep-id needs a value"),
    (["status", "--sweep_id", "a", "--sweep-id", "b"], "--sweep-id is given more than once"),
    (["run", "a", "3", "4", "5"], "too many arguments for run; see 'mlflow sweep run --help'"),
    (["run", "--count", "0"], "--count must be a whole number of at least 1, but got 0"),
    (["run", "--max-failures", "many"], "--max-failures must be a whole number of at least 1, but got 'many'"),
], ids=lambda x: " ".join(x) if isinstance(x, list) else "")
def test_bad_usage_exits_2_without_traceback(args: list[str], message: str, capsys: pytest.CaptureFixture[str]):
    code = cli.main(args)
    out, err = capsys.readouterr()
    assert (code, message in err, "Traceback" in out + err) == (2, True, False), err


def test_extra_arguments_are_rejected_before_anything_is_created(store):
    """Fire would run ``init`` first and complain about ``--bogus`` afterwards."""
    proc = store.main("init", str(GOOD), "--bogus", "1")
    client = store.client()
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert (proc.returncode, proc.stdout, list(runs)) == (2, "", [])
    assert proc.stderr == "unknown option --bogus for init; see 'mlflow sweep init --help'\n"


@pytest.mark.parametrize("launcher", ["python -m", "mlflow sweep"])
def test_bad_usage_through_real_entry_points(launcher: str, store):
    head = [sys.executable, "-m", "mlflow_sweep"] if launcher == "python -m" else [str(BIN / "mlflow"), "sweep"]
    proc = _run([*head, "run", "--cuont", "3"], store)
    assert (proc.returncode, "Traceback" in proc.stderr, "unknown option --cuont" in proc.stderr) == (2, False, True)
