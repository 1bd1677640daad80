#!/usr/bin/env bash
# What a hot PostgreSQL backup costs the service: pgbench (TPC-B like, 4 clients) against a
# server in a container, once without a backup and once while Lifeboat backs it up in hot mode
# (pg_dumpall streamed into the repository), twice: from a plain shell, and in a control group
# weighted as deploy/lifeboat.service sets it (CPUWeight=20). Prints the transactions per
# second and the mean latency over the backup's seconds, against the same seconds of the run
# without a backup. Aim: at least 85% of the TPS.
#
#   [STRATEGY=postgres-files] bench/pgbench.sh [SCALE] [SECONDS]
#                                (default: the dump, scale 20, a 60 s run; needs root, Docker)
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE="${1:-20}"
# postgres: the dump (pg_dumpall); postgres-files: the data directory's files during a base backup.
STRATEGY="${STRATEGY:-postgres}"
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
docker run -d --name "$NAME" -v "$NAME:/data" --label "lifeboat.strategy=$STRATEGY" --health-cmd "pg_isready -U postgres" \
  --health-interval 1s lifeboat-test/debian-services:1 bash -c "$SERVER" >/dev/null
until [ "$(docker inspect -f '{{.State.Health.Status}}' "$NAME")" = healthy ]; do sleep 0.5; done
PGBENCH=$(docker exec "$NAME" sh -c 'ls -d /usr/lib/postgresql/*/bin | head -n1')/pgbench
echo "initialising pgbench at scale $SCALE..."
docker exec "$NAME" "$PGBENCH" -U postgres -i -q -s "$SCALE" postgres >/dev/null 2>&1
SIZE=$(docker exec "$NAME" psql -U postgres -Atc "SELECT pg_size_pretty(pg_database_size('postgres'))")

# Lifeboat as deploy/lifeboat.service runs it: a control group with CPUWeight=20 (cgroup v2
# cpu.weight 20; v1 cpu.shares 204, systemd's mapping). Without one, Lifeboat's threads
# compete with the whole container at full weight.
CG=""
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  CG=/sys/fs/cgroup/lifeboat-bench
  echo +cpu >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
  mkdir -p "$CG" && echo 20 >"$CG/cpu.weight" 2>/dev/null || CG=""
elif [ -d /sys/fs/cgroup/cpu ]; then
  CG=/sys/fs/cgroup/cpu/lifeboat-bench
  mkdir -p "$CG" && echo 204 >"$CG/cpu.shares" || CG=""
fi
trap 'docker rm -f "$NAME" >/dev/null 2>&1 || true; docker volume rm -f "$NAME" >/dev/null 2>&1 || true
      rm -rf "$WORK"; [ -z "$CG" ] || rmdir "$CG" 2>/dev/null || true' EXIT

# run LABEL [BACKUP]: a pgbench run with a per-second report; with BACKUP (plain, or deployed:
# in the control group above), a hot backup starts 10 s in. Writes $WORK/LABEL.progress and,
# with BACKUP, $WORK/LABEL.window (start end, s).
run() {
  local label=$1 t0
  t0=$(date +%s.%N)
  docker exec "$NAME" "$PGBENCH" -U postgres -c 4 -j 2 -T "$SECS" -P 1 postgres \
    >"$WORK/$label.out" 2>"$WORK/$label.progress" &
  local bench=$!
  if [ -n "${2:-}" ]; then
    sleep 10
    local s e group=""
    [ "$2" = deployed ] && group="$CG"
    s=$(date +%s.%N)
    LB="$LB" NAME="$NAME" GROUP="$group" sh -c '[ -z "$GROUP" ] || echo $$ >"$GROUP/cgroup.procs"
      exec "$LB" backup "$NAME" --mode hot' >/dev/null 2>"$WORK/backup.err" \
      || { cat "$WORK/backup.err"; exit 1; }
    e=$(date +%s.%N)
    python3 -c "print($s - $t0, $e - $t0)" >"$WORK/$label.window"
  fi
  wait "$bench"
}
run quiet
docker exec "$NAME" psql -U postgres -qc "CHECKPOINT" >/dev/null
run busy plain
if [ -n "$CG" ]; then
  docker exec "$NAME" psql -U postgres -qc "CHECKPOINT" >/dev/null
  run deployed deployed
fi

echo "strategy: lifeboat.strategy=$STRATEGY"
python3 - "$WORK" "$SCALE" "$SIZE" <<'PY'
import os, re, sys
work, scale, size = sys.argv[1], sys.argv[2], sys.argv[3]
def seconds(label):
    out = {}
    for line in open(f"{work}/{label}.progress"):
        m = re.match(r"progress: ([\d.]+) s, ([\d.]+) tps, lat ([\d.]+) ms", line)
        if m:
            out[float(m.group(1))] = (float(m.group(2)), float(m.group(3)))
    return out
quiet = seconds("quiet")
print(f"pgbench scale {scale} ({size}), 4 clients; TPS and latency over the backup's seconds,")
print("against the same seconds of the run without a backup")
print(f"{'':36} {'backup_s':>8} {'tps':>8} {'quiet':>8} {'kept':>6} {'latency':>8}")
for label, what in [("busy", "hot backup, plain shell"),
                    ("deployed", "hot backup, CPUWeight=20 as deployed")]:
    if not os.path.exists(f"{work}/{label}.window"):
        continue
    start, end = (float(x) for x in open(f"{work}/{label}.window").read().split())
    busy = seconds(label)
    # The backup's whole seconds (pgbench reports second t for the interval ending at t).
    window = [t for t in busy if start + 1 <= t <= end]
    if not window:
        print(f"{what:36} {end - start:8.1f}  (ended before a whole pgbench second)")
        continue
    def mean(d, i):
        vals = [d[t][i] for t in window if t in d]
        return sum(vals) / len(vals)
    qt, bt, ql, bl = mean(quiet, 0), mean(busy, 0), mean(quiet, 1), mean(busy, 1)
    print(f"{what:36} {end - start:8.1f} {bt:8.0f} {qt:8.0f} {100 * bt / qt:5.0f}% x{bl / ql:7.2f}")
PY
