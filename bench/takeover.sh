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
WORK="$(mktemp -d /tmp/lifeboat-takeover.XXXXXX)"
ETCD="$WORK/etcd"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  scripts/etcd stop "$ETCD" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
scripts/etcd start "$ETCD" 24500 >/dev/null
endpoints="$(sed 's/.*/"&"/' "$ETCD/endpoints" | paste -sd, -)"
export LIFEBOAT_API_TOKEN=bench-token-0123456789
LIFEBOAT_STATE_DIR="$WORK/s1" "$LB" init >/dev/null 2>&1
for h in 1 2; do
  mkdir -p "$WORK/s$h"
  cat >"$WORK/s$h/lifeboat.toml" <<CONF
[daemon]
scope = "lifeboat.bench=takeover-none"
[cluster]
etcd = [$endpoints]
host = "h$h"
lease_ttl = "$TTL"
[repository]
location = "$WORK/s1/repository"
password_file = "$WORK/s1/repository.key"
CONF
done
port() { echo $((24600 + $1)); }
start() {
  LIFEBOAT_STATE_DIR="$WORK/s$1" "$LB" --config "$WORK/s$1/lifeboat.toml" daemon \
    --listen "127.0.0.1:$(port "$1")" 2>"$WORK/d$1.log" &
  pids[$1]=$!
}
leading() {
  curl -sf -m 1 -H "Authorization: Bearer $LIFEBOAT_API_TOKEN" "http://127.0.0.1:$(port "$1")/api/v1/cluster" 2>/dev/null \
    | grep -q '"leading":true'
}
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
