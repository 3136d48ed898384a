"""Which devices ``run --gpus`` uses and how it groups them: parsing, the sources of ``all`` in order, errors."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mlflow_sweep import devices
from mlflow_sweep.errors import UsageError

SMI = """GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77)
GPU 1: NVIDIA A100-SXM4-80GB (UUID: GPU-0c1e4e2a-7f3a-4d7c-8f0e-51f3e6a9b2c1)
  MIG 3g.40gb     Device  0: (UUID: MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f)
  MIG 3g.40gb     Device  1: (UUID: MIG-cba663e8-9bed-5b25-b243-5985ef7c9beb)
GPU 2: NVIDIA A100-SXM4-80GB (UUID: GPU-9a0b7c2d-1e3f-4a5b-8c6d-7e8f9a0b1c2d)
"""


def stand_in_smi(directory: Path, output: str = SMI, code: int = 0) -> dict[str, str]:
    """A stand-in ``nvidia-smi`` first on PATH (the only thing on it), printing ``output`` for ``-L``."""
    script = directory / "nvidia-smi"
    script.write_text(f"#!/bin/sh\n[ \"$1\" = -L ] || exit 64\n"  # shell builtins only: PATH holds nothing else
                      f"while IFS= read -r line; do echo \"$line\"; done <<'EOF'\n{output}EOF\nexit {code}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {"PATH": str(directory)}


def plan(gpus, per_trial=1, **env):
    return devices.plan(gpus, per_trial, env)


def usage_error(gpus, per_trial=1, **env) -> str:
    with pytest.raises(UsageError) as caught:
        plan(gpus, per_trial, **env)
    assert caught.value.exit_code == 2
    return str(caught.value)


@pytest.mark.parametrize(("gpus", "expected"), [
    ("0,1,2,3", ("0", "1", "2", "3")),
    ((0, 1, 2, 3), ("0", "1", "2", "3")),  # Fire reads --gpus 0,1,2,3 as a tuple of ints
    (3, ("3",)),  # one device, not three
    (" 2 , 01 ", ("2", "1")),
    ([0, "GPU-5d5ba0d6-d33d"], ("0", "GPU-5d5ba0d6-d33d")),
    ("MIG-GPU-e91edf3b/1/0", ("MIG-GPU-e91edf3b/1/0",)),
])
def test_a_list_names_its_devices_in_order(gpus, expected):
    assert plan(gpus).groups == tuple((d,) for d in expected)
    assert plan(gpus).source == "--gpus"


@pytest.mark.parametrize(("gpus", "message"), [
    ("1,01", "--gpus: device 1 is listed twice"),
    ("0,x", "--gpus: 'x' is not a device; give device numbers such as 0,1,2,3 (or GPU UUIDs as nvidia-smi -L "
            "shows them), or all"),
    ("0,,1", "--gpus: '0,,1' has an empty item"),
    ("", "--gpus names no device"),
    (True, "--gpus must be device numbers such as 0,1,2,3, or all, but got True"),
    (1.5, "--gpus must be device numbers such as 0,1,2,3, or all, but got 1.5"),
    ("-1", "--gpus: '-1' is not a device"),
])
def test_a_bad_list_is_a_usage_error(gpus, message):
    assert usage_error(gpus).startswith(message)


def test_named_devices_must_be_among_those_cuda_visible_devices_leaves():
    assert plan("3", CUDA_VISIBLE_DEVICES="2,3").groups == (("3",),)
    assert usage_error("0,1,3", CUDA_VISIBLE_DEVICES="2,3") == (
        "--gpus: devices 0,1 not among the devices this process may use (CUDA_VISIBLE_DEVICES=2,3); "
        "use --gpus all, or some of 2,3")


@pytest.mark.parametrize(("size", "expected"), [
    (1, (("0",), ("1",), ("2",), ("3",))),
    (2, (("0", "1"), ("2", "3"))),
    (4, (("0", "1", "2", "3"),)),
])
def test_devices_are_cut_into_consecutive_groups(size, expected):
    assert plan("0,1,2,3", size).groups == expected


def test_devices_that_do_not_split_evenly_are_refused_not_left_idle():
    assert usage_error("0,1,2", 2) == (
        "--gpus-per-trial 2: the 3 devices from --gpus (0,1,2) do not split into groups of 2; "
        "name 2 of them (--gpus 0,1), or use a --gpus-per-trial that divides 3")
    assert usage_error("5", 2) == ("--gpus-per-trial 2: only 1 device from --gpus (5); "
                                   "use --gpus-per-trial 1, or more devices")


@pytest.mark.parametrize("size", [0, -1, True, "2", 1.5])
def test_gpus_per_trial_is_a_whole_number_of_at_least_one(size):
    assert usage_error("0,1", size) == f"--gpus-per-trial must be a whole number of at least 1, but got {size!r}"


def test_all_is_cuda_visible_devices_first_as_written(tmp_path):
    env = {"CUDA_VISIBLE_DEVICES": "6,GPU-aa11,7", "GPU_DEVICE_ORDINAL": "0", "SLURM_STEP_GPUS": "1",
           "SLURM_JOB_GPUS": "2", **stand_in_smi(tmp_path)}
    assert plan("all", **env) == devices.Plan((("6",), ("GPU-aa11",), ("7",)), "CUDA_VISIBLE_DEVICES")
    assert plan(" ALL ", 3, **env).groups == (("6", "GPU-aa11", "7"),)


@pytest.mark.parametrize("value", ["", "-1", "-1,0", "NoDevFiles"])
def test_a_cuda_visible_devices_that_hides_every_gpu_finds_none(tmp_path, value):
    message = usage_error("all", CUDA_VISIBLE_DEVICES=value, SLURM_JOB_GPUS="0", **stand_in_smi(tmp_path))
    assert message == (f"--gpus all: no GPU found: CUDA_VISIBLE_DEVICES={value!r} hides every GPU from this process; "
                       "unset it to use the machine's GPUs")


def test_all_then_reads_slurms_variables_in_order(tmp_path):
    smi = stand_in_smi(tmp_path)
    slurm = {"GPU_DEVICE_ORDINAL": "0,1", "SLURM_STEP_GPUS": "4,5", "SLURM_JOB_GPUS": "4,5,6,7"}
    assert plan("all", **slurm, **smi) == devices.Plan((("0",), ("1",)), "GPU_DEVICE_ORDINAL")
    del slurm["GPU_DEVICE_ORDINAL"]
    assert plan("all", **slurm, **smi) == devices.Plan((("4",), ("5",)), "SLURM_STEP_GPUS")
    del slurm["SLURM_STEP_GPUS"]
    assert plan("all", 2, **slurm, **smi) == devices.Plan((("4", "5"), ("6", "7")), "SLURM_JOB_GPUS")
    assert plan("all", SLURM_STEP_GPUS=" ", SLURM_JOB_GPUS="3", **smi).source == "SLURM_JOB_GPUS"  # blank: not set


def test_a_bad_slurm_variable_is_named():
    assert usage_error("all", SLURM_JOB_GPUS="0,0") == "SLURM_JOB_GPUS: device 0 is listed twice"


def test_all_finally_lists_the_machines_gpus_with_mig_instances_in_their_gpus_place(tmp_path):
    expected = ("0", "MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f", "MIG-cba663e8-9bed-5b25-b243-5985ef7c9beb", "2")
    assert plan("all", **stand_in_smi(tmp_path)) == devices.Plan(tuple((d,) for d in expected), "nvidia-smi -L")


@pytest.mark.parametrize(("output", "code", "reason"), [
    ("No devices were found\n", 6, "nvidia-smi -L failed (exit 6: No devices were found)"),
    ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n", 9,
     "nvidia-smi -L failed (exit 9: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.)"),
    ("", 0, "nvidia-smi -L lists no GPU"),
])
def test_no_gpu_found_says_what_was_looked_at(tmp_path, output, code, reason):
    assert usage_error("all", **stand_in_smi(tmp_path, output, code)) == (
        "--gpus all: no GPU found: CUDA_VISIBLE_DEVICES is not set, nor is any of SLURM's GPU variables "
        f"(GPU_DEVICE_ORDINAL, SLURM_STEP_GPUS, SLURM_JOB_GPUS), and {reason}; name the devices instead, "
        "e.g. --gpus 0,1")


def test_no_nvidia_smi_on_path_is_a_reason_too(tmp_path):
    assert usage_error("all", PATH=str(tmp_path)).endswith(", and nvidia-smi is not on PATH; name the devices "
                                                            "instead, e.g. --gpus 0,1")


def test_the_environment_default_is_this_processs(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "9")
    assert devices.plan("all").groups == (("9",),)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "9"


def test_labels_name_one_device_or_a_group():
    assert (devices.label(("0",)), devices.label(("0", "1"))) == ("gpu 0", "gpus 0,1")


def test_the_python_agent_refuses_gpus_with_a_function_and_says_how_to_pin_a_notebook():
    import mlflow_sweep

    with pytest.raises(UsageError) as caught:
        mlflow_sweep.agent("3f2a", function=lambda: None, gpus="0,1")
    assert "a function trial runs in this process" in str(caught.value)
    assert "os.environ['CUDA_VISIBLE_DEVICES'] = '1'" in str(caught.value)


def test_the_python_agent_checks_its_devices_before_starting_anything(tmp_path):
    import mlflow_sweep

    with pytest.raises(UsageError, match="--gpus-per-trial needs --gpus"):
        mlflow_sweep.agent("3f2a", gpus_per_trial=2)
    with pytest.raises(UsageError, match="device 1 is listed twice"):
        mlflow_sweep.agent("3f2a", gpus=[1, 1])


def test_the_result_of_run_gpus_is_the_first_signal_or_the_worst_agent_and_says_who_failed():
    from mlflow_sweep.device_agents import AgentExit, AgentsFailed, DevicesResult, _exit_status

    gone = "no sweep found"
    agents = (AgentExit(("0",), 11, 0, "agent done"), AgentExit(("1",), 12, 1, gone),
              AgentExit(("2", "3"), 13, 1, gone), AgentExit(("4",), 14, _exit_status(-9), ""))
    assert (DevicesResult(agents, None).exit_code, DevicesResult(agents[:1], None).exit_code) == (137, 0)
    assert DevicesResult(agents, 2).exit_code == 130
    assert str(AgentsFailed(DevicesResult(agents, None))) == (
        "3 of 4 agents failed: gpu 1, gpus 2,3: exit 1: no sweep found; gpu 4: exit 137")
    failed = AgentsFailed(DevicesResult(agents, 15))
    assert (failed.exit_code, str(failed)) == (143, "agents stopped by SIGTERM; their running trials ended KILLED "
                                                    "(their points are handed out again)")
