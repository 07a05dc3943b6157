#!/usr/bin/env bash
# Start a real one-node Slurm cluster (munged + slurmctld + slurmd, no systemd) for testing
# the Snakemake Slurm profile. Idempotent: installs Debian's packages only if missing and
# returns at once if the cluster recorded in the state directory is already up.
#
# Environment (all optional):
#   VITWORK_SLURM_DIR        state directory (config, logs, spool, PIDs)   [/tmp/vitwork-slurm]
#   VITWORK_SLURM_PARTITION  name of the single partition                  [local]
#   VITWORK_SLURM_CTLD_PORT  slurmctld port                                [6817]
#   VITWORK_SLURM_D_PORT     slurmd port                                   [6818]
#   VITWORK_SLURM_WAIT_S     seconds to wait for the node to become idle   [60]
#   VITWORK_SLURM_GPUS       fake GPUs of the node (gres gpu)              [2]
#   VITWORK_SLURM_APT_TIMEOUT_S  bound on each apt-get step, if any           [300]
#
# The config is written to $VITWORK_SLURM_DIR/slurm.conf and linked from /etc/slurm/slurm.conf
# (the jobs' nested srun reads only that path); $VITWORK_SLURM_DIR/env.sh exports SLURM_CONF too.
set -euo pipefail

STATE="${VITWORK_SLURM_DIR:-/tmp/vitwork-slurm}"
PARTITION="${VITWORK_SLURM_PARTITION:-local}"
CTLD_PORT="${VITWORK_SLURM_CTLD_PORT:-6817}"
D_PORT="${VITWORK_SLURM_D_PORT:-6818}"
WAIT_S="${VITWORK_SLURM_WAIT_S:-60}"
GPUS="${VITWORK_SLURM_GPUS:-2}"
APT_TIMEOUT_S="${VITWORK_SLURM_APT_TIMEOUT_S:-300}"
NODE="$(hostname -s)"
PACKAGES=(slurmctld slurmd slurm-client munge)
DAEMONS=(munged slurmctld slurmd)

log() { echo "[start_cluster] $*" >&2; }

# Install the Debian packages that are missing; `apt-get update` first because a fresh
# machine may have no (or stale) package lists. Services are not started by the install.
# Each apt step is bounded (APT_TIMEOUT_S, and 60 s for the dpkg lock) so that a slow mirror
# or a busy dpkg fails here with a message instead of hanging the caller (CI).
install_packages() {
    local missing=()
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        log "packages present: ${PACKAGES[*]}"
        return
    fi
    log "installing ${missing[*]} (apt-get)"
    local t0=$SECONDS
    export DEBIAN_FRONTEND=noninteractive
    local apt=(timeout "$APT_TIMEOUT_S" apt-get -o DPkg::Lock::Timeout=60 -o Acquire::Retries=2)
    "${apt[@]}" update -qq >"$STATE/log/apt-get.log" 2>&1 \
        || { tail -n 30 "$STATE/log/apt-get.log" >&2; log "ERROR: apt-get update failed or took over ${APT_TIMEOUT_S} s"; exit 1; }
    "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >>"$STATE/log/apt-get.log" 2>&1 \
        || { tail -n 30 "$STATE/log/apt-get.log" >&2; log "ERROR: apt-get install failed or took over ${APT_TIMEOUT_S} s"; exit 1; }
    log "apt-get took $((SECONDS - t0)) s"
}

# True when every daemon recorded in the state directory $1 is alive (the PID still runs the
# recorded program, not a process that reused the PID).
cluster_running() {
    [ -f "$1/pids" ] || return 1
    local name pid
    while read -r name pid; do
        [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 1
    done <"$1/pids"
}

# Memory (MB) Slurm may hand out: 90% of MemTotal, so slurmd never sees less than declared
# (a node reporting less than RealMemory is drained).
node_memory_mb() {
    awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo
}

# Character devices standing in for the GPUs: gres.conf needs a File= per GPU or the node is
# drained. Prints the File= value (nvidia[0-N]).
make_fake_gpus() {
    local i
    for ((i = 0; i < GPUS; i++)); do
        [ -c "$STATE/dev/nvidia$i" ] || mknod "$STATE/dev/nvidia$i" c 1 3   # same numbers as /dev/null
    done
    if ((GPUS == 1)); then echo "$STATE/dev/nvidia0"; else echo "$STATE/dev/nvidia[0-$((GPUS - 1))]"; fi
}

# Write slurm.conf and gres.conf for one node with all CPUs, 90% of RAM and GPUS fake GPUs
# (two by default, so that two training jobs can run side by side on the two CPUs).
write_config() {
    local gpu_dev cpus mem
    gpu_dev="$(make_fake_gpus)"
    cpus="$(nproc)"
    mem="$(node_memory_mb)"
    cat >"$STATE/slurm.conf" <<EOF
# Written by tests/cluster/start_cluster.sh: a one-node test cluster.
ClusterName=vitwork
SlurmctldHost=${NODE}(127.0.0.1)
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${D_PORT}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=${STATE}/munge/munge.socket
CredType=cred/munge
StateSaveLocation=${STATE}/ctld
SlurmdSpoolDir=${STATE}/spool
SlurmctldPidFile=${STATE}/run/slurmctld.pid
SlurmdPidFile=${STATE}/run/slurmd.pid
SlurmctldLogFile=${STATE}/log/slurmctld.log
SlurmdLogFile=${STATE}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups here (no systemd): track job processes by their parent chain.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
GresTypes=gpu
# No slurmdbd, so sacct cannot answer: the test profile polls squeue, which must still show a
# finished job when the executor first looks (init_seconds_before_status_checks x 3 or more).
MinJobAge=600
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
SlurmdTimeout=60
KillWait=30
MpiDefault=none
MailProg=/bin/true
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} Gres=gpu:${GPUS} State=UNKNOWN
PartitionName=${PARTITION} Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$STATE/gres.conf" <<EOF
NodeName=${NODE} Name=gpu File=${gpu_dev}
EOF
    echo "export SLURM_CONF=${STATE}/slurm.conf" >"$STATE/env.sh"
}

# Point the default config path at this cluster: the slurm-jobstep executor drops SLURM_CONF
# from the environment of the srun it runs inside each job, so srun only finds the default
# /etc/slurm/slurm.conf. A real (non-link) config there is never replaced.
link_default_config() {
    local link=/etc/slurm/slurm.conf
    if [ -e "$link" ] && [ ! -L "$link" ]; then
        log "ERROR: $link is a real file (another Slurm install?); refusing to replace it"
        exit 1
    fi
    local other
    other="$(dirname "$(readlink "$link" 2>/dev/null || echo "$STATE/x")")"
    if [ "$other" != "$STATE" ] && cluster_running "$other"; then
        log "ERROR: the test cluster of $other is running; stop it first"
        exit 1
    fi
    mkdir -p /etc/slurm
    ln -sfn "$STATE/slurm.conf" "$link"
}

# Create a munge key for this cluster only (never touches /etc/munge).
make_munge_key() {
    local key="$STATE/munge/munge.key"
    if [ ! -s "$key" ]; then
        dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
    fi
    chmod 0600 "$key"
}

# Start one daemon in the foreground in its own session and record its PID.
start_daemon() {
    local name="$1"
    shift
    setsid "$@" </dev/null >"$STATE/log/${name}.out" 2>&1 &
    local pid=$!
    echo "$name $pid" >>"$STATE/pids"
    log "started $name (pid $pid)"
}

# Report a failed start: print the error, the daemon logs and the node state (what a diagnosis
# needs), stop the daemons started so far (by their recorded PIDs) and exit 1.
fail() {
    log "ERROR: $*"
    for f in "$STATE"/log/*.log "$STATE"/log/*.out; do
        [ -s "$f" ] || continue
        echo "===== $f (last 40 lines)" >&2
        tail -n 40 "$f" >&2
    done
    scontrol show node "$NODE" >&2 2>&1 || true
    VITWORK_SLURM_DIR="$STATE" bash "$(dirname "${BASH_SOURCE[0]}")/stop_cluster.sh" || true
    exit 1
}

# Wait (bounded) until the munge socket exists, i.e. munged accepts credentials requests.
wait_for_munge() {
    local i
    for ((i = 0; i < 50; i++)); do
        [ -S "$STATE/munge/munge.socket" ] && return
        sleep 0.2
    done
    fail "munged did not create its socket within 10 s"
}

# Wait (bounded) until the node is idle; fail with the logs if it is not after WAIT_S.
wait_for_idle() {
    local state="" deadline=$((SECONDS + WAIT_S))
    while ((SECONDS < deadline)); do
        state="$(sinfo -h -N -n "$NODE" -o %T 2>/dev/null || true)"
        if [ "$state" = "idle" ]; then
            log "node $NODE is idle after $((SECONDS - T_START)) s"
            return
        fi
        for name in "${DAEMONS[@]}"; do
            if ! kill -0 "$(awk -v n="$name" '$1 == n { print $2 }' "$STATE/pids")" 2>/dev/null; then
                fail "$name exited"
            fi
        done
        sleep 1
    done
    fail "node $NODE not idle after ${WAIT_S} s (state: '${state:-no answer}')"
}

T_START=$SECONDS
mkdir -p "$STATE"/{log,run,ctld,spool,dev,munge}
chmod 0700 "$STATE"
chmod 0755 "$STATE/munge"   # munged wants the socket directory searchable; the key stays 0600
export SLURM_CONF="$STATE/slurm.conf"

if cluster_running "$STATE"; then
    log "already running (PIDs in $STATE/pids)"
    cat "$STATE/env.sh"
    exit 0
fi
if [ -f "$STATE/pids" ]; then
    # Left over from a cluster that died or a machine that was stopped: stop what is left of it
    # (stop_cluster.sh kills only recorded PIDs that still run the recorded daemon) and start anew.
    log "$STATE/pids lists daemons that are not all alive: stopping the rest first"
    VITWORK_SLURM_DIR="$STATE" bash "$(dirname "${BASH_SOURCE[0]}")/stop_cluster.sh"
fi
case "$GPUS" in '' | *[!0-9]* | 0) log "ERROR: VITWORK_SLURM_GPUS must be a positive integer, not '$GPUS'"; exit 1 ;; esac

install_packages
write_config
link_default_config
make_munge_key
# munged logs to stderr in the foreground: $STATE/log/munged.out
start_daemon munged munged --foreground --force \
    --socket="$STATE/munge/munge.socket" --key-file="$STATE/munge/munge.key" \
    --pid-file="$STATE/run/munged.pid" \
    --seed-file="$STATE/munge/munged.seed"
wait_for_munge
start_daemon slurmctld slurmctld -D -c -f "$STATE/slurm.conf"
start_daemon slurmd slurmd -D -N "$NODE" -f "$STATE/slurm.conf"
wait_for_idle
log "cluster up: sinfo/sbatch/squeue read /etc/slurm/slurm.conf -> $STATE/slurm.conf"
cat "$STATE/env.sh"
