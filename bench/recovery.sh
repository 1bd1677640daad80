#!/usr/bin/env bash
# Recovery time of a whole stack: a three-service stack (Redis database, an agent writing to
# it and answering over HTTP, a web front whose health needs the agent) holding ~1 GB
# (DB_MB in Redis, the rest as static files of the web front) is backed up with
# `backup --project`, destroyed (containers, volumes, network: a lost host), then restored
# with `restore --project` until every service is healthy. Then a drill of the same backup
# (sandbox, health and probes) reports its recovery_seconds. Aim: under 30 s; the mission's
# objective is under 2 minutes.
#
#   bench/recovery.sh [TOTAL_MB] [DB_MB]     (default 1024 and 256; root, a Docker engine)
set -euo pipefail
cd "$(dirname "$0")/.."
TOTAL_MB="${1:-1024}"
DB_MB="${2:-256}"
SITE_MB=$((TOTAL_MB - DB_MB))
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lifeboat/target}"
cargo build --quiet --bin lifeboat
LB="$CARGO_TARGET_DIR/debug/lifeboat"   # dependencies are optimised in this profile
scripts/fixtures all >/dev/null
P=lbbench$$
NET=${P}_default
WORK=$(mktemp -d /var/tmp/lifeboat-recovery.XXXXXX)
cleanup() {
  docker rm -f "$P-db-1" "$P-agent-1" "$P-web-1" >/dev/null 2>&1 || true
  docker volume rm -f "${P}_dbdata" "${P}_agentstate" "${P}_site" >/dev/null 2>&1 || true
  docker network rm "$NET" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
export LIFEBOAT_STATE_DIR="$WORK" LIFEBOAT_PASSWORD=bench
"$LB" init >/dev/null

AGENT='mkdir -p /www/cgi-bin /state
printf "#!/bin/sh\necho Content-Type: text/plain\necho\nprintf \"GET writes\\r\\nQUIT\\r\\n\" | nc db 6379 | sed -n 2p\n" > /www/cgi-bin/count
chmod +x /www/cgi-bin/count
httpd -p 8080 -h /www
while true; do printf "INCR writes\r\nQUIT\r\n" | nc db 6379 >> /state/replies; sleep 0.2; done'
compose() { echo "-l com.docker.compose.project=$P -l com.docker.compose.service=$1"; }

docker network create "$NET" >/dev/null
for v in dbdata agentstate site; do docker volume create "${P}_$v" >/dev/null; done
SITE=$(docker volume inspect -f '{{.Mountpoint}}' "${P}_site")
echo "index" > "$SITE/index.html"
echo "writing ${SITE_MB} MB of static files and ${DB_MB} MB into Redis..."
for i in $(seq 1 $((SITE_MB / 64))); do head -c 64M /dev/urandom > "$SITE/asset-$i.bin"; done
# shellcheck disable=SC2046
docker run -d --name "$P-db-1" --network "$NET" --network-alias db $(compose db) \
  -v "${P}_dbdata:/data" --health-cmd 'redis-cli ping | grep -q PONG' --health-interval 1s \
  lifeboat-test/debian-services:1 redis-server --dir /data --save '' --appendonly no --protected-mode no \
  --enable-debug-command local >/dev/null
until [ "$(docker inspect -f '{{.State.Health.Status}}' "$P-db-1")" = healthy ]; do sleep 0.5; done
docker exec "$P-db-1" redis-cli DEBUG POPULATE $((DB_MB * 1024)) key 1024 >/dev/null
keys_before=$(docker exec "$P-db-1" redis-cli dbsize)
[ "$keys_before" -ge $((DB_MB * 1024)) ] || { echo "Redis holds only $keys_before keys" >&2; exit 1; }
# shellcheck disable=SC2046
docker run -d --name "$P-agent-1" --network "$NET" --network-alias agent $(compose agent) \
  -l com.docker.compose.depends_on=db:service_healthy:false -v "${P}_agentstate:/state" \
  --health-cmd "wget -qO- http://127.0.0.1:8080/cgi-bin/count | grep -q '[0-9]'" --health-interval 1s \
  lifeboat-test/busybox:1 sh -c "$AGENT" >/dev/null
# shellcheck disable=SC2046
docker run -d --name "$P-web-1" --network "$NET" --network-alias web $(compose web) \
  -l com.docker.compose.depends_on=agent:service_healthy:false -v "${P}_site:/site" \
  --health-cmd "wget -qO- http://agent:8080/cgi-bin/count | grep -q '[0-9]'" --health-interval 1s \
  -l 'lifeboat.probe=wget -qO- http://127.0.0.1/index.html | grep -q index' \
  lifeboat-test/busybox:1 httpd -f -p 80 -h /site >/dev/null
for c in db agent web; do
  until [ "$(docker inspect -f '{{.State.Health.Status}}' "$P-$c-1")" = healthy ]; do sleep 0.5; done
done

echo "backing up the stack..."
/usr/bin/time -f "backup: %e s, max RSS %M KiB" "$LB" backup --project "$P" >/dev/null
echo "destroying it (containers, volumes, network)..."
docker rm -f "$P-db-1" "$P-agent-1" "$P-web-1" >/dev/null
docker volume rm "${P}_dbdata" "${P}_agentstate" "${P}_site" >/dev/null
docker network rm "$NET" >/dev/null
sync; echo 3 > /proc/sys/vm/drop_caches

t0=$(date +%s.%N)
/usr/bin/time -f "restore: max RSS %M KiB" "$LB" restore --project "$P" >/dev/null
t1=$(date +%s.%N)
for c in db agent web; do
  [ "$(docker inspect -f '{{.State.Health.Status}}' "$P-$c-1")" = healthy ] || { echo "$c not healthy" >&2; exit 1; }
done
keys=$(docker exec "$P-db-1" redis-cli dbsize)
[ "$keys" -ge "$keys_before" ] || { echo "only $keys of $keys_before Redis keys came back" >&2; exit 1; }
python3 -c "import sys; print('stack restore to healthy: %.1f s (%s MB, %s Redis keys back)' % (float(sys.argv[2]) - float(sys.argv[1]), sys.argv[3], sys.argv[4]))" "$t0" "$t1" "$TOTAL_MB" "$keys"

sync; echo 3 > /proc/sys/vm/drop_caches
"$LB" drill --project "$P" --json > "$WORK/drill.json"
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('drill: %s, recovery_seconds %.1f (restored, healthy, probed, in a sandbox)' % ('passed' if r['ok'] else 'FAILED', r['recovery_seconds']))" "$WORK/drill.json"
