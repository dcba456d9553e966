#!/usr/bin/env bash
# A single-node SLURM on this machine, to try `snakemake --profile slurm` on a laptop or in CI.
#
#   workflow/scripts/local_slurm.sh start    # install (Debian packages) if missing, configure, start, wait for the node
#   snakemake --profile slurm --configfile config/micro.yaml figures/teacher_quality.pdf
#   workflow/scripts/local_slurm.sh stop     # stop exactly the daemons `start` started
#   workflow/scripts/local_slurm.sh status   # sinfo of the node
#
# Run as root (the daemons need it). The config goes where every SLURM command looks by default,
# /etc/slurm/slurm.conf, as on a cluster node: the executor plugin's job step drops SLURM_* variables
# (SLURM_CONF too) before its inner `srun`, so a config elsewhere is not found inside jobs. `start`
# refuses to overwrite a slurm.conf it did not write; `stop` removes the one it wrote. Like most lab clusters without a database, this SLURM has no
# accounting (AccountingStorageType=accounting_storage/none): `sacct` answers nothing, so the
# profile polls with `squeue` (see workflow/profiles/slurm/config.v8+.yaml), and MinJobAge keeps a
# finished job visible to `squeue` long enough for Snakemake to see how it ended.
#
# Settings (environment): LOCAL_SLURM_DIR (state, logs, config; default /tmp/pruneforget-slurm),
# LOCAL_SLURM_CPUS (default: nproc), LOCAL_SLURM_MEM_MB (default: 80% of MemTotal).
set -euo pipefail

DIR=${LOCAL_SLURM_DIR:-/tmp/pruneforget-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# Written by workflow/scripts/local_slurm.sh"
NODE=$(hostname -s)
CPUS=${LOCAL_SLURM_CPUS:-$(nproc)}
MEM_MB=${LOCAL_SLURM_MEM_MB:-$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)}

die() { echo "local_slurm: $*" >&2; exit 1; }

install_packages() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null && return 0
    command -v apt-get >/dev/null || die "slurmctld/slurmd/munged are missing and apt-get is not here: install SLURM and MUNGE by hand"
    echo "local_slurm: installing slurm-wlm and munge (Debian packages)" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_config() {
    if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
        die "$CONF exists and was not written by this script: this machine has a SLURM already; use it"
    fi
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/munge" "$(dirname "$CONF")"
    cat >"$CONF" <<EOF
$MARK: one node, this machine, no accounting.
ClusterName=pruneforget
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmctldPort=${LOCAL_SLURM_PORT:-6817}
SlurmdPort=$(( ${LOCAL_SLURM_PORT:-6817} + 1 ))
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
# Finished jobs stay visible to squeue for 10 minutes: the profile's status command needs them.
MinJobAge=600
SchedulerParameters=sched_interval=1
NodeName=$NODE CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    # Reuse a munged that already runs (a system one); else start ours and record its PID.
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        return 0
    fi
    [ -s /etc/munge/munge.key ] || { mungekey --create --keyfile /etc/munge/munge.key && chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key; }
    mkdir -p /run/munge && chown munge:munge /run/munge "$DIR/munge"
    runuser -u munge -- munged --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log"
    cp "$DIR/munge/munged.pid" "$DIR/munged.started"
}

start() {
    [ "$(id -u)" -eq 0 ] || die "run as root: slurmctld and slurmd run as root here"
    install_packages
    if [ -f "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null; then
        echo "local_slurm: already running ($DIR)" >&2
    else
        write_config
        start_munge
        # -i: ignore state a previous run left; -c: clear the job list too.
        slurmctld -f "$CONF" -i -c
        slurmd -f "$CONF"
    fi
    for _ in $(seq 60); do
        state=$(sinfo -h -N -n "$NODE" -o %t 2>/dev/null || true)
        case "$state" in idle|mix|alloc) echo "local_slurm: node $NODE is $state ($CPUS CPUs, $MEM_MB MB)" >&2
                                        return 0 ;; esac
        sleep 1
    done
    die "node $NODE did not become idle in 60 s (state: ${state:-none}); see $DIR/slurmctld.log and $DIR/slurmd.log"
}

stop_pid() {  # stop_pid FILE NAME: TERM the recorded process, wait for it to exit
    local file=$1 name=$2 pid
    [ -f "$file" ] || return 0
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$pid" 2>/dev/null && { echo "local_slurm: $name ($pid) did not stop; killing it" >&2; kill -9 "$pid"; }
    fi
    rm -f "$file"
}

stop() {
    stop_pid "$DIR/slurmd.pid" slurmd
    stop_pid "$DIR/slurmctld.pid" slurmctld
    stop_pid "$DIR/munged.started" munged  # only a munged this script started
    [ -f "$CONF" ] && grep -qF "$MARK" "$CONF" && rm -f "$CONF"
    echo "local_slurm: stopped" >&2
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) sinfo -N -l ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
