#!/usr/bin/env bash
# Stop the test cluster started by start_cluster.sh: the daemons whose PIDs it recorded,
# in reverse start order (slurmd, slurmctld, munged); never by process name.
#   VITWORK_SLURM_DIR   state directory   [/tmp/vitwork-slurm]
#   VITWORK_SLURM_PURGE=1 also deletes the state directory (config, logs, spool)
set -euo pipefail

STATE="${VITWORK_SLURM_DIR:-/tmp/vitwork-slurm}"
PIDS="$STATE/pids"

log() { echo "[stop_cluster] $*" >&2; }

# Send SIGTERM to one PID, wait up to 15 s for it to exit, then SIGKILL it. A PID that no
# longer runs the recorded daemon (a stale pids file after a reboot, the PID reused) is left alone.
stop_pid() {
    local name="$1" pid="$2" i
    if ! kill -0 "$pid" 2>/dev/null; then
        log "$name (pid $pid) not running"
        return
    fi
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$name" ]; then
        log "pid $pid is no longer $name; leaving it alone"
        return
    fi
    kill -TERM "$pid"
    for ((i = 0; i < 75; i++)); do
        kill -0 "$pid" 2>/dev/null || { log "stopped $name (pid $pid)"; return; }
        sleep 0.2
    done
    log "$name (pid $pid) ignored SIGTERM for 15 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

# Cancel the cluster's jobs and wait (bounded) for them to end, so no job outlives slurmd.
cancel_jobs() {
    export SLURM_CONF="$STATE/slurm.conf"
    local jobs i
    jobs="$(squeue -h -t PENDING,RUNNING,SUSPENDED,COMPLETING -o %i 2>/dev/null || true)"
    [ -n "$jobs" ] || return 0
    log "cancelling jobs: $(echo $jobs)"
    scancel $jobs || true
    for ((i = 0; i < 45; i++)); do
        [ -z "$(squeue -h -t PENDING,RUNNING,SUSPENDED,COMPLETING -o %i 2>/dev/null)" ] && return 0
        sleep 1
    done
    log "jobs still listed after 45 s; stopping the daemons anyway"
}

if [ ! -f "$PIDS" ]; then
    log "no $PIDS: nothing to stop"
else
    cancel_jobs
    # tac: stop slurmd before slurmctld before munged
    tac "$PIDS" | while read -r name pid; do
        stop_pid "$name" "$pid"
    done
    rm -f "$PIDS"
fi
# Remove /etc/slurm/slurm.conf if it is the link start_cluster.sh made to this cluster.
if [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$STATE/slurm.conf" ]; then
    rm -f /etc/slurm/slurm.conf
    log "removed /etc/slurm/slurm.conf (link to $STATE/slurm.conf)"
fi
if [ "${VITWORK_SLURM_PURGE:-0}" = 1 ]; then
    rm -rf "$STATE"
    log "removed $STATE"
fi
