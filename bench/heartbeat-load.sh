#!/usr/bin/env bash
# Heartbeat load: N release daemons (default 50) in one cluster against one real 3-member etcd
# (scripts/etcd), sharing a repository, managing no container (scope matches nothing), with
# lease_ttl TTL (default 5s) and a repository check every 10 s. Over WINDOW seconds (default
# 60) it measures the CPU the etcd members and the daemons use (from /proc, % of one core),
# etcd's request rate, and the leader's job latency: how long after its slot's window opened
# each repository check started.
# Usage: bench/heartbeat-load.sh [N] [WINDOW] [TTL]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
N="${1:-50}"
WINDOW="${2:-60}"
TTL="${3:-5s}"
release_build
cluster_setup hbload 24700 25000
for h in $(seq 1 "$N"); do
  member_config "$h" 'scope = "lifeboat.bench=heartbeat-none"' 'check = "10s"'
  member_start "$h"
done
api() { member_api "$@"; }
for _ in $(seq 1 300); do
  n=$(api 1 /api/v1/cluster 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["hosts"]))' 2>/dev/null || echo 0)
  [ "$n" = "$N" ] && break
  sleep 0.5
done
echo "$N daemons registered (lease_ttl $TTL); measuring for ${WINDOW}s"
etcd_pids=$(cat "$ETCD"/m*.pid | paste -sd' ')
ticks() { # total utime+stime clock ticks of the given pids
  local t=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}
revision() { curl -sf -m 2 -X POST -d '{"key":"AA=="}' "$(head -1 "$ETCD/endpoints")/v3/kv/range" | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])'; }
hz=$(getconf CLK_TCK)
e0=$(ticks $etcd_pids); d0=$(ticks "${pids[@]}"); r0=$(revision); t0=$(date +%s.%N)
sleep "$WINDOW"
e1=$(ticks $etcd_pids); d1=$(ticks "${pids[@]}"); r1=$(revision); t1=$(date +%s.%N)
leader=$(api 1 /api/v1/cluster | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"])')
li=${leader#h}
api "$li" "/api/v1/jobs?service=repository%23check" >"$WORK/jobs.json"
python3 - "$WORK/jobs.json" "$e0" "$e1" "$d0" "$d1" "$r0" "$r1" "$t0" "$t1" "$hz" "$N" "$leader" <<'PY'
import json, sys, statistics
from datetime import datetime
jobs = json.load(open(sys.argv[1]))["jobs"]
e0, e1, d0, d1, r0, r1 = map(int, sys.argv[2:8])
t0, t1 = float(sys.argv[8]), float(sys.argv[9])
hz, n, leader = int(sys.argv[10]), int(sys.argv[11]), sys.argv[12]
wall = t1 - t0
def ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")[:26] + "+00:00").timestamp()
lat = []
for j in jobs:
    slot = (j.get("detail") or {}).get("slot")
    if slot is None or not j.get("started_at"):
        continue
    lat.append(ts(j["started_at"]) - slot * 10)
print(f"etcd (3 members): {100 * (e1 - e0) / hz / wall:.1f}% of one core; "
      f"{(r1 - r0) / wall:.1f} writes/s (revisions)")
print(f"{n} daemons together: {100 * (d1 - d0) / hz / wall:.1f}% of one core")
if lat:
    lat.sort()
    print(f"leader {leader}: {len(lat)} checks, start latency after the window opened: "
          f"median {statistics.median(lat) * 1000:.0f} ms, worst {lat[-1] * 1000:.0f} ms")
else:
    print("leader ran no check in the window")
PY
