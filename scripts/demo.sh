#!/usr/bin/env bash
# The one-command demo: install mlflow-sweep into .venv, then run a real sweep on MLflow's
# default store (sqlite, no server) in ./demo — init, two agents in parallel, finalize.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
export PATH="$repo/.venv/bin:$PATH"
unset MLFLOW_TRACKING_URI MLFLOW_EXPERIMENT_NAME MLFLOW_EXPERIMENT_ID
export MLFLOW_DISABLE_TELEMETRY=${MLFLOW_DISABLE_TELEMETRY:-true}  # a demo sends nothing anywhere
mkdir -p demo
cp examples/train.py examples/sweep_config.yaml demo/
cd demo

mlflow sweep init sweep_config.yaml | tee init.log
sweep_id=$(tail -n 1 init.log | awk '{print $NF}')
bash "$repo/scripts/launch_agents.sh" 2 "$sweep_id"
mlflow sweep status --sweep-id "$sweep_id"
mlflow sweep finalize --sweep-id "$sweep_id"
echo
echo "Browse the sweep: cd demo && mlflow ui   (then open http://127.0.0.1:5000)"
