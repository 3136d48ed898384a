"""The command line: one Fire class whose methods are the commands; they call the library and print.

Every heavy import happens inside a method, so ``mlflow sweep --help`` costs no more than Python
starting. ``commandline`` parses the arguments once against the command's signature (a usage
error stops everything before a command runs), Fire calls the command, and ``helptext`` renders
``--help`` from each method's docstring (its format is in docs/design.md): a new command or
option needs nothing but its signature and docstring.
"""
from __future__ import annotations

import sys

from mlflow_sweep import commandline
from mlflow_sweep.errors import SweepError, UsageError
from mlflow_sweep.helptext import PROG
from mlflow_sweep.settings import MAX_FAILURES


class SweepCLI:
    """Hyperparameter sweeps for MLflow: W&B sweep files, parallel agents, nested child runs.

    Create a sweep from a sweep file, start as many agents as you like (a laptop, bash &, a
    SLURM array job), watch its status, stop, pause or cancel it, and finalize it: every trial is
    a child run of the sweep's parent run in the MLflow UI.

    Example:
        mlflow sweep init sweep.yaml && (mlflow sweep run & mlflow sweep run & wait) && mlflow sweep finalize
    """

    def init(self, config_file: str, *, prior_run: list[str] | None = None, prior_experiment: str | None = None,
             prior_filter: str | None = None) -> None:
        """Create a sweep from a sweep file and print its ID.

        The sweep is a parent MLflow run (tag sweep=True) in the file's experiment; the file
        is checked first, and a bad file creates nothing ('mlflow sweep validate' checks only).

        A sweep can start from runs already in MLflow (warm start): with --prior-run or
        --prior-experiment, each run whose params fit the search space (and, for bayes, that
        logged the metric) is history: bayes learns from it, a grid does not run a point it
        covers, metric.target counts it. Prior runs are never changed, never moved under the
        sweep, and do not count toward run_cap; init says how many were used and why others were
        left out.

        Args:
            config_file (FILE): the sweep configuration, YAML or JSON in W&B sweep syntax.
            prior_run (RUN_ID): start from this MLflow run; give it once per run, or a comma-separated
                list; default: none.
            prior_experiment (NAME): start from the runs of this experiment (those --prior-filter matches);
                default: none.
            prior_filter (FILTER): MLflow's search syntax for --prior-experiment's runs, e.g.
                "metrics.val_loss < 1 and params.opt = 'adam'"; default: every run of the experiment.
        Environment:
            MLFLOW_TRACKING_URI
            MLFLOW_SWEEP_LEDGER_DIR
        Examples:
            mlflow sweep init sweep.yaml
            mlflow sweep init sweep.yaml --prior-run 3f2a9c0d1e5b --prior-run 8c6d2e1f0a9b
            mlflow sweep init sweep.yaml --prior-experiment tuning --prior-filter "metrics.val_loss < 1"
        """
        from mlflow_sweep import api, config

        created = api.create_sweep(config_file, prior_runs=prior_run, prior_experiment=prior_experiment,
                                   prior_filter=prior_filter)
        for warning in created.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(config.render_config(created.config))
        if created.priors is not None:
            print(created.priors.summary())
        print(f"Sweep initialized with ID: {created.sweep_id}")

    def run(self, sweep_id: str | None = None, count: int | None = None, max_failures: int = MAX_FAILURES, *,
            gpus: str | None = None, gpus_per_trial: int = 1) -> None:
        """Run an agent: claim trials and run them until the sweep is done.

        Start as many agents as you like, on one machine or many; together they run exactly
        run_cap trials (or the whole grid).

        With --gpus, one agent per device (or per group of --gpus-per-trial devices) runs in this
        one command, and each trial sees only its devices through CUDA_VISIBLE_DEVICES (the child
        run's tag sweep.devices names them). Ctrl-C stops every agent; the exit status is then
        130 (143 for SIGTERM), else the highest of the agents'.

        Args:
            sweep_id (ID): the sweep's parent run ID; default: the most recently initialized sweep.
            count (N): stop this agent after it has run N trials (with --gpus: each agent); default: run
                until the sweep is done.
            max_failures (N): stop this agent (exit 1) after N trials in a row have failed (with --gpus:
                each agent).
            gpus (LIST): one agent per device: device numbers such as 0,1,2,3 (2 is device 2, not two
                devices), or all: CUDA_VISIBLE_DEVICES if set, else SLURM's GPU variables, else every GPU
                that nvidia-smi -L lists; default: one agent, on the devices it inherits.
            gpus_per_trial (N): devices per trial with --gpus; they must split evenly; default: 1.
        Environment:
            MLFLOW_TRACKING_URI
            MLFLOW_SWEEP_LEDGER_DIR
            MLFLOW_SWEEP_HEARTBEAT_TIMEOUT
            MLFLOW_SWEEP_KILL_GRACE
            MLFLOW_SWEEP_POLL_INTERVAL
            MLFLOW_SWEEP_LOCK_TIMEOUT
            CUDA_VISIBLE_DEVICES: the devices --gpus all uses when set (SLURM sets it for a job with GPUs).
        Examples:
            mlflow sweep run --sweep-id 3f2a9c0d1e5b4a7f8c6d2e1f0a9b8c7d --count 5
            mlflow sweep run --gpus all --gpus-per-trial 2
        """
        from mlflow_sweep import api

        if gpus is None and gpus_per_trial == 1:
            api.run_trials(sweep_id, count=count, max_failures=max_failures, stream=sys.stdout.buffer)
            return
        from mlflow_sweep.device_agents import AgentsFailed

        result = api.run_on_devices(sweep_id, gpus, gpus_per_trial=gpus_per_trial, count=count,
                                    max_failures=max_failures, out=sys.stdout.buffer, err=sys.stderr.buffer)
        if result.exit_code != 0:
            raise AgentsFailed(result)

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

        print(api.finalize(sweep_id))

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

        print(api.status(sweep_id))

    def validate(self, config_file: str, sweep_id: str | None = None) -> None:
        """Check a sweep file and create nothing.

        Prints every problem with its path, the warnings, and the normalized config (with the
        distribution inferred for each parameter). Exit 0 when the file is valid, 2 when it is
        not. Nothing is written and no tracking store is touched.

        With --sweep-id, the file is also checked as a new version of that sweep's config: what
        'mlflow sweep update --config FILE' would change, or why it cannot apply. The sweep is
        read, nothing is written.

        Args:
            config_file (FILE): the sweep configuration, YAML or JSON in W&B sweep syntax.
            sweep_id (ID): check the file as an update of this sweep; default: check the file alone.
        Examples:
            mlflow sweep validate sweep.yaml
            mlflow sweep validate new.yaml --sweep-id 3f2a9c0d1e5b4a7f8c6d2e1f0a9b8c7d
        """
        from mlflow_sweep import config

        cfg = config.load_config(config_file)
        for warning in cfg.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(config.render_config(cfg))
        warned = f" with {len(cfg.warnings)} warning{'s' * (len(cfg.warnings) != 1)}" if cfg.warnings else ""
        if sweep_id is not None:
            from mlflow_sweep import control

            print(control.check_update(sweep_id, cfg, config_file))
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

        print(control.stop(sweep_id))

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

        print(control.pause(sweep_id))

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

        print(control.resume(sweep_id))

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

        print(control.cancel(sweep_id))

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

        print(control.retry(sweep_id))

    def update(self, sweep_id: str | None = None, run_cap: int | None = None, config: str | None = None) -> None:
        """Change a live sweep: its run_cap, or its config (a new version).

        --run-cap raises the cap for more trials, or lowers it; a done sweep with room runs again.

        --config gives the sweep a new version of its config, checked as at init: every trial
        claimed after it uses the new version; running trials finish as they are. Trials so far
        stay history where they fit the new space (a parameter added with default: or a single
        value: gives them that value): bayes learns from them, a grid skips the points they
        cover, so adding values to a done grid runs exactly the new points. The metric's name,
        goal and summary, the seed, the experiment and early_terminate cannot change; such a
        file is refused with the reasons, and nothing changes. Each version is kept on the parent
        run (config_versions/v2/, ...); 'mlflow sweep status' shows the version in effect.

        Args:
            sweep_id (ID): the sweep's parent run ID; default: the most recently initialized sweep.
            run_cap (N): the most trials the sweep runs in all; default: as it is (one of --run-cap and
                --config is required). Trials interrupted by a signal or named by 'retry' do not count.
            config (FILE): the new sweep configuration, YAML or JSON; default: as it is.
        Environment:
            MLFLOW_TRACKING_URI
        Examples:
            mlflow sweep update --run-cap 50
            mlflow sweep update --config sweep_v2.yaml
        """
        from mlflow_sweep import control

        if run_cap is None and config is None:
            raise UsageError("update needs --run-cap N or --config FILE, e.g. 'mlflow sweep update --run-cap 50'")
        print(control.update(sweep_id, run_cap=run_cap, config=config))

    def enqueue(self, points: str, sweep_id: str | None = None) -> None:
        """Run chosen points before any new one, in order, each exactly once.

        POINTS is a point as JSON ('{"lr": 0.01, "opt": "adam"}'), a list of points, or the path of
        a YAML or JSON file holding a list of points. Parameters a point leaves out are sampled.
        A point outside the search space, or a name that is no parameter, is refused with its path,
        and nothing is enqueued. Enqueued trials count toward run_cap; a grid does not run a
        point an enqueued trial covers again. Points requeued by an interrupted agent or by
        'retry' run first, then enqueued points, then new ones.

        Args:
            points (POINTS): a point, or a list of points, as JSON or YAML text; or a file's path.
            sweep_id (ID): the sweep's parent run ID; default: the most recently initialized sweep.
        Environment:
            MLFLOW_TRACKING_URI
        Examples:
            mlflow sweep enqueue '{"lr": 0.01, "opt": "adam"}'
            mlflow sweep enqueue points.yaml --sweep-id 3f2a9c0d1e5b4a7f8c6d2e1f0a9b8c7d
        """
        from mlflow_sweep import control

        print(control.enqueue(sweep_id, points))


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
        raise commandline.unknown_command(named[0], table)
    print(helptext.render_command(named[0], table[named[0]]))
    return True


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; our errors become one stderr message and an exit code, never a traceback."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if _help(args):  # before Fire is even imported: help stays fast
            return 0
        return _dispatch(commandline.parse(SweepCLI, args))
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


def _dispatch(call: commandline.Call) -> int:
    """Fire calls the checked command, turning each text into a value by its parameter's annotation."""
    import fire

    method = getattr(SweepCLI, call.command)
    fire.decorators.SetParseFns(**commandline.parse_fns(method))(method)
    try:
        fire.Fire(SweepCLI(), command=call.fire_argv(), name=PROG)
    except fire.core.FireExit as exc:
        return 0 if exc.code in (None, 0) else 2
    return 0
