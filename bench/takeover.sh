#!/usr/bin/env bash
# Cluster takeover time: two release daemons sharing a repository and a real 3-member etcd
# (scripts/etcd); the leader is killed with SIGKILL, and the time until the standby reports
# itself leader (GET /api/v1/cluster, polled every 50 ms) is measured. RUNS rounds (default
# 10), lease_ttl TTL (default 5s, the default). Prints every round, the median and the worst.
# Usage: bench/takeover.sh [RUNS] [TTL]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
RUNS="${1:-10}"
TTL="${2:-5s}"
release_build
cluster_setup takeover 24500 24600
for h in 1 2; do member_config "$h" 'scope = "lifeboat.bench=takeover-none"'; done
start() { member_start "$1"; }
leading() { member_api "$1" /api/v1/cluster 2>/dev/null | grep -q '"leading":true'; }
start 1; start 2
for _ in $(seq 1 200); do leading 1 || leading 2 && break; sleep 0.1; done
: >"$WORK/times"
for r in $(seq 1 "$RUNS"); do
  if leading 1; then l=1; s=2; else l=2; s=1; fi
  t0=$(date +%s.%N)
  kill -9 "${pids[$l]}"; wait "${pids[$l]}" 2>/dev/null || true
  until leading "$s"; do sleep 0.05; done
  t1=$(date +%s.%N)
  t=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
  echo "round $r: h$l killed, h$s leads after ${t}s"
  echo "$t" >>"$WORK/times"
  start "$l"
  sleep 2
done
sort -n "$WORK/times" | awk -v ttl="$TTL" '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2;
  printf "takeover after SIGKILL (lease_ttl %s, %d runs): median %.2f s, worst %.2f s\n", ttl, NR, m, a[NR]}'
