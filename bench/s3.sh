#!/usr/bin/env bash
# Lifeboat versus restic (Debian package) against the same 3-node Garage cluster (S3,
# replication factor 3, on 127.0.0.1), on the same generated data, in one run: initial
# backup, no-change backup, restore, each with the page cache dropped first ("cold") and,
# where a row can be repeated, again warm. Prints wall time, the Lifeboat/restic ratio and
# the peak RSS of each. Times the release build.
#
#   bench/s3.sh [SIZE_MB]        (default 1024; needs root, a Docker engine, restic, Garage)
#
# Both tools keep their index cache (Lifeboat in its state directory, restic in --cache-dir).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB="${1:-1024}"
. bench/lib.sh
release_build
scripts/fixtures busybox >/dev/null
scripts/setup-garage >/dev/null

WORK=$(mktemp -d /var/tmp/lifeboat-bench-s3.XXXXXX)
NAME=lifeboat-bench-s3-$$
VOL=$NAME-data
cleanup() {
  docker rm -f "$NAME" "$NAME-r1" "$NAME-r2" >/dev/null 2>&1 || true
  docker volume rm -f "$VOL" "${NAME}-r1_$VOL" "${NAME}-r2_$VOL" >/dev/null 2>&1 || true
  scripts/garage stop "$WORK/garage" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

scripts/garage start "$WORK/garage" 39700 >/dev/null
set -a; . "$WORK/garage/env"; set +a

docker volume create "$VOL" >/dev/null
DATA=$(docker volume inspect -f '{{.Mountpoint}}' "$VOL")
echo "generating ${SIZE_MB} MB of data in $DATA ..."
python3 bench/gen_data.py "$DATA" "$SIZE_MB"
docker run -d --name "$NAME" -v "$VOL:/data" lifeboat-test/busybox:1 sleep 86400 >/dev/null
ACTUAL=$(du -sm "$DATA" | cut -f1)
FILES=$(find "$DATA" -type f | wc -l)

export LIFEBOAT_STATE_DIR="$WORK/lifeboat" LIFEBOAT_PASSWORD=bench RESTIC_PASSWORD=bench
export LIFEBOAT_REPOSITORY="$LIFEBOAT_TEST_S3/lifeboat"
RESTIC_REPO="$LIFEBOAT_TEST_S3/restic"
RESTIC=(restic -q -r "$RESTIC_REPO" --cache-dir "$WORK/restic-cache")
"$LB" init >/dev/null
"${RESTIC[@]}" init >/dev/null



run_pair() {
  local row=$1 c=$2
  cache "$c"; measure "lifeboat:$row-$c" "$LB" backup "$NAME"
  cache "$c"; measure "restic:$row-$c" "${RESTIC[@]}" backup "$DATA"
}

run_pair initial cold
run_pair no-change cold
run_pair no-change warm
cache cold; measure "lifeboat:restore-cold" "$LB" restore "$NAME" --as "$NAME-r1"
cache cold; measure "restic:restore-cold" "${RESTIC[@]}" restore latest --target "$WORK/restic-r1"
cache warm; measure "lifeboat:restore-warm" "$LB" restore "$NAME" --as "$NAME-r2"
cache warm; measure "restic:restore-warm" "${RESTIC[@]}" restore latest --target "$WORK/restic-r2"

echo
echo "data: ${ACTUAL} MB in ${FILES} files (20% small files, 50% random, 30% logs); $(nproc) cores"
echo "S3: Garage 2.5.0, 3 nodes on 127.0.0.1, replication factor 3"
table initial-cold no-change-cold no-change-warm restore-cold restore-warm
