#!/bin/bash
# slurm-bed.sh: a private single-node Slurm (munged + slurmctld + slurmd) under
# one folder, for tests.  No systemd, nothing under /etc is read for config or
# written, and only the daemons recorded in DIR's pid files are ever stopped.
#
#   slurm-bed.sh start DIR            DIR must be absent or empty; writes DIR/env
#   slurm-bed.sh stop DIR             stops the bed's daemons; ok if already gone
#   slurm-bed.sh run DIR -- CMD...    start, run CMD with DIR/env, always stop
#
# Must run as root: with SlurmUser=root no user switching is needed, and munged
# refuses a key not owned by the user it runs as.
set -eu

die() { echo "slurm-bed: error: $*" >&2; exit 1; }
usage() { die "usage: $0 start DIR | stop DIR | run DIR -- CMD..."; }

# Absolute path, since the daemons chdir and slurm.conf must not depend on cwd.
abspath() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }

need() { # $1 = program, $2 = Debian package that provides it
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] ||
        die "$1 not found: install $2 (apt-get install $2)"
}
prog() { command -v "$1" 2>/dev/null || echo "/usr/sbin/$1"; }

port_busy() { ss -Htln "sport = :$1" 2>/dev/null | grep -q .; }

# Two free adjacent ports, chosen at random so that concurrent beds (and a
# system Slurm on 6817/6818) are unlikely to pick the same ones; ss confirms.
pick_ports() {
    local _ p
    for _ in $(seq 1 50); do
        p=$(( 20000 + (RANDOM * 32768 + RANDOM + $$) % 30000 ))
        port_busy "$p" || port_busy $((p + 1)) || { echo "$p"; return; }
    done
    die "no free TCP port pair found in 20000-50000 (check: ss -ltn)"
}

show_logs() {
    local f
    for f in "$1"/log/*.log; do
        [ -f "$f" ] || continue
        echo "----- tail $f" >&2; tail -n 20 "$f" >&2
    done
}

# Read a pid file and echo the pid only if that process still is the named
# daemon, so a recycled pid is never signalled.
live_pid() { # $1 = pid file, $2 = expected comm
    local pid
    [ -s "$1" ] || return 1
    pid=$(tr -dc 0-9 <"$1")
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || return 1
    echo "$pid"
}

stop_bed() {
    local d=$1 name pid pids=""
    # TERM both Slurm daemons at once (each takes ~1 s to save state and exit);
    # munged goes last because they still talk to it while shutting down.
    for name in slurmd slurmctld munged; do
        [ "$name" = munged ] && wait_gone "$pids" && pids=""
        pid=$(live_pid "$d/run/$name.pid" "$name") || continue
        kill -TERM "$pid" 2>/dev/null && pids="$pids $pid"
    done
    wait_gone "$pids"
}

# PID 1 here reaps orphans lazily, so a finished daemon can linger as a zombie
# for seconds; count that as gone unless other threads of it still run.
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null || return 0
    set -- /proc/"$1"/task/*
    [ $# -gt 1 ]
}

wait_gone() { # $1 = pids; escalate to KILL after 5 s
    local pid n=0
    for pid in $1; do
        while alive "$pid"; do
            if [ $n -ge 50 ]; then
                echo "slurm-bed: pid $pid ignored TERM for 5 s, sending KILL" >&2
                kill -KILL "$pid" 2>/dev/null || true; break
            fi
            sleep 0.1; n=$((n + 1))
        done
    done
}

wait_pidfile() { # $1 = dir, $2 = name; daemons fork, so their pid file is the handle
    local n=0
    until live_pid "$1/run/$2.pid" "$2" >/dev/null; do
        [ $n -lt 100 ] || { show_logs "$1"; stop_bed "$1";
            die "$2 did not start (no live pid in $1/run/$2.pid); see its log above"; }
        sleep 0.1; n=$((n + 1))
    done
}

start_bed() {
    local d=$1 host port n state
    [ "$(id -u)" = 0 ] || die "must run as root (SlurmUser=root, munged key ownership)"
    need munged munge; need mungekey munge; need slurmctld slurmctld
    need slurmd slurmd; need sinfo slurm-client; need srun slurm-client
    need ss iproute2
    case $d in *[[:space:]]*) die "'$d' contains whitespace, which slurm.conf cannot hold: use another DIR" ;; esac
    if [ -e "$d" ] && [ -n "$(ls -A "$d" 2>/dev/null)" ]; then
        die "$d exists and is not empty: pick a new folder or run '$0 stop $d; rm -rf $d'"
    fi

    # munged refuses group/other-writable key, socket, log and pid folders and
    # a key readable by others; set modes explicitly rather than trust umask.
    umask 022
    mkdir -p "$d"
    chmod 0755 "$d"
    mkdir -p "$d/munge" "$d/run" "$d/log" "$d/state" "$d/spool" "$d/tmp"
    chmod 0755 "$d/munge" "$d/run" "$d/log" "$d/state" "$d/spool"
    chmod 1777 "$d/tmp"
    "$(prog mungekey)" --create --keyfile="$d/munge/munge.key" 2>/dev/null ||
        dd if=/dev/urandom of="$d/munge/munge.key" bs=1024 count=1 status=none
    chown root:root "$d/munge/munge.key"; chmod 0400 "$d/munge/munge.key"

    # munged also walks every parent of the key up to /; a group/other-writable
    # parent without the sticky bit is something this script must not chmod.
    local p=$d
    while [ "$p" != / ]; do
        p=$(dirname "$p")
        if [ -n "$(find "$p" -maxdepth 0 -perm /022 ! -perm -1000)" ]; then
            die "$p is group/other-writable without sticky bit, munged will refuse it: chmod go-w $p or put DIR elsewhere"
        fi
    done

    host=$(hostname -s)
    port=$(pick_ports)
    # CPUs=8 with config_overrides lets tests run more ranks than real cores
    # without the node draining; TmpFS keeps PMIx job dirs (named by job id,
    # which restarts at 1 in every bed) apart between concurrent beds;
    # PlugStackConfig avoids pulling SPANK plugins from /etc/slurm.
    : >"$d/plugstack.conf"
    cat >"$d/slurm.conf" <<EOF
ClusterName=bed
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
AuthInfo=socket=$d/munge/munge.socket.2
CredType=cred/munge
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool
TmpFS=$d/tmp
SlurmctldPidFile=$d/run/slurmctld.pid
SlurmdPidFile=$d/run/slurmd.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd.log
PlugStackConfig=$d/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SchedulerType=sched/builtin
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SlurmdParameters=config_overrides
NodeName=$host NodeAddr=127.0.0.1 CPUs=8 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    # Drop job context inherited from an outer Slurm (e.g. CI running inside a
    # job): srun would otherwise try to join that job id in this bed.
    cat >"$d/env" <<EOF
for v in \$(env | sed -n 's/^\(SLURM_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "\$v"; done; unset v
export SLURM_CONF=$d/slurm.conf
EOF

    "$(prog munged)" --key-file="$d/munge/munge.key" --seed-file="$d/munge/munged.seed" \
        --log-file="$d/log/munged.log" --pid-file="$d/run/munged.pid" \
        --socket="$d/munge/munge.socket.2" ||
        { show_logs "$d"; stop_bed "$d"; die "munged failed to start; see log above"; }
    wait_pidfile "$d" munged
    "$(prog slurmctld)" -c -f "$d/slurm.conf" ||
        { show_logs "$d"; stop_bed "$d"; die "slurmctld failed to start; see log above"; }
    wait_pidfile "$d" slurmctld
    "$(prog slurmd)" -f "$d/slurm.conf" -N "$host" ||
        { show_logs "$d"; stop_bed "$d"; die "slurmd failed to start; see log above"; }
    wait_pidfile "$d" slurmd

    n=0
    while :; do
        state=$(SLURM_CONF=$d/slurm.conf sinfo -h -N -o %T 2>/dev/null || true)
        [ "$state" = idle ] && break
        case $state in inval|drain*) # permanent: usually CPUs/memory vs hardware
            show_logs "$d"; SLURM_CONF=$d/slurm.conf sinfo -N -o '%N %T %E' >&2 || true
            stop_bed "$d"; die "node went '$state' (reason above); check NodeName line in $d/slurm.conf" ;;
        esac
        if [ $n -ge 300 ]; then
            show_logs "$d"; stop_bed "$d"
            die "node not idle after 30 s (state: '${state:-none}'); see logs above"
        fi
        sleep 0.1; n=$((n + 1))
    done
    echo "slurm-bed: up in $d (ports $port,$((port + 1))); source $d/env"
}

[ $# -ge 2 ] || usage
cmd=$1; dir=$(abspath "$2"); shift 2
case $cmd in
start) [ $# -eq 0 ] || usage; start_bed "$dir" ;;
stop)  [ $# -eq 0 ] || usage; stop_bed "$dir" ;;
run)
    [ "${1:-}" = -- ] && shift
    [ $# -ge 1 ] || usage
    # Stop on any exit (CMD failure, ^C) so no daemon outlives the run.
    trap 'stop_bed "$dir"' EXIT
    trap 'exit 130' INT TERM
    start_bed "$dir"
    rc=0
    # shellcheck disable=SC1091
    ( . "$dir/env"; exec "$@" ) || rc=$?
    exit "$rc"
    ;;
*) usage ;;
esac
