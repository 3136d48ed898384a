#!/usr/bin/env bash
# The one-command demo: install mlflow-sweep into .venv, then run a real sweep on MLflow's
# default store (sqlite, no server) in ./demo — init, two agents in parallel, status, finalize.
#
# Every step says what it does. The install (about a minute the first time: mlflow,
# scikit-learn, matplotlib …) shows which package pip is on, on one updating line in a
# terminal, one line per package in a log; pip's full output is kept in .venv/demo-install.log.
# A second run skips the install when setup.cfg and pyproject.toml have not changed.
steps=5
step() { printf '\n[%s/%s] %s\n' "$1" "$steps" "$2"; }

# A package's name from pip's "mlflow>=2.10 (from …)" or "scipy-1.17.1-cp311-….whl".
package() {
    local name=${1%% *}
    name=${name##*/}
    name=${name%%[<>=!~;\[]*}
    echo "${name%%-[0-9]*}"
}

# pip's output in, one status line out: the package pip is on and how many it has seen, with a
# spinner while pip is quiet (unpacking wheels). Not a terminal: pip's main lines, one each.
show_pip() {
    local line= part= commas= seen=0 tick=0 what="resolving dependencies" spin='|/-\'
    local tty=false
    [ -t 1 ] && tty=true
    while :; do
        if IFS= read -r -t 0.2 part; then
            line=$line$part
        elif [ $? -gt 128 ]; then  # no new line for 0.2 s: keep any partial line, move the spinner
            line=$line$part
            if $tty; then
                tick=$(((tick + 1) % 4))
                printf '\r\033[K  %s %s' "${spin:tick:1}" "$what"
            fi
            continue
        else
            line=$line$part
            [ -n "$line" ] || break
        fi
        case $line in
            Collecting*) seen=$((seen + 1)); what="collecting $(package "${line#Collecting }") ($seen packages so far)" ;;
            "Processing "*) seen=$((seen + 1)); what="collecting $(package "${line##*/}") ($seen packages so far)" ;;
            *Downloading*)  # a log gets one line per package, a terminal sees the download too
                $tty || { line=; continue; }
                what="downloading $(package "${line##*Downloading }") ($seen packages so far)" ;;
            "Requirement already satisfied"*) seen=$((seen + 1)); what="checking what is installed ($seen packages)" ;;
            "Installing collected packages"*)
                commas=${line//[^,]/}
                what="installing $((${#commas} + 1)) packages into .venv (the longest part)" ;;
            "Successfully installed"*) what="done" ;;
            *) line=; continue ;;
        esac
        if $tty; then printf '\r\033[K  %s %s' "${spin:tick:1}" "$what"; else echo "  $what"; fi
        line=
    done
    if $tty; then printf '\r\033[K'; fi
}

install_venv() {
    local log=.venv/demo-install.log stamp=.venv/demo-install.stamp want
    want=$(cat setup.cfg pyproject.toml | cksum)
    if [ -x .venv/bin/mlflow-sweep ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        echo "  already installed in .venv (delete .venv/demo-install.stamp to reinstall)"
        return
    fi
    if ! .venv/bin/python -m pip install --disable-pip-version-check --progress-bar off -e . 2>&1 \
            | tee "$log" | show_pip; then
        echo "pip install failed; its last lines (all of them are in $log):" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    echo "$want" >"$stamp"
    echo "  installed: $(.venv/bin/python -c 'import mlflow, mlflow_sweep; print(f"mlflow-sweep {mlflow_sweep.__version__}, mlflow {mlflow.__version__}")')"
}

main() {
    set -euo pipefail
    cd "$(dirname "${BASH_SOURCE[0]}")/.."
    local repo=$PWD sweep_id
    step 1 "Setting up .venv with mlflow-sweep and its dependencies (about a minute the first time)"
    if [ ! -x .venv/bin/python ]; then
        echo "  creating the virtual environment .venv"
        python3 -m venv .venv
    fi
    install_venv

    export PATH="$repo/.venv/bin:$PATH"
    unset MLFLOW_TRACKING_URI MLFLOW_EXPERIMENT_NAME MLFLOW_EXPERIMENT_ID
    export MLFLOW_DISABLE_TELEMETRY=${MLFLOW_DISABLE_TELEMETRY:-true}  # a demo sends nothing anywhere
    mkdir -p demo
    cp examples/train.py examples/sweep_config.yaml demo/
    cd demo

    step 2 "Creating the sweep: mlflow sweep init sweep_config.yaml (a parent run in ./demo/mlflow.db)"
    mlflow sweep init sweep_config.yaml | tee init.log
    sweep_id=$(tail -n 1 init.log | awk '{print $NF}')

    step 3 "Running 2 agents in parallel: scripts/launch_agents.sh 2 $sweep_id (10 trials in all)"
    bash "$repo/scripts/launch_agents.sh" 2 "$sweep_id"

    step 4 "Where the sweep stands: mlflow sweep status --sweep-id $sweep_id"
    mlflow sweep status --sweep-id "$sweep_id"

    step 5 "Which parameters mattered: mlflow sweep finalize --sweep-id $sweep_id"
    mlflow sweep finalize --sweep-id "$sweep_id"
    echo
    echo "Browse the sweep: cd demo && mlflow ui   (then open http://127.0.0.1:5000)"
}

# Sourcing this file (the tests do) defines the functions and runs nothing.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
