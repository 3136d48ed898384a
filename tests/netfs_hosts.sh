#!/usr/bin/env bash
# Several "hosts" on one machine that share a directory over a real network filesystem, for the
# multi-host ledger tests. Run as root.
#
#   tests/netfs_hosts.sh start DIR             start an sshd on a free loopback port whose SFTP
#                                              server exports DIR/export; keys, config and pid in DIR/ssh
#   tests/netfs_hosts.sh host NAME DIR CMD...  run CMD as host NAME: its own hostname (UTS), its own
#                                              PIDs (PID namespace) and its own sshfs client mount of
#                                              DIR/export at DIR/mnt (mount namespace); exit with CMD's status
#   tests/netfs_hosts.sh stop DIR              stop the sshd that "start" recorded (by PID); host mounts
#                                              end with their namespaces
#
# Env: SSHFS_OPTS  extra sshfs options for "host" (comma-separated), e.g. cache=no.
#
# What this reproduces of a cluster: client-side attribute and data caches (another host's append
# may be invisible to a fresh open+read), no flock across clients, exclusive creation decided by the
# server (a lost race can come back as EPERM: SFTP reports "exists" as a generic failure), PID reuse
# across hosts, per-host hostnames. What it does not: NFS's close-to-open rules, clock skew.
# Needs the Debian packages sshfs, openssh-server and openssh-client (scripts/test.sh installs them
# as root) and unshare (util-linux). Nothing outside DIR is written except /run/sshd, which sshd needs.
set -euo pipefail

usage() { echo "usage: $0 start DIR | host NAME DIR CMD... | stop DIR" >&2; exit 2; }
log() { echo "[netfs_hosts] $*" >&2; }

need() {
    local exe
    for exe in "$@"; do
        command -v "$exe" >/dev/null || [ -x "/usr/sbin/$exe" ] || {
            log "'$exe' not found: install the Debian packages sshfs openssh-server openssh-client"
            exit 1
        }
    done
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    need sshd sshfs ssh-keygen unshare
    mkdir -p "$1"
    local dir port
    dir=$(cd "$1" && pwd)
    [ ! -s "$dir/ssh/sshd.pid" ] || { log "$dir/ssh/sshd.pid exists: run '$0 stop $dir' first"; exit 1; }
    mkdir -p "$dir/export" "$dir/mnt" "$dir/ssh" /run/sshd
    [ -f "$dir/ssh/id" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/ssh/id"
    [ -f "$dir/ssh/hostkey" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/ssh/hostkey"
    cp "$dir/ssh/id.pub" "$dir/ssh/authorized_keys"
    chmod 600 "$dir/ssh/authorized_keys"
    port=$(free_port)
    # internal-sftp: the SFTP server runs inside sshd, so nothing else needs to be installed.
    cat > "$dir/ssh/sshd_config" <<CFG
Port $port
ListenAddress 127.0.0.1
HostKey $dir/ssh/hostkey
AuthorizedKeysFile $dir/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
UsePAM no
StrictModes no
MaxStartups 100
Subsystem sftp internal-sftp
PidFile $dir/ssh/sshd.pid
CFG
    echo "$port" > "$dir/ssh/port"
    "$(command -v sshd || echo /usr/sbin/sshd)" -f "$dir/ssh/sshd_config"
    for _ in $(seq 100); do [ -s "$dir/ssh/sshd.pid" ] && break; sleep 0.05; done
    [ -s "$dir/ssh/sshd.pid" ] || { log "sshd did not start"; exit 1; }
    echo "sshd on 127.0.0.1:$port exports $dir/export"
}

host() {
    [ $# -ge 3 ] || usage
    need sshfs unshare
    local name=$1 dir opts
    dir=$(cd "$2" && pwd)
    shift 2
    opts="IdentityFile=$dir/ssh/id,StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,LogLevel=ERROR"
    [ -z "${SSHFS_OPTS:-}" ] || opts="$opts,$SSHFS_OPTS"
    # --mount-proc: the host sees only its own processes; its mount table shows its own sshfs mount.
    exec unshare --uts --pid --mount --fork --mount-proc bash -c '
        set -e
        hostname "$1"
        sshfs -p "$(cat "$2/ssh/port")" -o "$3" "root@127.0.0.1:$2/export" "$2/mnt"
        shift 3
        set +e
        "$@"
        rc=$?
        fusermount -u "$2/mnt" 2>/dev/null || true
        exit $rc' _ "$name" "$dir" "$opts" "$@"
}

stop() {
    [ -d "$1" ] || exit 0
    local pidfile="$1/ssh/sshd.pid" pid
    [ -s "$pidfile" ] || exit 0
    pid=$(cat "$pidfile")
    # only the sshd this script started: the PID must still be an sshd
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = sshd ]; then
        kill "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

case "${1:-}" in
    start) [ $# -eq 2 ] || usage; start "$2" ;;
    host) shift; host "$@" ;;
    stop) [ $# -eq 2 ] || usage; stop "$2" ;;
    *) usage ;;
esac
