#!/usr/bin/env bash
# A private single-node SLURM cluster on localhost, for the SLURM tests (run as root).
#
#   tests/slurm_cluster.sh start DIR   write slurm.conf, start munged + slurmctld + slurmd with all
#                                      their state, sockets and logs under DIR, wait until the node
#                                      is idle, then print "export SLURM_CONF=DIR/slurm.conf"
#   tests/slurm_cluster.sh stop DIR    cancel remaining jobs, then stop the daemons that "start"
#                                      recorded in DIR/pids (by PID, never by name)
#
#   line=$(bash tests/slurm_cluster.sh start "$DIR") && eval "$line"   # not eval "$(…)": eval
#   sbatch --array=0-2 scripts/slurm_sweep.sbatch "$SWEEP_ID"          # would hide a failed start
#   bash tests/slurm_cluster.sh stop "$DIR"
#
# Env: SLURM_PORT           slurmctld port; slurmd uses SLURM_PORT+1 (default 6817). Give every
#                           cluster running at the same time on this machine its own pair.
#      SLURM_START_TIMEOUT  seconds to wait for the node to become idle (default 60).
#      SLURM_NODE_CPUS      CPUs the node offers to jobs (default: nproc). More than nproc lets
#                           that many one-CPU array tasks run at once on a small machine.
#
# Needs the Debian packages slurmctld, slurmd, slurm-client and munge (scripts/test.sh installs
# them when run as root). Nothing outside DIR is written: no /etc, no /run, no systemd, no
# cgroups, no accounting database. Jobs run as the submitting user (root).
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
mode=$1
case $mode in start) mkdir -p "$2" ;; stop) [ -d "$2" ] || exit 0 ;; *) usage ;; esac
D=$(cd "$2" && pwd)
case $D in *[[:space:]]*) echo "$0: DIR must not contain whitespace (slurm.conf cannot quote it): $D" >&2; exit 2 ;; esac
export SLURM_CONF=$D/slurm.conf
log() { echo "[slurm_cluster] $*" >&2; }

# Is PID $1 alive (not a zombie) and still named $2? Guards against a recycled PID.
alive() {
    [ -n "$1" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] \
        && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null
}

cancel_jobs() {
    # Cancel jobs first so that no job process outlives the daemons that track it.
    local jobs
    jobs=$(squeue -h -o %F 2>/dev/null | sort -u) || return 0
    [ -n "$jobs" ] || return 0
    # shellcheck disable=SC2086  # one argument per job id
    scancel $jobs 2>/dev/null || true
    for _ in $(seq 50); do [ -z "$(squeue -h 2>/dev/null)" ] && return 0; sleep 0.2; done
}

stop_cluster() {
    [ -f "$D/pids" ] || return 0
    local pid name
    if alive "$(awk '$2 == "slurmctld" {print $1}' "$D/pids")" slurmctld; then cancel_jobs; fi
    # Reverse start order: slurmd, slurmctld, then munged (both slurm daemons talk to it).
    tac "$D/pids" | while read -r pid name; do
        alive "$pid" "$name" || continue
        kill -TERM "$pid" 2>/dev/null || continue
        for _ in $(seq 100); do alive "$pid" "$name" || break; sleep 0.1; done
        if alive "$pid" "$name"; then log "$name ($pid) ignored TERM, killing"; kill -KILL "$pid" || true; fi
    done
    rm -f "$D/pids"
}

if [ "$mode" = stop ]; then stop_cluster; exit 0; fi

for exe in munged mungekey slurmctld slurmd sbatch squeue sinfo scancel; do
    command -v "$exe" >/dev/null || {
        log "'$exe' not found: install the Debian packages slurmctld slurmd slurm-client munge"
        exit 1
    }
done
[ ! -f "$D/pids" ] || { log "$D/pids exists: a cluster is running there; run '$0 stop $D' first"; exit 1; }

write_config() {
    local host=$1 port=$2 cpus=${SLURM_NODE_CPUS:-$(nproc)} mem overrides=
    mem=$(awk '/^MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    # slurmd drains a node that reports fewer CPUs than configured, unless told to trust the config.
    [ "$cpus" = "$(nproc)" ] || overrides=SlurmdParameters=config_overrides
    # Every line here was needed for a cluster without systemd, cgroups or slurmdbd, or made
    # array tasks start without the default ~3 s scheduler tick (sched_interval=1).
    cat > "$SLURM_CONF" <<EOF
ClusterName=local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$D/munge/munge.sock
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
$overrides
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start_daemons() {
    local host=$1
    [ -f "$D/munge/munge.key" ] || mungekey -c -k "$D/munge/munge.key"
    # -F foreground, so that $! is the daemon's PID; -f because munged refuses a socket directory
    # with a non-world-executable parent (pytest's tmp root is 0700) unless forced.
    munged -F -f --socket="$D/munge/munge.sock" --key-file="$D/munge/munge.key" \
        --pid-file="$D/munge/munged.pid" --log-file="$D/log/munged.log" \
        --seed-file="$D/munge/munged.seed" </dev/null >>"$D/log/munged.out" 2>&1 &
    echo "$! munged" >> "$D/pids"
    for _ in $(seq 50); do munge -n -S "$D/munge/munge.sock" >/dev/null 2>&1 && break; sleep 0.1; done
    # The daemons hold none of our pipes, so a caller capturing our output returns at once.
    slurmctld -D </dev/null >>"$D/log/slurmctld.out" 2>&1 &
    echo "$! slurmctld" >> "$D/pids"
    slurmd -D -N "$host" </dev/null >>"$D/log/slurmd.out" 2>&1 &
    echo "$! slurmd" >> "$D/pids"
}

wait_idle() {
    local host=$1 deadline=$((SECONDS + ${SLURM_START_TIMEOUT:-60}))
    until [ "$(sinfo -h -N -n "$host" -o %t 2>/dev/null)" = idle ]; do
        if [ $SECONDS -ge $deadline ] || ! alive "$(awk '$2 == "slurmctld" {print $1}' "$D/pids")" slurmctld; then
            log "node $host did not become idle; sinfo: $(sinfo -h -N -o '%N %t %E' 2>&1 || true)"
            tail -n 20 "$D"/log/* >&2 || true
            return 1
        fi
        sleep 0.2
    done
}

host=$(hostname -s)
mkdir -p "$D/munge" "$D/state" "$D/spool" "$D/log"
chmod 755 "$D" "$D/munge"   # munged wants its socket directory world-executable
write_config "$host" "${SLURM_PORT:-6817}"
trap 'log "start failed; stopping what was started"; stop_cluster' EXIT
start_daemons "$host"
wait_idle "$host"
trap - EXIT
log "node $host idle on port ${SLURM_PORT:-6817} ($(awk '{printf "%s=%s ", $2, $1}' "$D/pids"))"
echo "export SLURM_CONF=$SLURM_CONF"
