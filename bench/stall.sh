#!/usr/bin/env bash
# The writer's stall: the longest gap between two acknowledged writes of a live SQLite agent
# while Lifeboat backs up its ~1 GB database, per consistency mode (hot, pause, stop).
# Each acknowledgement carries its commit time measured inside the container by SQLite, so
# pipe buffering does not distort the gaps. Aim: hot under 100 ms; stop stalls for the
# whole backup.
#
#   bench/stall.sh [DB_MB]        (default 1024; needs root, a Docker engine)
set -euo pipefail
cd "$(dirname "$0")/.."
DB_MB="${1:-1024}"
. bench/lib.sh
release_build
scripts/fixtures services >/dev/null
one_service stall

docker volume create "$NAME" >/dev/null
DATA=$(docker volume inspect -f '{{.Mountpoint}}' "$NAME")
echo "creating a ${DB_MB} MB SQLite database..."
rows=$((DB_MB * 1024 / 4))
sqlite3 "$DATA/agent.db" "PRAGMA journal_mode=WAL; CREATE TABLE big(b BLOB);
  WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<$rows)
  INSERT INTO big SELECT randomblob(4000) FROM c;
  CREATE TABLE records(seq INTEGER PRIMARY KEY, payload BLOB, ms INTEGER);" >/dev/null

AGENT='db=/data/agent.db
i=$(sqlite3 $db "SELECT coalesce(max(seq),0) FROM records")
(while true; do i=$((i+1)); echo "INSERT INTO records VALUES($i, randomblob(200), CAST((julianday(\"now\")-2440587.5)*86400000 AS INTEGER)); SELECT \"ack \" || $i || \" \" || CAST((julianday(\"now\")-2440587.5)*86400000 AS INTEGER);"; done) | sqlite3 $db'
docker run -d --name "$NAME" -v "$NAME:/data" --stop-timeout 2 lifeboat-test/debian-services:1 bash -c "$AGENT" >/dev/null
sleep 3

printf '%-10s %12s %16s %14s\n' mode backup_s longest_gap_ms writes_during
for mode in hot hot:idle pause stop; do
  flags=""
  if [ "$mode" = hot:idle ]; then flags="--idle-io"; fi
  sleep 2
  # A fresh repository per mode: no mode profits from another's deduplicated data.
  export LIFEBOAT_STATE_DIR="$WORK/${mode/:/-}"
  "$LB" init >/dev/null
  start=$(date +%s%3N)
  "$LB" backup "$NAME" --mode "${mode%%:*}" $flags >/dev/null 2>&1
  end=$(date +%s%3N)
  sleep 3
  # Commit times from the database itself (the acks in the log may be buffered).
  sqlite3 "$DATA/agent.db" "SELECT ms FROM records WHERE ms BETWEEN $((start - 1000)) AND $((end + 1000)) ORDER BY seq;" > "$WORK/ms"
  python3 - "$WORK/ms" "$start" "$end" "$mode" <<'PY'
import sys
ms = [int(x) for x in open(sys.argv[1]) if x.strip()]
start, end, mode = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
# Include the gap from the last write before the backup to the first one after it.
gaps = [b - a for a, b in zip(ms, ms[1:])]
during = sum(1 for m in ms if start <= m <= end)
print(f"{mode:<10} {(end - start) / 1000:12.2f} {max(gaps) if gaps else -1:16d} {during:14d}")
PY
done
