"""Which GPUs ``mlflow sweep run --gpus`` uses, and how they are split among agents.

``--gpus 0,1,2,3`` names the devices; ``--gpus all`` reads the devices this process may use, from
the first source that is set:

1. ``CUDA_VISIBLE_DEVICES``: the user's own restriction, or the one SLURM sets for a job or step
   (numbered inside the job's device cgroup, so it is what a CUDA process must be given).
2. SLURM's GPU variables: ``GPU_DEVICE_ORDINAL`` (SLURM's list for the job in the same numbering
   as ``CUDA_VISIBLE_DEVICES``; set where gres.conf leaves ``CUDA_VISIBLE_DEVICES`` out), then
   ``SLURM_STEP_GPUS`` and ``SLURM_JOB_GPUS`` (the node's own GPU numbers; SLURM's manual: "not
   relative to any device cgroup", so they fit a node whose devices are not constrained).
3. ``nvidia-smi -L``: every GPU of the machine, or each MIG instance of a GPU split into them
   (a CUDA process uses one MIG instance at most, so each is a device of its own here).

A device is kept as text, exactly as ``CUDA_VISIBLE_DEVICES`` takes it (``3``, ``GPU-8f3c…``,
``MIG-…``): a trial is given its devices in the variable's own terms, also where the parent
process already restricts them. Devices are then cut into groups of ``--gpus-per-trial``, one
agent per group; a number of devices that does not split evenly is refused rather than leaving
a device idle without saying so. Pure apart from reading the environment and running
``nvidia-smi``; nothing heavy is imported.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from mlflow_sweep.errors import UsageError
from mlflow_sweep.trials import check_count

ALL = "all"
DEVICES_ENV = "MLFLOW_SWEEP_DEVICES"
"""Set by ``run --gpus`` for each agent: the devices of its trials, recorded as the tag ``sweep.devices``."""
VISIBLE = "CUDA_VISIBLE_DEVICES"
SLURM_VARIABLES = ("GPU_DEVICE_ORDINAL", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS")
NVIDIA_SMI = "nvidia-smi"
_DEVICE = re.compile(r"^(?:\d+|(?:GPU|MIG)-[A-Za-z0-9/-]+)$")
_HIDDEN = ("-1", "NoDevFiles")  # CUDA's "no device", and what older SLURM sets when no GPU is allocated
_GPU_LINE = re.compile(r"^GPU (\d+): .*$")
_MIG_LINE = re.compile(r"^\s+MIG .*\(UUID: (MIG-[^)\s]+)\)\s*$")


@dataclass(frozen=True)
class Plan:
    """The device groups, one agent each, and where the devices came from (for messages)."""

    groups: tuple[tuple[str, ...], ...]
    source: str


def plan(gpus: Any, per_trial: Any = 1, env: Mapping[str, str] | None = None) -> Plan:
    """The agents' device groups for ``--gpus`` and ``--gpus-per-trial``.

    Args:
        gpus: ``all``, device numbers as text (``0,1,2,3``), an int, or a sequence of them
            (Fire reads ``--gpus 0,1`` as a tuple of ints).
        per_trial: devices per trial (per agent).
        env: the environment to read (default: this process's).

    Raises:
        UsageError: a bad list, a repeated device, a device outside ``CUDA_VISIBLE_DEVICES``,
            no device found for ``all``, or devices that do not split into groups of ``per_trial``.
    """
    env = os.environ if env is None else env
    size = check_count(per_trial, "--gpus-per-trial")
    if isinstance(gpus, str) and gpus.strip().lower() == ALL:
        devices, source = available(env)
    else:
        devices, source = _within_visible(parse(gpus), env), "--gpus"
    return Plan(group(devices, size, source), source)


def parse(gpus: Any, where: str = "--gpus") -> tuple[str, ...]:
    """The devices of a list such as ``0,1,2,3`` (or ``GPU-…`` UUIDs), each once, in the order given.

    Args:
        gpus: text, an int, or a sequence of ints and texts.
        where: what the list is called in messages (the flag or the environment variable).
    """
    items = _items(gpus, where)
    if not items:
        raise UsageError(f"{where} names no device; give device numbers such as 0,1,2,3, or all")
    devices: list[str] = []
    for item in items:
        if not item:
            raise UsageError(f"{where}: {gpus!r} has an empty item; give device numbers such as 0,1,2,3, or all")
        if not _DEVICE.match(item):
            raise UsageError(f"{where}: {item!r} is not a device; give device numbers such as 0,1,2,3 "
                             "(or GPU UUIDs as nvidia-smi -L shows them), or all")
        device = str(int(item)) if item.isdigit() else item
        if device in devices:
            raise UsageError(f"{where}: device {device} is listed twice")
        devices.append(device)
    return tuple(devices)


def _items(gpus: Any, where: str) -> list[str]:
    if isinstance(gpus, bool) or gpus is None:
        raise UsageError(f"{where} must be device numbers such as 0,1,2,3, or all, but got {gpus!r}")
    if isinstance(gpus, int):
        return [str(gpus)]
    if isinstance(gpus, str):
        return [item.strip() for item in gpus.split(",")] if gpus.strip() else []
    if isinstance(gpus, Sequence):
        return [item for value in gpus for item in _items(value, where)]
    raise UsageError(f"{where} must be device numbers such as 0,1,2,3, or all, but got {gpus!r}")


def available(env: Mapping[str, str]) -> tuple[tuple[str, ...], str]:
    """The devices this process may use and the source they came from (``--gpus all``).

    Args:
        env: the environment to read.

    Raises:
        UsageError: no source names a device; the message says what was looked at.
    """
    if VISIBLE in env:
        return _visible(env[VISIBLE]), VISIBLE
    for name in SLURM_VARIABLES:
        if env.get(name, "").strip():
            return parse(env[name], name), name
    devices, problem = _nvidia_smi(env)
    if devices:
        return devices, f"{NVIDIA_SMI} -L"
    raise UsageError(f"--gpus all: no GPU found: {VISIBLE} is not set, nor is any of SLURM's GPU variables "
                     f"({', '.join(SLURM_VARIABLES)}), and {problem}; name the devices instead, e.g. --gpus 0,1")


def _visible(value: str, flag: str = "--gpus all") -> tuple[str, ...]:
    """``CUDA_VISIBLE_DEVICES`` as a device list; a value that hides every GPU (CUDA's ``-1``) leaves none."""
    first = value.split(",", 1)[0].strip()
    if not value.strip() or first in _HIDDEN:
        raise UsageError(f"{flag}: no GPU found: {VISIBLE}={value!r} hides every GPU from this process; "
                         f"unset it to use the machine's GPUs")
    return parse(value, VISIBLE)


def _within_visible(devices: tuple[str, ...], env: Mapping[str, str]) -> tuple[str, ...]:
    """Named devices must be among those ``CUDA_VISIBLE_DEVICES`` leaves this process, when it is set."""
    if VISIBLE not in env:
        return devices
    allowed = _visible(env[VISIBLE], "--gpus")
    outside = [d for d in devices if d not in allowed]
    if outside:
        raise UsageError(f"--gpus: device{'s' * (len(outside) > 1)} {','.join(outside)} not among the devices this "
                         f"process may use ({VISIBLE}={env[VISIBLE]}); use --gpus all, or some of "
                         f"{','.join(allowed)}")
    return devices


def _nvidia_smi(env: Mapping[str, str]) -> tuple[tuple[str, ...], str]:
    """The machine's GPUs as ``nvidia-smi -L`` lists them (MIG instances by UUID), or why there are none."""
    path = shutil.which(NVIDIA_SMI, path=env.get("PATH", os.defpath))
    if path is None:
        return (), f"{NVIDIA_SMI} is not on PATH"
    try:
        proc = subprocess.run([path, "-L"], capture_output=True, text=True, timeout=60, env=dict(env),
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return (), f"{NVIDIA_SMI} -L could not run ({exc})"
    if proc.returncode != 0:
        said = " ".join((proc.stderr or proc.stdout).split())[:300]
        return (), f"{NVIDIA_SMI} -L failed (exit {proc.returncode}{': ' + said if said else ''})"
    devices = _listed(proc.stdout)
    return devices, "" if devices else f"{NVIDIA_SMI} -L lists no GPU"


def _listed(text: str) -> tuple[str, ...]:
    """Devices in ``nvidia-smi -L`` output: ``GPU 0: … (UUID: GPU-…)`` lines, a GPU's MIG lines in its place."""
    gpus: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if match := _GPU_LINE.match(line):
            gpus.append((match.group(1), []))
        elif (match := _MIG_LINE.match(line)) and gpus:
            gpus[-1][1].append(match.group(1))
    return tuple(device for index, migs in gpus for device in (migs or [index]))


def group(devices: tuple[str, ...], size: int, source: str = "--gpus") -> tuple[tuple[str, ...], ...]:
    """``devices`` cut into consecutive groups of ``size``, one per agent.

    Args:
        devices: the devices, in order.
        size: devices per group (``--gpus-per-trial``).
        source: where the devices came from, for the message.

    Raises:
        UsageError: the devices do not split evenly; leaving some idle is not done silently.
    """
    count, listed = len(devices), ",".join(devices)
    if count < size:
        raise UsageError(f"--gpus-per-trial {size}: only {count} device{'s' * (count != 1)} from {source} "
                         f"({listed}); use --gpus-per-trial {count}, or more devices")
    if count % size:
        whole = count - count % size
        raise UsageError(f"--gpus-per-trial {size}: the {count} devices from {source} ({listed}) do not split into "
                         f"groups of {size}; name {whole} of them (--gpus {','.join(devices[:whole])}), or use a "
                         f"--gpus-per-trial that divides {count}")
    return tuple(devices[i:i + size] for i in range(0, len(devices), size))


def label(devices: Sequence[str]) -> str:
    """``gpu 0`` or ``gpus 0,1``: how output lines and messages name an agent's devices."""
    return f"gpu{'s' * (len(devices) > 1)} {','.join(devices)}"
