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
#
# The config is written to $VITWORK_SLURM_DIR/slurm.conf and linked from /etc/slurm/slurm.conf
# (the jobs' nested srun reads only that path); $VITWORK_SLURM_DIR/env.sh exports SLURM_CONF too.
set -euo pipefail

STATE="${VITWORK_SLURM_DIR:-/tmp/vitwork-slurm}"
PARTITION="${VITWORK_SLURM_PARTITION:-local}"
CTLD_PORT="${VITWORK_SLURM_CTLD_PORT:-6817}"
D_PORT="${VITWORK_SLURM_D_PORT:-6818}"
WAIT_S="${VITWORK_SLURM_WAIT_S:-60}"
NODE="$(hostname -s)"
PACKAGES=(slurmctld slurmd slurm-client munge)
DAEMONS=(munged slurmctld slurmd)

log() { echo "[start_cluster] $*" >&2; }

# Install the Debian packages that are missing; `apt-get update` first because a fresh
# machine may have no (or stale) package lists. Services are not started by the install.
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
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$STATE/log/apt-get.log" 2>&1 \
        || { tail -n 30 "$STATE/log/apt-get.log" >&2; exit 1; }
    log "apt-get took $((SECONDS - t0)) s"
}

# True when every daemon recorded in $STATE/pids is alive.
cluster_running() {
    [ -f "$STATE/pids" ] || return 1
    local name pid
    while read -r name pid; do
        kill -0 "$pid" 2>/dev/null || return 1
    done <"$STATE/pids"
}

# Memory (MB) Slurm may hand out: 90% of MemTotal, so slurmd never sees less than declared
# (a node reporting less than RealMemory is drained).
node_memory_mb() {
    awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo
}

# A character device standing in for the GPU: gres.conf needs a File= or the node is drained.
make_fake_gpu() {
    local dev="$STATE/dev/nvidia0"
    [ -c "$dev" ] || mknod "$dev" c 1 3   # same device numbers as /dev/null
    echo "$dev"
}

# Write slurm.conf and gres.conf for one node with all CPUs, 90% of RAM and one fake GPU.
write_config() {
    local gpu_dev cpus mem
    gpu_dev="$(make_fake_gpu)"
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
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} Gres=gpu:1 State=UNKNOWN
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

# Print the daemon logs and the node state: what a failed start needs for a diagnosis.
dump_logs() {
    for f in "$STATE"/log/*.log "$STATE"/log/*.out; do
        [ -f "$f" ] || continue
        echo "===== $f (last 40 lines)" >&2
        tail -n 40 "$f" >&2
    done
    scontrol show node "$NODE" >&2 2>&1 || true
}

# Wait (bounded) until the munge socket exists, i.e. munged accepts credentials requests.
wait_for_munge() {
    local i
    for ((i = 0; i < 50; i++)); do
        [ -S "$STATE/munge/munge.socket" ] && return
        sleep 0.2
    done
    log "ERROR: munged did not create its socket within 10 s"
    dump_logs
    exit 1
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
                log "ERROR: $name exited"
                dump_logs
                exit 1
            fi
        done
        sleep 1
    done
    log "ERROR: node $NODE not idle after ${WAIT_S} s (state: '${state:-no answer}')"
    dump_logs
    exit 1
}

T_START=$SECONDS
mkdir -p "$STATE"/{log,run,ctld,spool,dev,munge}
chmod 0700 "$STATE" "$STATE/munge"
export SLURM_CONF="$STATE/slurm.conf"

if cluster_running; then
    log "already running (PIDs in $STATE/pids)"
    cat "$STATE/env.sh"
    exit 0
fi
if [ -f "$STATE/pids" ]; then
    log "ERROR: $STATE/pids lists daemons that are not all alive; run stop_cluster.sh first"
    exit 1
fi

install_packages
write_config
link_default_config
make_munge_key
start_daemon munged munged --foreground --force \
    --socket="$STATE/munge/munge.socket" --key-file="$STATE/munge/munge.key" \
    --pid-file="$STATE/run/munged.pid" --log-file="$STATE/log/munged.log" \
    --seed-file="$STATE/munge/munged.seed"
wait_for_munge
start_daemon slurmctld slurmctld -D -c -f "$STATE/slurm.conf"
start_daemon slurmd slurmd -D -N "$NODE" -f "$STATE/slurm.conf"
wait_for_idle
log "cluster up: sinfo/sbatch/squeue read /etc/slurm/slurm.conf -> $STATE/slurm.conf"
cat "$STATE/env.sh"
