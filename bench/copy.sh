#!/usr/bin/env bash
# `lifeboat copy --to REGION` against `restic copy`, from the same source repository (Lifeboat's
# primary, which restic reads) into fresh repositories created with the source's chunker
# parameters (`lifeboat init --region`, `restic init --copy-chunker-params`), on the same
# generated data, in one run: the first copy of a 1 GB backup, then the copy of a second backup
# after a 1% change, each with the page cache dropped first ("cold"), and the first copy again
# into another fresh repository with the cache warm. Prints wall time, the Lifeboat/restic ratio
# and the peak RSS of each. Times the release build. Both destinations are local directories
# on the same disk.
#
#   bench/copy.sh [SIZE_MB]        (default 1024; needs root, a Docker engine, restic)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB="${1:-1024}"
. bench/lib.sh
release_build
scripts/fixtures busybox >/dev/null

WORK=$(mktemp -d /var/tmp/lifeboat-bench-copy.XXXXXX)
NAME=lifeboat-bench-copy-$$
VOL=$NAME-data
cleanup() {
  docker rm -f "$NAME" >/dev/null 2>&1 || true
  docker volume rm -f "$VOL" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

export LIFEBOAT_STATE_DIR="$WORK/state" LIFEBOAT_PASSWORD=bench
echo bench > "$WORK/pw"
cat > "$WORK/lifeboat.toml" <<EOF
[regions.east]
location = "$WORK/east"
password_file = "$WORK/pw"
[regions.warm]
location = "$WORK/east-warm"
password_file = "$WORK/pw"
EOF
"$LB" init >/dev/null
SRC="$WORK/state/repository"
docker volume create "$VOL" >/dev/null
DATA=$(docker volume inspect -f '{{.Mountpoint}}' "$VOL")
echo "generating ${SIZE_MB} MB of data..."
python3 bench/gen_data.py "$DATA" "$SIZE_MB"
docker run -d --name "$NAME" -v "$VOL:/data" lifeboat-test/busybox:1 sleep 86400 >/dev/null
"$LB" backup "$NAME" >/dev/null

LBC=("$LB" --config "$WORK/lifeboat.toml")
"${LBC[@]}" init --region east >/dev/null
"${LBC[@]}" init --region warm >/dev/null
R=(restic -q --password-file "$WORK/pw" --from-password-file "$WORK/pw" --from-repo "$SRC")
"${R[@]}" -r "$WORK/restic-east" init --copy-chunker-params >/dev/null
"${R[@]}" -r "$WORK/restic-warm" init --copy-chunker-params >/dev/null

drop_caches
measure "lifeboat:first-cold" "${LBC[@]}" copy --to east --all
drop_caches
measure "restic:first-cold" "${R[@]}" -r "$WORK/restic-east" copy
measure "lifeboat:first-warm" "${LBC[@]}" copy --to warm --all
measure "restic:first-warm" "${R[@]}" -r "$WORK/restic-warm" copy
python3 bench/gen_data.py --change "$DATA"
"$LB" backup "$NAME" >/dev/null
drop_caches
measure "lifeboat:change-1pct-cold" "${LBC[@]}" copy --to east --all
drop_caches
measure "restic:change-1pct-cold" "${R[@]}" -r "$WORK/restic-east" copy
measure "lifeboat:nothing-new" "${LBC[@]}" copy --to east --all
measure "restic:nothing-new" "${R[@]}" -r "$WORK/restic-east" copy

echo
echo "data: $(du -sm "$DATA" | cut -f1) MB; source repository $(du -sm "$SRC" | cut -f1) MB; $(nproc) cores"
echo "destination size: lifeboat $(du -sm "$WORK/east" | cut -f1) MB, restic $(du -sm "$WORK/restic-east" | cut -f1) MB"
table first-cold first-warm change-1pct-cold nothing-new
