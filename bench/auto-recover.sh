#!/usr/bin/env bash
# Automatic recovery, timed from the failure to the service back, healthy and probed, with the
# real daemon (release build) and `lifeboat.recover=auto`, `lifeboat.recover-after=1s`:
#  1. a service holding SIZE_MB in a volume crashes by itself (`--restart=no`);
#  2. the three-service stack of bench/recovery.sh (Redis database, agent, web; SIZE_MB in
#     all) whose database crashes (`DEBUG SEGFAULT`): the database is recovered, then the agent
#     and the web front are restarted in dependency order, each waited for.
# Each row runs with the page cache dropped just before the failure ("cold"), then again warm
# (a fresh daemon, since a second failure within 10 minutes is left alone by design). Beside
# them, restic restoring the same data (data only: no forensic backup, no container, no health
# wait) is the floor the data movement sets. Aim: under 30 s each.
#
#   bench/auto-recover.sh [SIZE_MB] [DB_MB]   (default 1024 and 256; root, a Docker engine, restic)
#   PARTS="service stack" picks the parts; the daemon's log is printed when a recovery fails.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
SIZE_MB="${1:-1024}"
DB_MB="${2:-256}"
PARTS="${PARTS:-service stack}"
release_build
scripts/fixtures all >/dev/null

WORK=$(mktemp -d /var/tmp/lifeboat-auto-recover.XXXXXX)
P=lbrec$$
SVC=$P-svc
VOL=$P-data
SCOPE=lifeboat.bench=$P
TOKEN=bench-token-0123456789
PORT=$((39800 + $$ % 100))
DPID=
stop_daemon() {
  if [ -n "$DPID" ]; then kill -TERM "$DPID" 2>/dev/null || true; wait "$DPID" 2>/dev/null || true; DPID=; fi
}
cleanup() {
  stop_daemon
  docker rm -f "$SVC" >/dev/null 2>&1 || true
  docker volume rm -f "$VOL" >/dev/null 2>&1 || true
  stack_down "$P"
  rm -rf "$WORK"
}
trap cleanup EXIT
export LIFEBOAT_STATE_DIR="$WORK/state" LIFEBOAT_PASSWORD=bench LIFEBOAT_API_TOKEN=$TOKEN
export LIFEBOAT_REPOSITORY="$WORK/repo"
"$LB" init >/dev/null
printf '[daemon]\nscope = "%s"\njitter = "0s"\n' "$SCOPE" > "$WORK/lifeboat.toml"
LABELS=(-l lifeboat.enable=true -l "$SCOPE" -l lifeboat.schedule=1h -l lifeboat.recover=auto
        -l lifeboat.recover-after=1s)

api() { curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT$1"; }
start_daemon() {
  "$LB" daemon --config "$WORK/lifeboat.toml" --listen "127.0.0.1:$PORT" 2>>"$WORK/daemon.log" &
  DPID=$!
  until api /healthz >/dev/null 2>&1 || curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null; do sleep 0.2; done
}
# wait_backups NAME...: until each has a successful backup.
wait_backups() {
  local n
  for n in "$@"; do
    until api "/api/v1/jobs?service=$n" | python3 -c 'import json,sys; sys.exit(0 if any(j["kind"]=="backup" and j["state"]=="succeeded" for j in json.load(sys.stdin)["jobs"]) else 1)'; do sleep 0.5; done
  done
}
# timed_recovery LABEL NAME FAIL_CMD...: drops the cache, fails NAME with FAIL_CMD, waits for
# its recover job to end; appends "LABEL seconds_from_failure job_seconds" to results.
timed_recovery() {
  local label=$1 name=$2; shift 2
  local before t0
  before=$(api "/api/v1/jobs?service=$name" | python3 -c 'import json,sys; print(sum(j["kind"]=="recover" for j in json.load(sys.stdin)["jobs"]))')
  drop_caches
  t0=$(date +%s.%N)
  "$@"
  until api "/api/v1/jobs?service=$name" | python3 -c '
import json,sys
jobs=[j for j in json.load(sys.stdin)["jobs"] if j["kind"]=="recover"]
sys.exit(0 if len(jobs) > int(sys.argv[1]) and jobs[0]["state"] in ("succeeded","failed") else 1)' "$before"; do sleep 0.2; done
  api "/api/v1/jobs?service=$name" | python3 -c '
import json,sys,datetime
j=[j for j in json.load(sys.stdin)["jobs"] if j["kind"]=="recover"][0]
if j["state"] != "succeeded":
    print(open(sys.argv[3]).read()[-20000:], file=sys.stderr)
    sys.exit("recovery failed: %s" % j["error"])
end=datetime.datetime.fromisoformat(j["finished_at"].replace("Z","+00:00")).timestamp()
d=j["detail"]
print(sys.argv[1], "%.2f" % (end-float(sys.argv[2])), "%.2f" % j["duration_seconds"], "%.1f" % d["data_lost_seconds"], ",".join(d["restarted"]) or "-")
with open(sys.argv[4], "a") as f:
    f.write("%s: from the failure, each step began at\n" % sys.argv[1])
    for p in j.get("progress", []):
        at=datetime.datetime.fromisoformat(p["at"].replace("Z","+00:00")).timestamp()
        f.write("  %6.2f s  %s\n" % (at-float(sys.argv[2]), p["step"][:100]))' "$label" "$t0" "$WORK/daemon.log" "$WORK/steps" >>"$WORK/results"
}

if [[ " $PARTS " == *" service "* ]]; then
echo "== one service, ${SIZE_MB} MB =="
docker volume create "$VOL" >/dev/null
DATA=$(docker volume inspect -f '{{.Mountpoint}}' "$VOL")
python3 bench/gen_data.py "$DATA" "$SIZE_MB"
echo good > "$DATA/state"
docker run -d --name "$SVC" --restart no "${LABELS[@]}" -v "$VOL:/data" \
  --health-cmd 'test -f /data/state' --health-interval 1s -l 'lifeboat.probe=test -f /data/state' \
  lifeboat-test/busybox:1 sh -c 'while [ ! -f /data/crash ]; do sleep 0.2; done; exit 3' >/dev/null
start_daemon
wait_backups "$SVC"
for row in cold warm; do
  [ "$row" = warm ] && { stop_daemon; start_daemon; }
  timed_recovery "service:$row" "$SVC" touch "$DATA/crash"
  [ ! -e "$DATA/crash" ] && [ "$(cat "$DATA/state")" = good ] || { echo "service not recovered" >&2; exit 1; }
done
stop_daemon
# restic: the same data restored from a restic repository of its own.
export RESTIC_PASSWORD=bench RESTIC_REPOSITORY="$WORK/restic" RESTIC_CACHE_DIR="$WORK/restic-cache"
restic init -q
restic backup -q "$DATA" >/dev/null
for row in cold warm; do
  rm -rf "$WORK/restic-target"
  [ "$row" = cold ] && drop_caches
  /usr/bin/time -f "%e" -o "$WORK/time" restic restore -q latest --target "$WORK/restic-target"
  echo "restic-restore:$row $(cat "$WORK/time") - - -" >>"$WORK/results"
done
rm -rf "$WORK/restic-target" "$WORK/restic"
docker rm -f "$SVC" >/dev/null; docker volume rm "$VOL" >/dev/null
fi

if [[ " $PARTS " == *" stack "* ]]; then
echo "== three-service stack, ${SIZE_MB} MB (Redis ${DB_MB} MB) =="
stack_up "$P" "$((SIZE_MB - DB_MB))" "$DB_MB" "${LABELS[@]}"
start_daemon
wait_backups "$P-db-1" "$P-agent-1" "$P-web-1"
for row in cold warm; do
  [ "$row" = warm ] && { stop_daemon; start_daemon; }
  timed_recovery "stack:$row" "$P-db-1" sh -c "docker exec $P-db-1 redis-cli DEBUG SEGFAULT >/dev/null 2>&1 || true"
  for c in db agent web; do
    [ "$(docker inspect -f '{{.State.Health.Status}}' "$P-$c-1")" = healthy ] || { echo "$c not healthy" >&2; exit 1; }
  done
  keys=$(docker exec "$P-db-1" redis-cli dbsize)
  [ "$keys" -ge "$keys_before" ] || { echo "only $keys of $keys_before Redis keys came back" >&2; exit 1; }
done
stop_daemon
fi

printf '\n%-22s %18s %14s %14s  %s\n' row failure_to_ok_s recovery_s data_lost_s restarted
while read -r label total job lost restarted; do
  printf '%-22s %18s %14s %14s  %s\n' "$label" "$total" "$job" "$lost" "$restarted"
done <"$WORK/results"
echo
cat "$WORK/steps"
