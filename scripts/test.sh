#!/usr/bin/env bash
# Install what the tests need (a venv with the package, its test and optuna extras, and PyTorch;
# SLURM, sshfs and sshd when we are root on Debian) and run the whole suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,optuna]'
# Optuna's GP sampler (method gp) needs PyTorch, which the optuna extra leaves out (its Linux wheels
# pull GBs of CUDA). 2.13.0 is pinned: the machines we test on hold its CPU build on disk, so it
# installs in about 25 s (a fresh venv with everything: 2.5 min).
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
# SLURM for tests/e2e/test_slurm.py; sshfs + sshd for the multi-host bed of tests/e2e/test_netfs.py
missing=()
command -v slurmctld >/dev/null 2>&1 || missing+=(slurmctld slurmd slurm-client munge)
command -v sshfs >/dev/null 2>&1 || missing+=(sshfs)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server openssh-client)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
exec .venv/bin/python -m pytest "$@"
