#!/usr/bin/env bash
# Lifeboat versus restic (Debian package) on the same generated data, in one run:
# initial backup, no-change backup, backup after changing 1%, restore. Prints wall time,
# the Lifeboat/restic ratio and the peak RSS of each.
#
#   bench/compare.sh [SIZE_MB]        (default 2048; needs root, a Docker engine, restic)
#
# Lifeboat backs up a container whose named volume holds the data; restic backs up the same
# directory. Both run with a warm page cache; the data is generated once per run.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB="${1:-2048}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lifeboat/target}"
command -v /usr/bin/time >/dev/null || { apt-get update -qq; apt-get install -y -qq time >/dev/null; }
cargo build --quiet --bin lifeboat
LB="$CARGO_TARGET_DIR/debug/lifeboat"
scripts/fixtures busybox >/dev/null

WORK=$(mktemp -d /var/tmp/lifeboat-bench.XXXXXX)
NAME=lifeboat-bench-$$
VOL=$NAME-data
cleanup() {
  docker rm -f "$NAME" "$NAME-restored" >/dev/null 2>&1 || true
  docker volume rm -f "$VOL" "${NAME}-restored_$VOL" >/dev/null 2>&1 || true
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

# measure LABEL CMD...: runs CMD under /usr/bin/time, appends "label seconds rss_kib"
measure() {
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >"$WORK/out" 2>"$WORK/err" || {
    echo "FAILED: $label: $*"; cat "$WORK/err"; exit 1; }
  echo "$label $(cat "$WORK/time")" >>"$WORK/results"
}

run_pair() {
  local row=$1
  measure "lifeboat:$row" "$LB" backup "$NAME"
  measure "restic:$row" restic -q -r "$RESTIC_REPO" backup "$DATA"
}

run_pair initial
run_pair no-change
python3 bench/gen_data.py --change "$DATA"
run_pair change-1pct
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
measure "lifeboat:restore" "$LB" restore "$NAME" --as "$NAME-restored"
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
measure "restic:restore" restic -q -r "$RESTIC_REPO" restore latest --target "$WORK/restic-restore"

echo
echo "data: ${ACTUAL} MB in ${FILES} files (20% small files, 50% random, 30% logs); $(nproc) cores"
echo "repository size: lifeboat $(du -sm "$WORK/lifeboat/repository" | cut -f1) MB, restic $(du -sm "$RESTIC_REPO" | cut -f1) MB"
printf '%-12s %12s %12s %8s %14s %14s\n' row lifeboat_s restic_s ratio lifeboat_rss restic_rss
for row in initial no-change change-1pct restore; do
  read -r _ ls lr < <(grep "^lifeboat:$row " "$WORK/results")
  read -r _ rs rr < <(grep "^restic:$row " "$WORK/results")
  ratio=$(python3 -c "print(f'{$ls/$rs:.2f}')")
  printf '%-12s %12s %12s %8s %11s MiB %11s MiB\n' "$row" "$ls" "$rs" "$ratio" "$((lr / 1024))" "$((rr / 1024))"
done
