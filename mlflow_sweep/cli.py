"""The command line: one Fire class whose methods are the commands; it parses, calls and prints.

Every heavy import happens inside a method so that ``mlflow sweep --help`` stays fast (SPEC §6).
Fire dispatches, ``helptext`` renders ``--help`` from each method's docstring (its format is in
docs/design.md): a new command gets its help by its docstring alone.
"""
from __future__ import annotations

import sys

from mlflow_sweep.errors import SweepError, UsageError
from mlflow_sweep.settings import MAX_FAILURES

_SWEEP_ID_FLAGS = ("--sweep-id", "--sweep_id")


class SweepCLI:
    """Hyperparameter sweeps for MLflow: W&B sweep files, parallel agents, nested child runs.

    Create a sweep from a sweep file, start as many agents as you like (a laptop, bash &, a
    SLURM array job), watch its status, stop, pause or cancel it, and finalize it: every trial is
    a child run of the sweep's parent run in the MLflow UI.

    Example:
        mlflow sweep init sweep.yaml && (mlflow sweep run & mlflow sweep run & wait) && mlflow sweep finalize
    """

    def init(self, config_file: str) -> None:
        """Create a sweep from a sweep file and print its ID.

        The sweep is a parent MLflow run (tag sweep=True) in the file's experiment; the file
        is checked first, and a bad file creates nothing ('mlflow sweep validate' checks only).

        Args:
            config_file (FILE): the sweep configuration, YAML or JSON in W&B sweep syntax.
        Environment:
            MLFLOW_TRACKING_URI
            MLFLOW_SWEEP_LEDGER_DIR
        Example:
            mlflow sweep init sweep.yaml
        """
        from mlflow_sweep import api, config

        created = api.create_sweep(config_file)
        for warning in created.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(config.render_config(created.config))
        print(f"Sweep initialized with ID: {created.sweep_id}")

    def run(self, sweep_id: str | None = None, count: int | None = None, max_failures: int = MAX_FAILURES) -> None:
        """Run an agent: claim trials and run them until the sweep is done.

        Start as many agents as you like, on one machine or many; together they run exactly
        run_cap trials (or the whole grid).

        Args:
            sweep_id (ID): the sweep's parent run ID; default: the most recently initialized sweep.
            count (N): stop this agent after it has run N trials; default: run until the sweep is done.
            max_failures (N): stop this agent (exit 1) after N trials in a row have failed.
        Environment:
            MLFLOW_TRACKING_URI
            MLFLOW_SWEEP_LEDGER_DIR
            MLFLOW_SWEEP_HEARTBEAT_TIMEOUT
            MLFLOW_SWEEP_KILL_GRACE
            MLFLOW_SWEEP_POLL_INTERVAL
        Example:
            mlflow sweep run --sweep-id 3f2a9c0d1e5b4a7f8c6d2e1f0a9b8c7d --count 5
        """
        from mlflow_sweep import api

        api.run_trials(_as_id(sweep_id), count=_as_count(count, "--count"),
                       max_failures=_as_count(max_failures, "--max-failures"), stream=sys.stdout.buffer)

    def finalize(self, sweep_id: str | None = None) -> None:
        """Analyse a sweep: importance table, best trial, PNG plots on the parent run.

        Prints the table and the best trial, and records them with the plots on the sweep's
        parent run; finalizing again replaces them.

        Args:
            sweep_id (ID): the sweep's parent run ID; default: the most recently initialized sweep.
        Environment:
            MLFLOW_TRACKING_URI
            MLFLOW_SWEEP_HEARTBEAT_TIMEOUT
        Example:
            mlflow sweep finalize --sweep-id 3f2a9c0d1e5b4a7f8c6d2e1f0a9b8c7d
        """
        from mlflow_sweep import api

        print(api.finalize(_as_id(sweep_id)))

    def status(self, sweep_id: str | None = None) -> None:
        """Show a sweep's progress: trials by state, best so far, agents.

        Agents are live, exited, or died (gone without exiting cleanly); trials of dead
        agents are marked failed on the way, as the agents themselves would.

        Args:
            sweep_id (ID): the sweep's parent run ID; default: the most recently initialized sweep.
        Environment:
            MLFLOW_TRACKING_URI
            MLFLOW_SWEEP_HEARTBEAT_TIMEOUT
        Example:
            mlflow sweep status
        """
        from mlflow_sweep import api

        print(api.status(_as_id(sweep_id)))

    def validate(self, config_file: str) -> None:
        """Check a sweep file and create nothing.

        Prints every problem with its path, the warnings, and the normalized config (with the
        distribution inferred for each parameter). Exit 0 when the file is valid, 2 when it is
        not. Nothing is written and no tracking store is touched.

        Args:
            config_file (FILE): the sweep configuration, YAML or JSON in W&B sweep syntax.
        Example:
            mlflow sweep validate sweep.yaml
        """
        from mlflow_sweep import config

        cfg = config.load_config(config_file)
        for warning in cfg.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(config.render_config(cfg))
        warned = f" with {len(cfg.warnings)} warning{'s' * (len(cfg.warnings) != 1)}" if cfg.warnings else ""
        print(f"{config_file}: valid{warned}")

    def list(self) -> None:
        """List the sweeps in the tracking store, newest first.

        One line per sweep: its ID, name, experiment, method, state, trials done of run_cap,
        and the best value so far. A store that does not exist is not created.

        Environment:
            MLFLOW_TRACKING_URI
            MLFLOW_SWEEP_LEDGER_DIR
        Example:
            mlflow sweep list
        """
        from mlflow_sweep import progress

        print(progress.sweep_list())

    def stop(self, sweep_id: str | None = None) -> None:
        """Stop a sweep: no new trial starts; running trials finish.

        Agents exit 0 once their trial is done. 'mlflow sweep run' on a stopped sweep starts
        nothing; 'mlflow sweep resume' starts it again.

        Args:
            sweep_id (ID): the sweep's parent run ID; default: the most recently initialized sweep.
        Environment:
            MLFLOW_TRACKING_URI
        Example:
            mlflow sweep stop --sweep-id 3f2a9c0d1e5b4a7f8c6d2e1f0a9b8c7d
        """
        from mlflow_sweep import control

        print(control.stop(_as_id(sweep_id)))

    def pause(self, sweep_id: str | None = None) -> None:
        """Pause a sweep: running trials finish, agents wait for 'resume'.

        Agents do not exit while the sweep is paused; 'mlflow sweep resume' lets them claim again.

        Args:
            sweep_id (ID): the sweep's parent run ID; default: the most recently initialized sweep.
        Environment:
            MLFLOW_TRACKING_URI
        Example:
            mlflow sweep pause
        """
        from mlflow_sweep import control

        print(control.pause(_as_id(sweep_id)))

    def resume(self, sweep_id: str | None = None) -> None:
        """Resume a paused, stopped or cancelled sweep.

        Waiting agents claim trials again; for a stopped or cancelled sweep, start agents
        ('mlflow sweep run').

        Args:
            sweep_id (ID): the sweep's parent run ID; default: the most recently initialized sweep.
        Environment:
            MLFLOW_TRACKING_URI
        Example:
            mlflow sweep resume
        """
        from mlflow_sweep import control

        print(control.resume(_as_id(sweep_id)))

    def cancel(self, sweep_id: str | None = None) -> None:
        """Cancel a sweep: its running trials are stopped and end KILLED.

        Each running trial's process group gets SIGTERM, then SIGKILL after the grace period;
        agents exit. A cancelled trial is final (it is not run again).

        Args:
            sweep_id (ID): the sweep's parent run ID; default: the most recently initialized sweep.
        Environment:
            MLFLOW_TRACKING_URI
            MLFLOW_SWEEP_KILL_GRACE
        Example:
            mlflow sweep cancel --sweep-id 3f2a9c0d1e5b4a7f8c6d2e1f0a9b8c7d
        """
        from mlflow_sweep import control

        print(control.cancel(_as_id(sweep_id)))

    def retry(self, sweep_id: str | None = None) -> None:
        """Run the points of FAILED trials again, before new ones.

        They run as new trials (tag sweep.retry_of); each retried point adds one trial to what
        the sweep runs. Fix the cause first, then
        retry, then start agents ('mlflow sweep run').

        Args:
            sweep_id (ID): the sweep's parent run ID; default: the most recently initialized sweep.
        Environment:
            MLFLOW_TRACKING_URI
        Example:
            mlflow sweep retry && mlflow sweep run
        """
        from mlflow_sweep import control

        print(control.retry(_as_id(sweep_id)))

    def update(self, sweep_id: str | None = None, run_cap: int | None = None) -> None:
        """Change a sweep's run_cap (a done sweep runs again).

        Raise it for more trials, or lower it; agents see the new cap at their next claim.

        Args:
            sweep_id (ID): the sweep's parent run ID; default: the most recently initialized sweep.
            run_cap (N): the most trials the sweep runs in all; no default, it is required. Trials
                interrupted by a signal or named by 'retry' do not count.
        Environment:
            MLFLOW_TRACKING_URI
        Example:
            mlflow sweep update --run-cap 50
        """
        from mlflow_sweep import control

        if run_cap is None:
            raise UsageError("update needs --run-cap N, e.g. 'mlflow sweep update --run-cap 50'")
        print(control.update(_as_id(sweep_id), run_cap=_as_count(run_cap, "--run-cap")))



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


def _help(args: list[str]) -> bool:
    """Print our help when it is asked for (no arguments, ``help [COMMAND]``, ``-h``/``--help``)."""
    words = args[: args.index("--")] if "--" in args else args
    if words and words[0] != "help" and not {"-h", "--help"} & set(words):
        return False
    from mlflow_sweep import helptext

    named = [w for w in words if not w.startswith("-") and w != "help"][:1]
    if not named:
        print(helptext.render_group(SweepCLI))
        return True
    table = helptext.commands(SweepCLI)
    if named[0] not in table:
        _unknown_command(named[0])
    print(helptext.render_command(named[0], table[named[0]]))
    return True


def _unknown_command(word: str) -> None:
    from mlflow_sweep import helptext

    hint = helptext.did_you_mean(word, list(helptext.commands(SweepCLI)))
    raise UsageError(f"unknown command '{word}'{hint}; see 'mlflow sweep --help'")


def _check_usage(args: list[str]) -> None:
    """Reject unknown flags, missing values and extra arguments before Fire calls anything.

    Fire calls the command first and complains about leftover arguments afterwards, so
    ``init sweep.yaml --bogus 1`` would create a sweep and then exit 2.
    """
    if not args or "--" in args:
        return
    method = getattr(SweepCLI, args[0], None)
    if args[0].startswith("_") or not callable(method):
        _unknown_command(args[0])
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
    required = [n for n in free if inspect.signature(method).parameters[n].default is inspect.Parameter.empty]
    if positional < len(required):
        from mlflow_sweep import helptext

        raise UsageError(f"missing argument; {helptext.usage(args[0], method)}")


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
    raw_args = list(sys.argv[1:] if argv is None else argv)
    try:
        if _help(raw_args):  # before Fire is even imported: help stays fast (SPEC §6)
            return 0
        _check_usage(raw_args)
        return _dispatch(_quote_sweep_ids(raw_args))
    except SweepError as exc:
        print(f"{exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # 'mlflow sweep --help | head': the reader left; no traceback
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _dispatch(args: list[str]) -> int:
    """Fire calls the command."""
    import fire

    try:
        fire.Fire(SweepCLI(), command=args, name="mlflow sweep")
    except fire.core.FireExit as exc:
        return 0 if exc.code in (None, 0) else 2
    return 0
