#!/usr/bin/env bash
# What a hot PostgreSQL backup costs the service: pgbench (TPC-B like, 4 clients) against a
# server in a container, once without a backup and once while Lifeboat backs it up in hot mode
# (pg_dumpall streamed into the repository). Prints the transactions per second and the mean
# latency over the backup's seconds, against the same seconds of the run without a backup.
# Aim: at least 85% of the TPS.
#
#   bench/pgbench.sh [SCALE] [SECONDS]    (default scale 20, a 60 s run; needs root, Docker)
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE="${1:-20}"
SECS="${2:-60}"
. bench/lib.sh
release_build
scripts/fixtures services >/dev/null
one_service pgbench

SERVER='PGBIN=$(ls -d /usr/lib/postgresql/*/bin | head -n1); export PGDATA=/data/pg
mkdir -p /var/run/postgresql && chown postgres /var/run/postgresql
mkdir -p $PGDATA && chown postgres $PGDATA && su postgres -c "$PGBIN/initdb -D $PGDATA --auth=trust" >/dev/null
su postgres -c "$PGBIN/pg_ctl -D $PGDATA -l /tmp/pg.log -o \"-c listen_addresses=\" -w start" >/dev/null
exec sleep infinity'
docker run -d --name "$NAME" -v "$NAME:/data" --health-cmd "pg_isready -U postgres" \
  --health-interval 1s lifeboat-test/debian-services:1 bash -c "$SERVER" >/dev/null
until [ "$(docker inspect -f '{{.State.Health.Status}}' "$NAME")" = healthy ]; do sleep 0.5; done
PGBENCH=$(docker exec "$NAME" sh -c 'ls -d /usr/lib/postgresql/*/bin | head -n1')/pgbench
echo "initialising pgbench at scale $SCALE..."
docker exec "$NAME" "$PGBENCH" -U postgres -i -q -s "$SCALE" postgres >/dev/null 2>&1
SIZE=$(docker exec "$NAME" psql -U postgres -Atc "SELECT pg_size_pretty(pg_database_size('postgres'))")

# run LABEL [BACKUP]: a pgbench run with a per-second report; with BACKUP, a hot backup
# starts 10 s in. Writes $WORK/LABEL.progress and, with BACKUP, $WORK/window (start end, s).
run() {
  local label=$1 t0
  t0=$(date +%s.%N)
  docker exec "$NAME" "$PGBENCH" -U postgres -c 4 -j 2 -T "$SECS" -P 1 postgres \
    >"$WORK/$label.out" 2>"$WORK/$label.progress" &
  local bench=$!
  if [ "${2:-}" = backup ]; then
    sleep 10
    local s e
    s=$(date +%s.%N)
    "$LB" backup "$NAME" --mode hot >/dev/null 2>"$WORK/backup.err" || { cat "$WORK/backup.err"; exit 1; }
    e=$(date +%s.%N)
    python3 -c "print($s - $t0, $e - $t0)" >"$WORK/window"
  fi
  wait "$bench"
}
run quiet
docker exec "$NAME" psql -U postgres -qc "CHECKPOINT" >/dev/null
run busy backup

python3 - "$WORK" "$SCALE" "$SIZE" <<'PY'
import re, sys
work, scale, size = sys.argv[1], sys.argv[2], sys.argv[3]
start, end = (float(x) for x in open(f"{work}/window").read().split())
def seconds(label):
    out = {}
    for line in open(f"{work}/{label}.progress"):
        m = re.match(r"progress: ([\d.]+) s, ([\d.]+) tps, lat ([\d.]+) ms", line)
        if m:
            out[float(m.group(1))] = (float(m.group(2)), float(m.group(3)))
    return out
quiet, busy = seconds("quiet"), seconds("busy")
# The backup's whole seconds (pgbench reports second t for the interval ending at t).
window = [t for t in busy if start + 1 <= t <= end]
if not window:
    sys.exit(f"the backup ({end - start:.1f} s) ended before a whole pgbench second")
def mean(d, i):
    vals = [d[t][i] for t in window if t in d]
    return sum(vals) / len(vals)
qt, bt = mean(quiet, 0), mean(busy, 0)
ql, bl = mean(quiet, 1), mean(busy, 1)
print(f"pgbench scale {scale} ({size}), 4 clients; hot backup took {end - start:.1f} s")
print(f"{'':24} {'tps':>10} {'latency_ms':>12}")
print(f"{'without a backup':24} {qt:10.0f} {ql:12.2f}")
print(f"{'during the hot backup':24} {bt:10.0f} {bl:12.2f}")
print(f"TPS kept: {100 * bt / qt:.0f}%; latency x{bl / ql:.2f}")
PY
