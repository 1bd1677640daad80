#!/usr/bin/env bash
# Lifeboat versus restic (Debian package) on the same generated data, in one run:
# initial backup, no-change backup, backup after changing 1%, restore, each with the page
# cache dropped first ("cold") and, where a row can be repeated, again with a warm cache.
# Prints wall time, the Lifeboat/restic ratio and the peak RSS of each. Times the release
# build (what users run).
#
#   bench/compare.sh [SIZE_MB]        (default 2048; needs root, a Docker engine, restic)
#
# Lifeboat backs up a container whose named volume holds the data; restic backs up the same
# directory. The data is generated once per run.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB="${1:-2048}"
. bench/lib.sh
release_build
scripts/fixtures busybox >/dev/null

WORK=$(mktemp -d /var/tmp/lifeboat-bench.XXXXXX)
NAME=lifeboat-bench-$$
VOL=$NAME-data
cleanup() {
  docker rm -f "$NAME" "$NAME-r1" "$NAME-r2" >/dev/null 2>&1 || true
  docker volume rm -f "$VOL" "${NAME}-r1_$VOL" "${NAME}-r2_$VOL" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

docker volume create "$VOL" >/dev/null
DATA=$(docker volume inspect -f '{{.Mountpoint}}' "$VOL")
echo "generating ${SIZE_MB} MB of data in $DATA ..."
python3 bench/gen_data.py "$DATA" "$SIZE_MB"
docker run -d --name "$NAME" -v "$VOL:/data" lifeboat-test/busybox:1 sleep 86400 >/dev/null
ACTUAL=$(du -sm "$DATA" | cut -f1)
FILES=$(find "$DATA" -type f | wc -l)

export LIFEBOAT_STATE_DIR="$WORK/lifeboat" LIFEBOAT_PASSWORD=bench RESTIC_PASSWORD=bench
RESTIC_REPO="$WORK/restic"
"$LB" init >/dev/null
restic -q -r "$RESTIC_REPO" init >/dev/null


# run_pair ROW cold|warm: both tools, the page cache dropped before each one when cold
run_pair() {
  local row=$1 cache=$2
  [ "$cache" = cold ] && drop_caches
  measure "lifeboat:$row-$cache" "$LB" backup "$NAME"
  [ "$cache" = cold ] && drop_caches
  measure "restic:$row-$cache" restic -q -r "$RESTIC_REPO" backup "$DATA"
}

run_pair initial cold
run_pair no-change cold
run_pair no-change warm
python3 bench/gen_data.py --change "$DATA"
run_pair change-1pct cold
drop_caches
measure "lifeboat:restore-cold" "$LB" restore "$NAME" --as "$NAME-r1"
drop_caches
measure "restic:restore-cold" restic -q -r "$RESTIC_REPO" restore latest --target "$WORK/restic-r1"
measure "lifeboat:restore-warm" "$LB" restore "$NAME" --as "$NAME-r2"
measure "restic:restore-warm" restic -q -r "$RESTIC_REPO" restore latest --target "$WORK/restic-r2"

echo
echo "data: ${ACTUAL} MB in ${FILES} files (20% small files, 50% random, 30% logs); $(nproc) cores"
echo "repository size: lifeboat $(du -sm "$WORK/lifeboat/repository" | cut -f1) MB, restic $(du -sm "$RESTIC_REPO" | cut -f1) MB"
table initial-cold no-change-cold no-change-warm change-1pct-cold restore-cold restore-warm
