"""The command line: one Fire class whose methods are the commands; it parses, calls and prints.

Every heavy import happens inside a method so that ``mlflow sweep --help`` stays fast (SPEC §6).
"""
from __future__ import annotations

import sys

from mlflow_sweep.errors import SweepError, UsageError

_SWEEP_ID_FLAGS = ("--sweep-id", "--sweep_id")


class SweepCLI:
    """Hyperparameter sweeps for MLflow: init a sweep, run agents, check status, finalize."""

    def init(self, config_file: str) -> None:
        """Create a sweep from a YAML or JSON file and print its ID.

        The sweep is a parent MLflow run (tag sweep=True) in the file's experiment.

        Args:
            config_file: path to the sweep configuration (W&B sweep syntax).
        """
        from dataclasses import replace

        from mlflow_sweep import config, lifecycle

        cfg = config.load_config(config_file)
        for warning in cfg.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        sweep = lifecycle.init_sweep(cfg, config_file)
        # Show the run name MLflow generated when the file gives none.
        print(config.render_config(cfg if cfg.sweep_name else replace(cfg, sweep_name=sweep.name)))
        print(f"Sweep initialized with ID: {sweep.run_id}")

    def run(self, sweep_id: str | None = None, count: int | None = None, max_failures: int = 5) -> None:
        """Run an agent: claim trials of the sweep and run them until the sweep is done.

        Start as many agents as you like, on one machine or many; together they run exactly
        run_cap trials (or the whole grid).

        Args:
            sweep_id: the sweep's parent run ID; default: the most recently initialized sweep.
            count: stop this agent after it has run this many trials.
            max_failures: stop this agent after this many trials in a row have failed.
        """
        from mlflow_sweep import agent_loop

        agent_loop.run_agent(_as_id(sweep_id), count=_as_count(count, "--count"),
                        max_failures=_as_count(max_failures, "--max-failures"),
                        say=_say, stream=sys.stdout.buffer)

    def finalize(self, sweep_id: str | None = None) -> None:
        """Analyse a sweep: parameter importance table, best trial, PNG plots on the parent run.

        Args:
            sweep_id: the sweep's parent run ID; default: the most recently initialized sweep.
        """
        from mlflow_sweep import results

        print(results.finalize_sweep(_as_id(sweep_id)))

    def status(self, sweep_id: str | None = None) -> None:
        """Show a sweep's progress: trials by state, run_cap progress, best so far, live agents.

        Args:
            sweep_id: the sweep's parent run ID; default: the most recently initialized sweep.
        """
        from mlflow_sweep import progress

        print(progress.sweep_status(_as_id(sweep_id)))


def _say(message: str) -> None:
    """Agent progress goes to stderr, so stdout carries only the trials' own output."""
    print(f"[mlflow-sweep] {message}", file=sys.stderr, flush=True)


def _as_id(sweep_id: object) -> str | None:
    """Sweep IDs are strings even when Fire parsed them as numbers."""
    return None if sweep_id is None else str(sweep_id)


def _as_count(value: object, flag: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        from mlflow_sweep.errors import UsageError

        raise UsageError(f"{flag} must be a whole number of at least 1, but got {value!r}")
    return value


def _quote_sweep_ids(argv: list[str]) -> list[str]:
    """Make Fire keep ``--sweep-id`` values as typed (``00123`` or ``1e5`` stay strings)."""
    out: list[str] = []
    quote_next = False
    for arg in argv:
        if quote_next:
            out.append(repr(arg))
            quote_next = False
        elif arg in _SWEEP_ID_FLAGS:
            out.append(arg)
            quote_next = True
        elif arg.startswith(tuple(f + "=" for f in _SWEEP_ID_FLAGS)):
            flag, _, value = arg.partition("=")
            out.append(f"{flag}={value!r}")
        else:
            out.append(arg)
    return out


def _check_usage(args: list[str]) -> None:
    """Reject unknown flags, missing values and extra arguments before Fire calls anything.

    Fire calls the command first and complains about leftover arguments afterwards, so
    ``init sweep.yaml --bogus 1`` would create a sweep and then exit 2.
    """
    if not args or args[0].startswith("_") or {"--", "--help", "-h"} & set(args):
        return
    method = getattr(SweepCLI, args[0], None)
    if not callable(method):
        return  # Fire reports unknown commands without calling anything
    import inspect

    names = [n for n in inspect.signature(method).parameters if n != "self"]
    free, rest, positional, i = list(names), args[1:], 0, 0
    while i < len(rest):
        arg = rest[i]
        if arg.startswith("-") and not _is_number(arg):
            flag, has_value = arg.split("=", 1)[0], "=" in arg
            name = _flag_name(args[0], flag, names)
            if name not in free:
                raise UsageError(f"{flag} is given more than once")
            free.remove(name)
            if not has_value and (i + 1 == len(rest) or rest[i + 1].startswith("--")):
                raise UsageError(f"{flag} needs a value")
            i += 1 if has_value else 2
        else:
            positional, i = positional + 1, i + 1
    if positional > len(free):
        raise UsageError(f"too many arguments for {args[0]}; see 'mlflow sweep {args[0]} --help'")


def _flag_name(command: str, flag: str, names: list[str]) -> str:
    """The parameter a flag names: ``--sweep-id``/``--sweep_id`` → sweep_id, ``-c`` → count."""
    bare = flag.lstrip("-").replace("-", "_")
    if flag.startswith("--") and bare in names:
        return bare
    short = [n for n in names if n[0] == bare] if not flag.startswith("--") and len(bare) == 1 else []
    if len(short) == 1:
        return short[0]
    import difflib

    close = difflib.get_close_matches(bare, names, n=1)
    hint = f" (did you mean --{close[0].replace('_', '-')}?)" if close else ""
    raise UsageError(f"unknown option {flag} for {command}{hint}; see 'mlflow sweep {command} --help'")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; our errors become one stderr message and an exit code, never a traceback."""
    import fire

    raw_args = list(sys.argv[1:] if argv is None else argv)
    args = _quote_sweep_ids(raw_args)
    try:
        _check_usage(raw_args)
        fire.Fire(SweepCLI(), command=args, name="mlflow-sweep")
    except fire.core.FireExit as exc:
        return 0 if exc.code in (None, 0) else 2
    except SweepError as exc:
        print(f"{exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
