#!/usr/bin/env bash
# Many services: one release daemon managing N containers (default 200), each with a small
# volume and `lifeboat.schedule=1m`, for WINDOW seconds (default 600). Reports, per service,
# the longest time between two successful backups (its recovery point held when under twice
# the schedule: no slot missed), failures, and the daemon's CPU (% of one core) and peak RSS.
#
#   bench/many.sh [N] [WINDOW] [CONCURRENCY] [PRUNE]   (root, a Docker engine)
# PRUNE (e.g. 1h) schedules the repository-wide prune instead of one after every retention run.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
N="${1:-200}"
WINDOW="${2:-600}"
CONC="${3:-2}"
PRUNE="${4:-}"
release_build
scripts/fixtures busybox >/dev/null
WORK=$(mktemp -d /var/tmp/lifeboat-many.XXXXXX)
P=lbmany$$
SCOPE=lifeboat.bench=$P
TOKEN=bench-token-0123456789
PORT=$((39600 + $$ % 100))
DPID=
cleanup() {
  if [ -n "$DPID" ]; then kill -TERM "$DPID" 2>/dev/null || true; wait "$DPID" 2>/dev/null || true; fi
  # In batches: one `docker rm -f` of 200 containers hung Debian's dockerd 20.10 here
  # (a libnetwork lock), and only restarting the engine removed them.
  docker ps -aq --filter "label=$SCOPE" | xargs -r -n 20 docker rm -f >/dev/null 2>&1 || true
  docker volume ls -q --filter "name=$P-" | xargs -r docker volume rm -f >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
export LIFEBOAT_STATE_DIR="$WORK/state" LIFEBOAT_PASSWORD=bench LIFEBOAT_API_TOKEN=$TOKEN
export LIFEBOAT_REPOSITORY="$WORK/repo"
"$LB" init >/dev/null
printf '[daemon]\nscope = "%s"\nconcurrency = %s\n' "$SCOPE" "$CONC" > "$WORK/lifeboat.toml"
if [ -n "$PRUNE" ]; then echo "prune = \"$PRUNE\"" >> "$WORK/lifeboat.toml"; fi

echo "starting $N containers..."
for i in $(seq 1 "$N"); do
  docker volume create "$P-$i" >/dev/null
  d=$(docker volume inspect -f '{{.Mountpoint}}' "$P-$i")
  head -c 65536 /dev/urandom > "$d/state.bin"
  echo "service $i" > "$d/config.txt"
  docker run -d --name "$P-$i" -v "$P-$i:/data" -l lifeboat.enable=true -l "$SCOPE" \
    -l lifeboat.schedule=1m -l lifeboat.retention=last=3 lifeboat-test/busybox:1 \
    sh -c 'while true; do date >> /data/log.txt; sleep 20; done' >/dev/null
done

api() { curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT$1"; }
"$LB" daemon --config "$WORK/lifeboat.toml" --listen "127.0.0.1:$PORT" 2>"$WORK/daemon.log" &
DPID=$!
until curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; do sleep 0.2; done
ticks() { awk '{print $14 + $15}' "/proc/$DPID/stat"; }
t0=$(ticks); s0=$(date +%s.%N); since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
echo "daemon running with $N services (concurrency $CONC, prune ${PRUNE:-after each retention}); measuring for ${WINDOW}s"
sleep "$WINDOW"
t1=$(ticks); s1=$(date +%s.%N)
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$DPID/status")
rss=$(awk '/VmRSS/ {print $2}' "/proc/$DPID/status")
for i in $(seq 1 "$N"); do
  api "/api/v1/jobs?service=$P-$i&kind=backup&limit=1000&since=$since" > "$WORK/jobs-$i.json"
done
python3 - "$WORK" "$N" "$WINDOW" "$t0" "$t1" "$s0" "$s1" "$hwm" "$rss" "$(getconf CLK_TCK)" <<'PY'
import json, sys
from datetime import datetime
work, n, window = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
t0, t1, s0, s1, hwm, rss, hz = (float(x) for x in sys.argv[4:11])
ts = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
gaps, ok, failed, durations = [], 0, 0, []
for i in range(1, n + 1):
    jobs = json.load(open(f"{work}/jobs-{i}.json"))["jobs"]
    done = sorted(ts(j["finished_at"]) for j in jobs if j["state"] == "succeeded")
    failed += sum(1 for j in jobs if j["state"] == "failed")
    durations += [j["duration_seconds"] for j in jobs if j.get("duration_seconds")]
    ok += len(done)
    # From the window's start (the first backups run at once) to its end.
    points = [s0] + [d for d in done if d >= s0] + [s1]
    gaps.append(max(b - a for a, b in zip(points, points[1:])))
gaps.sort()
held = sum(1 for g in gaps if g <= 120)
durations.sort()
pct = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")
print(f"{n} services, schedule 1m, {window:.0f} s: {ok} successful backups, {failed} failed")
print(f"recovery point held (no gap over 2 min) for {held}/{n} services; "
      f"longest gap median {pct(gaps, .5):.0f} s, worst {gaps[-1]:.0f} s")
print(f"backup duration median {pct(durations, .5):.2f} s, p95 {pct(durations, .95):.2f} s")
print(f"daemon CPU {100 * (t1 - t0) / hz / (s1 - s0):.0f}% of one core; "
      f"RSS {rss / 1024:.0f} MiB (peak {hwm / 1024:.0f} MiB)")
PY
