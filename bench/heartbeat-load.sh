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
WORK="$(mktemp -d /tmp/lifeboat-hbload.XXXXXX)"
ETCD="$WORK/etcd"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 2
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  scripts/etcd stop "$ETCD" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
scripts/etcd start "$ETCD" 24700 >/dev/null
endpoints="$(sed 's/.*/"&"/' "$ETCD/endpoints" | paste -sd, -)"
export LIFEBOAT_API_TOKEN=bench-token-0123456789
LIFEBOAT_STATE_DIR="$WORK/s1" "$LB" init >/dev/null 2>&1
port() { echo $((25000 + $1)); }
for h in $(seq 1 "$N"); do
  mkdir -p "$WORK/s$h"
  cat >"$WORK/s$h/lifeboat.toml" <<CONF
[daemon]
scope = "lifeboat.bench=heartbeat-none"
check = "10s"
[cluster]
etcd = [$endpoints]
host = "h$h"
lease_ttl = "$TTL"
[repository]
location = "$WORK/s1/repository"
password_file = "$WORK/s1/repository.key"
CONF
  LIFEBOAT_STATE_DIR="$WORK/s$h" "$LB" --config "$WORK/s$h/lifeboat.toml" daemon \
    --listen "127.0.0.1:$(port "$h")" 2>"$WORK/d$h.log" &
  pids[$h]=$!
done
api() { curl -sf -m 2 -H "Authorization: Bearer $LIFEBOAT_API_TOKEN" "http://127.0.0.1:$(port "$1")$2"; }
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
