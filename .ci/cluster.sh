#!/usr/bin/env bash
# CI: the local one-node Slurm cluster that tests/test_cluster.py runs the workflow on.
#   bash .ci/cluster.sh start   up within VITWORK_CI_CLUSTER_TIMEOUT_S (420 s) -> exit 0; otherwise
#                               exit 1 with the reason (the cluster tests then skip, saying why)
#   bash .ci/cluster.sh stop    cancels the jobs, stops the daemons it started; always exits 0
# .ci/run uses it as:
#   trap 'bash .ci/cluster.sh stop' EXIT
#   if bash .ci/cluster.sh start; then export VITWORK_REQUIRE_CLUSTER=1; fi
# so a slow or unreachable package mirror never fails CI, but a cluster that started and then
# does not take jobs does (VITWORK_REQUIRE_CLUSTER=1 turns the tests' skip into a failure).
set -uo pipefail
cd "$(dirname "$0")/.."

TIMEOUT_S="${VITWORK_CI_CLUSTER_TIMEOUT_S:-420}"
# each apt-get step gets at most 180 s inside the overall bound (only when a package is missing)
export VITWORK_SLURM_APT_TIMEOUT_S="${VITWORK_SLURM_APT_TIMEOUT_S:-180}"

# Start the cluster (installing Slurm from Debian if missing), bounded in time; report the outcome.
start() {
    local t0=$SECONDS status
    timeout --kill-after=15 "$TIMEOUT_S" bash tests/cluster/start_cluster.sh
    status=$?
    if [ "$status" -eq 0 ]; then
        echo "CI: local Slurm cluster up in $((SECONDS - t0)) s"
        return 0
    fi
    [ "$status" -eq 124 ] && echo "CI: starting the local Slurm cluster took over ${TIMEOUT_S} s" >&2
    echo "CI: local Slurm cluster not started (exit $status): tests/test_cluster.py will be skipped" >&2
    bash tests/cluster/stop_cluster.sh || true   # a start cut short by the timeout may have left daemons
    return 1
}

# Stop the cluster; never fails, so it cannot change the exit status of the tests.
stop() {
    bash tests/cluster/stop_cluster.sh || echo "CI: stopping the local Slurm cluster failed (ignored)" >&2
    return 0
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*)
    echo "usage: bash .ci/cluster.sh start|stop" >&2
    exit 2
    ;;
esac
