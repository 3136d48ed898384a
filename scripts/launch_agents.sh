#!/usr/bin/env bash
# Start N mlflow-sweep agents on this machine with &, wait for all of them, and report.
#
#   scripts/launch_agents.sh N [SWEEP_ID] [AGENT ARGS...]
#   scripts/launch_agents.sh 4 3f2a9c0d1e...            # 4 agents on that sweep
#   scripts/launch_agents.sh 4                          # the most recently initialized sweep
#   scripts/launch_agents.sh 4 3f2a9c0d1e... --count 5  # extra args go to every agent
#
# A machine with several GPUs needs no N: 'mlflow sweep run --gpus all' starts one agent per GPU,
# each trial seeing only its own device. Passed through here, it runs N agents per GPU (small
# trials sharing a device):
#   scripts/launch_agents.sh 2 3f2a9c0d1e... --gpus all   # two agents on each GPU
#   scripts/launch_agents.sh 1 3f2a9c0d1e... --gpus all --gpus-per-trial 2   # trials of 2 GPUs each
#
# Together the agents run exactly run_cap trials (or the whole grid, each point once).
# Exit status: 0 when every agent exited 0; 1 when any agent failed; 130/143 when interrupted.
# Ctrl-C or SIGTERM is forwarded to the agents as SIGTERM: each stops its trial (the child run
# ends KILLED) and exits; this script waits for them.
#
# Environment: MLFLOW_TRACKING_URI (shared by all agents); MLFLOW_SWEEP_PYTHON, the Python with
# mlflow-sweep installed (default: the active venv's python, else mlflow-sweep from PATH).
set -uo pipefail

usage() { echo "usage: $0 N [SWEEP_ID] [AGENT ARGS...]   (N: number of agents, at least 1)" >&2; exit 2; }
[ $# -ge 1 ] || usage
case $1 in '' | *[!0-9]* | 0) usage ;; esac
n=$1
shift
sweep_id=
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then sweep_id=$1; shift; fi

# The agent: MLFLOW_SWEEP_PYTHON, else the active venv's python, else mlflow-sweep from PATH,
# else python3. The first needs no activated venv on the node.
if [ -n "${MLFLOW_SWEEP_PYTHON:-}" ]; then
    agent=("$MLFLOW_SWEEP_PYTHON" -m mlflow_sweep run)
elif [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
    agent=("$VIRTUAL_ENV/bin/python" -m mlflow_sweep run)
elif command -v mlflow-sweep >/dev/null; then
    agent=(mlflow-sweep run)
else
    agent=(python3 -m mlflow_sweep run)
fi
command -v "${agent[0]}" >/dev/null || {
    echo "launch_agents: no Python at '${agent[0]}'; set MLFLOW_SWEEP_PYTHON to the python with mlflow-sweep" >&2
    exit 1
}
[ -z "$sweep_id" ] || agent+=(--sweep-id "$sweep_id")
agent+=("$@")

# Each agent gets its own session, so a Ctrl-C typed at the terminal reaches only this script,
# which passes it on once. Without that the agents would get it twice (from the terminal and
# from us) and take the second as "kill the trial now" (SIGKILL, no grace period).
setsid=()
if command -v setsid >/dev/null; then setsid=(setsid); fi

pids=()
signal=
signals=0
forward() {
    # Sent as SIGTERM, which agents handle like Ctrl-C: background jobs of a script start with
    # SIGINT ignored. A second Ctrl-C is passed on too: the agents then kill their trials at once.
    signal=$1
    signals=$((signals + 1))
    kill -TERM "${pids[@]}" 2>/dev/null
}
trap 'forward INT' INT
trap 'forward TERM' TERM

for ((i = 0; i < n; i++)); do
    ${setsid[@]+"${setsid[@]}"} "${agent[@]}" &
    pids+=($!)
done
agents="$n agent$([ "$n" = 1 ] || echo s)"
echo "launch_agents: started $agents (pids ${pids[*]}) for sweep ${sweep_id:-<most recent>}" >&2

failed=0
for pid in "${pids[@]}"; do
    while :; do
        seen=$signals
        wait "$pid"
        status=$?
        # A trapped signal cuts wait short; wait again to get the agent's own status.
        [ "$signals" != "$seen" ] || break
    done
    if [ "$status" -ne 0 ]; then
        echo "launch_agents: agent $pid exited with status $status" >&2
        failed=$((failed + 1))
    fi
done
echo "launch_agents: $agents finished, $failed failed" >&2
case $signal in
    INT) exit 130 ;;
    TERM) exit 143 ;;
esac
[ "$failed" -eq 0 ]
