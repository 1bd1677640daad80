#!/usr/bin/env bash
# Recovery time of a whole stack: a three-service stack (Redis database, an agent writing to
# it and answering over HTTP, a web front whose health needs the agent) holding ~1 GB
# (DB_MB in Redis, the rest as static files of the web front) is backed up with
# `backup --project`, destroyed (containers, volumes, network: a lost host), then restored
# with `restore --project` until every service is healthy. Then a drill of the same backup
# (sandbox, health and probes) reports its recovery_seconds. Then the backup is copied to two
# regions, a local directory ("near") and a 3-node Garage cluster on 127.0.0.1 ("far"), and a
# drill from each reports the recovery time per region. Aim: under 30 s; the mission's
# objectives are under 2 minutes (near regions) and 5 (far).
#
#   bench/recovery.sh [TOTAL_MB] [DB_MB]     (default 1024 and 256; root, a Docker engine)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
TOTAL_MB="${1:-1024}"
DB_MB="${2:-256}"
SITE_MB=$((TOTAL_MB - DB_MB))
release_build
scripts/fixtures all >/dev/null
P=lbbench$$
WORK=$(mktemp -d /var/tmp/lifeboat-recovery.XXXXXX)
cleanup() {
  stack_down "$P"
  scripts/garage stop "$WORK/garage" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
export LIFEBOAT_STATE_DIR="$WORK" LIFEBOAT_PASSWORD=bench
"$LB" init >/dev/null

stack_up "$P" "$SITE_MB" "$DB_MB"

echo "backing up the stack..."
/usr/bin/time -f "backup: %e s, max RSS %M KiB" "$LB" backup --project "$P" >/dev/null
echo "destroying it (containers, volumes, network)..."
docker rm -f "$P-db-1" "$P-agent-1" "$P-web-1" >/dev/null
docker volume rm "${P}_dbdata" "${P}_agentstate" "${P}_site" >/dev/null
docker network rm "${P}_default" >/dev/null
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

# Per region: copy the backup there, then a drill from it (page cache dropped before each).
scripts/setup-garage >/dev/null
scripts/garage start "$WORK/garage" 39760 >/dev/null
FAR=$(. "$WORK/garage/env"; echo "$LIFEBOAT_TEST_S3/far")
printf '[regions.near]\nlocation = "%s"\nrto = "2m"\n[regions.far]\nlocation = "%s"\nrto = "5m"\n' \
  "$WORK/near" "$FAR" > "$WORK/regions.toml"
for region in near far; do
  (
    set -a; . "$WORK/garage/env"; set +a
    "$LB" --config "$WORK/regions.toml" init --region "$region" >/dev/null
    sync; echo 3 > /proc/sys/vm/drop_caches
    /usr/bin/time -f "%e" -o "$WORK/copy-time" "$LB" --config "$WORK/regions.toml" copy --to "$region" --all --json > "$WORK/copy.json"
    sync; echo 3 > /proc/sys/vm/drop_caches
    "$LB" --config "$WORK/regions.toml" --from "$region" drill --project "$P" --json > "$WORK/drill-$region.json"
    python3 -c "import json,sys; c=json.load(open(sys.argv[2])); r=json.load(open(sys.argv[3])); print('region %s: copy %.1f s (%.0f MB sent), drill %s, recovery_seconds %.1f' % (sys.argv[1], float(open(sys.argv[4]).read()), c['bytes_added']/1e6, 'passed' if r['ok'] else 'FAILED', r['recovery_seconds']))" "$region" "$WORK/copy.json" "$WORK/drill-$region.json" "$WORK/copy-time"
  )
done
