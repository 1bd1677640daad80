#!/usr/bin/env bash
# Host failover time, release build: the engine test
# failover::a_dead_hosts_failover_stack_comes_back_healthy_elsewhere_and_never_runs_twice
# (two simulated Docker hosts in network namespaces, a real 3-member etcd, one daemon per
# host) with MB megabytes of random data per service (default 342: a 1 GB three-service
# stack). Measured: host killed (containers, engine, daemon) to the stack healthy on the other
# host, and the restore job's own time; beside it, restic restoring the same three volume
# snapshots from the same repository. Two rows: warm, and cold (page cache dropped before the
# host is killed and again before restic's restore).
# Usage: bench/failover.sh [MB]
set -euo pipefail
cd "$(dirname "$0")/.."
MB="${1:-342}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lifeboat/target-release}"
scripts/setup-engine >/dev/null
scripts/fixtures busybox >/dev/null
echo "three services x ${MB} MB, lease_ttl 2s, failover_after 3s"
for row in warm cold; do
  cold=0
  [ "$row" = cold ] && cold=1
  LIFEBOAT_FAILOVER_MB="$MB" LIFEBOAT_FAILOVER_BENCH=1 LIFEBOAT_FAILOVER_COLD="$cold" \
    cargo test --quiet --release -p lifeboat-cli --test engine \
    failover::a_dead_hosts -- --nocapture 2>&1 | grep '^failover:' | sed "s/^failover:/$row:/"
done
