"""The installed ``mlflow`` command: ``mlflow sweep …`` goes to our CLI, everything else to MLflow's.

MLflow has no CLI plugin mechanism, so this shim replaces its console script. Anything that is
not ``sweep`` is handed to MLflow's own click group unchanged.
"""
from __future__ import annotations

import sys


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "sweep":
        from mlflow_sweep.cli import main as sweep_main

        sys.exit(sweep_main(sys.argv[2:]))
    from mlflow.cli import cli

    _add_sweep_to_help(cli)
    cli(prog_name="mlflow")


def _add_sweep_to_help(cli: object) -> None:
    """List ``sweep`` in ``mlflow --help`` as a group that forwards to our CLI."""
    import click

    @click.command(
        "sweep",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
        help="Hyperparameter sweeps (mlflow-sweep); see 'mlflow sweep --help'.",
    )
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def sweep(args: tuple[str, ...]) -> None:
        from mlflow_sweep.cli import main as sweep_main

        sys.exit(sweep_main(list(args)))

    cli.add_command(sweep)  # type: ignore[attr-defined]
