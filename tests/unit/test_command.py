"""Command building: ${name} substitution with shell quoting, and W&B's list-form macros."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_sweep.command import build_argv, params_json
from mlflow_sweep.errors import SweepError
from tests.unit.helpers import make_config

PARAMS = {"lr": {"values": [0.01]}, "flag": {"values": [True, False]}, "name": {"value": "x"},
          "sw": {"values": ["--flag", "--no-flag"]},
          "model": {"parameters": {"depth": {"min": 1, "max": 4}, "act": {"value": "relu"}}}}
VALUES = {"lr": 0.01, "flag": True, "name": "a b", "model.depth": 2, "model.act": "relu"}
DEFAULT = ["${env}", "${interpreter}", "${program}", "${args}"]
EVIL = ["x; touch PWNED", "$(touch PWNED)", "`touch PWNED`", "a' ; touch PWNED; '", "> PWNED", "it's"]


def argv(command, params=VALUES, program: str | None = "train.py", **kw) -> list[str]:
    config = make_config(PARAMS, command=command, program=program)
    return build_argv(config, params, interpreter="python3", json_file="/tmp/p.json", **kw)


def run(args: list[str], cwd: Path) -> str:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=True, timeout=30).stdout


def test_string_command_runs_through_sh_and_stays_readable() -> None:
    assert argv("python train.py --lr ${lr} --depth=${model.depth} --act ${model.act}") == [
        "/bin/sh", "-c", "python train.py --lr 0.01 --depth=2 --act relu"]


@pytest.mark.parametrize("value, text", [
    (0.1 + 0.2, "0.30000000000000004"), (1e-05, "1e-05"), (3, "3"), (True, "True"),
    (False, "False"), ("", "''"), ("a b", "'a b'"), ("--no-flag", "--no-flag"),
    ([1, 2], "'[1, 2]'"), (None, "None"), (["a"], '\'[\'"\'"\'a\'"\'"\']\''),
])
def test_values_are_formatted_without_loss_and_quoted_only_when_needed(value, text: str) -> None:
    assert argv("run ${lr}", {**VALUES, "lr": value})[2] == f"run {text}"


@pytest.mark.parametrize("value", EVIL)
def test_hostile_values_are_data_not_shell(value: str, tmp_path: Path) -> None:
    out = run(argv("printf '%s\\n' ${name}", {**VALUES, "name": value}), tmp_path)
    assert (out, sorted(p.name for p in tmp_path.iterdir())) == (value + "\n", [])


@pytest.mark.parametrize("value", EVIL)
def test_hostile_values_in_list_form_never_meet_a_shell(value: str, tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "import sys; print(sys.argv[1:])", "${name}", "${args}"]
    out = run(argv(cmd, {"name": value}), tmp_path)
    assert (out, list(tmp_path.iterdir())) == (repr([value, f"--name={value}"]) + "\n", [])


def test_flag_idioms_and_export_work_for_real(tmp_path: Path) -> None:
    script = "export NAME=${name} && printf '%s|%s|%s\\n' \"$NAME\" ${sw} $HOME"
    for sw in ("--flag", "--no-flag"):
        out = run(argv(script, {**VALUES, "sw": sw}), tmp_path)
        assert out == f"a b|{sw}|{Path.home()}\n"


def test_unknown_placeholders_are_left_to_the_shell() -> None:
    # config rejects them (it suggests $HOME); build_argv still never eats what it does not own
    config = dataclasses.replace(make_config(PARAMS), command="echo ${HOME} ${lr}")
    assert build_argv(config, VALUES, interpreter="py", json_file="f")[2] == "echo ${HOME} 0.01"


def test_a_nested_group_is_passed_whole_as_json() -> None:
    assert argv("echo ${model}")[2] == """echo '{"depth": 2, "act": "relu"}'"""


def test_wandb_default_command() -> None:
    assert argv(DEFAULT) == ["/usr/bin/env", "python3", "train.py", "--lr=0.01", "--flag=True",
                             "--name=a b", '--model={"depth": 2, "act": "relu"}']


@pytest.mark.parametrize("macro, expected", [
    ("${args_no_hyphens}", ["lr=0.01", "flag=False", "name=a b", 'model={"depth": 2, "act": "relu"}']),
    ("${args_no_boolean_flags}", ["--lr=0.01", "--name=a b", '--model={"depth": 2, "act": "relu"}']),
    ("${args_no_equals}", ["--lr", "0.01", "--flag", "False", "--name", "a b",
                           "--model", '{"depth": 2, "act": "relu"}']),
    ("${args_json}", ['{"lr": 0.01, "flag": false, "name": "a b", "model": {"depth": 2, "act": "relu"}}']),
    ("${args_json_file}", ["/tmp/p.json"]),
    ("${program}", ["train.py"]),
    ("${env}", ["/usr/bin/env"]),
    ("${interpreter}", ["python3"]),
])
def test_wandb_macros(macro: str, expected: list[str]) -> None:
    assert argv(["cmd", macro], {**VALUES, "flag": False}) == ["cmd", *expected]


def test_boolean_flags_true_become_bare_flags() -> None:
    assert argv(["${args_no_boolean_flags}"], {"a": True, "b": False, "c": 0}) == ["--a", "--c=0"]


def test_args_json_round_trips_the_nested_params() -> None:
    (text,) = argv(["${args_json}"])
    assert json.loads(text) == {"lr": 0.01, "flag": True, "name": "a b", "model": {"depth": 2, "act": "relu"}}


def test_list_form_substitutes_params_and_envvars_inside_elements() -> None:
    got = argv(["--lr=${lr}", "${envvar:SWEEP_T}/x", "${envvar:UNSET_T}"], environ={"SWEEP_T": "/d"})
    assert got == ["--lr=0.01", "/d/x", "UNSET_T"]  # W&B leaves an unset variable's name


def test_string_form_expands_macros_quoted() -> None:
    got = argv("cd ${envvar:W} && ${interpreter} ${program} ${args}", environ={"W": "my dir"})
    assert got[2] == ("cd 'my dir' && python3 train.py --lr=0.01 --flag=True '--name=a b' "
                      """'--model={"depth": 2, "act": "relu"}'""")


def test_program_macro_without_program_is_an_error() -> None:
    with pytest.raises(SweepError, match=r"\$\{program\}"):
        argv(DEFAULT, program=None)


# --- a parameter's name is its name ----------------------------------------------------------

DOTTED = {"model.lr": {"values": [0.01]}, "data.variant": {"value": 0}, "mixmethod": {"value": "cutmix"},
          "mixmethod.conf_prob": {"value": 0.5}, "opt": {"parameters": {"init_args.lr": {"value": 1e-05}}}}
DOTTED_VALUES = {"model.lr": 0.01, "data.variant": 0, "mixmethod": "cutmix", "mixmethod.conf_prob": 0.5,
                 "opt.init_args.lr": 1e-05}


def dotted(command) -> list[str]:
    config = make_config(DOTTED, command=command, program="train.py")
    return build_argv(config, DOTTED_VALUES, interpreter="python3", json_file="/tmp/p.json")


@pytest.mark.parametrize("macro, expected", [
    ("${args}", ["--model.lr=0.01", "--data.variant=0", "--mixmethod=cutmix", "--mixmethod.conf_prob=0.5",
                 '--opt={"init_args.lr": 1e-05}']),
    ("${args_no_hyphens}", ["model.lr=0.01", "data.variant=0", "mixmethod=cutmix", "mixmethod.conf_prob=0.5",
                            'opt={"init_args.lr": 1e-05}']),
    ("${args_no_equals}", ["--model.lr", "0.01", "--data.variant", "0", "--mixmethod", "cutmix",
                           "--mixmethod.conf_prob", "0.5", "--opt", '{"init_args.lr": 1e-05}']),
    ("${args_json}", ['{"model.lr": 0.01, "data.variant": 0, "mixmethod": "cutmix", "mixmethod.conf_prob": 0.5, '
                      '"opt": {"init_args.lr": 1e-05}}']),
])
def test_flat_dotted_names_are_passed_as_written(macro: str, expected: list[str]) -> None:
    """W&B passes --model.lr=0.01 (LightningCLI, Hydra), never --model={...}: a dotted name is not a block."""
    assert dotted(["fit", macro]) == ["fit", *expected]


def test_placeholders_for_flat_dotted_names_and_blocks() -> None:
    assert dotted("run ${model.lr} ${mixmethod} ${opt} ${opt.init_args.lr}")[2] == (
        """run 0.01 cutmix '{"init_args.lr": 1e-05}' 1e-05""")


def test_the_params_file_holds_the_tree_with_flat_names_flat() -> None:
    config = make_config(DOTTED, command=["x"])
    assert json.loads(params_json(config, DOTTED_VALUES)) == {
        "model.lr": 0.01, "data.variant": 0, "mixmethod": "cutmix", "mixmethod.conf_prob": 0.5,
        "opt": {"init_args.lr": 1e-05}}


def test_values_are_str_as_wandb_writes_them_and_blocks_are_json() -> None:
    config = make_config({"l": {"value": ["a", 1]}, "d": {"value": {"k": True}}, "n": {"value": None},
                          "b": {"parameters": {"k": {"value": True}}}}, command=["${args}"])
    got = build_argv(config, {"l": ["a", 1], "d": {"k": True}, "n": None, "b.k": True}, interpreter="p", json_file="f")
    assert got == ["--l=['a', 1]", "--d={'k': True}", "--n=None", '--b={"k": true}']


def test_a_sweep_without_command_cannot_build_an_argv() -> None:
    config = dataclasses.replace(make_config(PARAMS), command=None)
    with pytest.raises(SweepError, match="function=train"):
        build_argv(config, VALUES, interpreter="p", json_file="f")
