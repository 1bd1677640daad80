#!/usr/bin/env bash
# Lifeboat versus restic, borg (Debian packages) and the tar+gzip archive that
# docker-volume-backup makes, on the same generated data, in one run: initial backup,
# no-change backup, backup after changing 1%, restore, each with the page cache dropped first
# ("cold", as a scheduled backup meets it) and again with a warm cache. Prints wall time, the
# ratio to restic and the peak RSS of each. Times the release build (what users run). borg
# runs with its defaults (lz4), restic and Lifeboat with zstd; tar+gzip has no incremental
# mode and writes a full archive every time, as docker-volume-backup does.
#
#   bench/compare.sh [SIZE_MB]        (default 2048; needs root, a Docker engine, restic)
#
# ONLY_RESTIC=1 leaves borg and tar+gzip out (the 4 GB and 8 GB scale rows: tar+gzip alone
# writes a full archive on each of the eight rows).
#
# Lifeboat backs up a container whose named volume holds the data; restic backs up the same
# directory. The data is generated once per run.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB="${1:-2048}"
if [ "${ONLY_RESTIC:-0}" != 1 ] && ! command -v borg >/dev/null; then
  echo "compare.sh: borg is not installed: apt-get install borgbackup (or ONLY_RESTIC=1)" >&2
  exit 2
fi
. bench/lib.sh
release_build
scripts/fixtures busybox >/dev/null

WORK=$(mktemp -d /var/tmp/lifeboat-bench.XXXXXX)
NAME=lifeboat-bench-$$
VOL=$NAME-data
cleanup() {
  docker rm -f "$NAME" "$NAME-cold" "$NAME-warm" >/dev/null 2>&1 || true
  docker volume rm -f "$VOL" "${NAME}-cold_$VOL" "${NAME}-warm_$VOL" >/dev/null 2>&1 || true
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
export BORG_PASSPHRASE=bench BORG_REPO="$WORK/borg" BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
RESTIC_REPO="$WORK/restic"
"$LB" init >/dev/null
restic -q -r "$RESTIC_REPO" init >/dev/null
others() { [ "${ONLY_RESTIC:-0}" != 1 ]; }
if others; then borg init -e repokey-blake2 >/dev/null; fi
n=0



# backups ROW cold|warm: each tool backs up the data once
backups() {
  local row=$1 c=$2
  n=$((n + 1))
  cache "$c"; measure "lifeboat:$row-$c" "$LB" backup "$NAME"
  cache "$c"; measure "restic:$row-$c" restic -q -r "$RESTIC_REPO" backup "$DATA"
  others || return 0
  cache "$c"; measure "borg:$row-$c" borg create "::b$n" "$DATA"
  cache "$c"; measure "tar+gzip:$row-$c" tar -C "$DATA" -czf "$WORK/archive.tgz" .
}

# restores cold|warm: each tool restores the latest backup into a new place
restores() {
  local c=$1
  cache "$c"; measure "lifeboat:restore-$c" "$LB" restore "$NAME" --as "$NAME-$c"
  cache "$c"; measure "restic:restore-$c" restic -q -r "$RESTIC_REPO" restore latest --target "$WORK/restic-$c"
  others || return 0
  mkdir -p "$WORK/borg-$c" "$WORK/tar-$c"
  cache "$c"; measure "borg:restore-$c" sh -c "cd '$WORK/borg-$c' && borg extract ::b$n"
  cache "$c"; measure "tar+gzip:restore-$c" tar -C "$WORK/tar-$c" -xzf "$WORK/archive.tgz"
}

backups initial cold
backups no-change cold
backups no-change warm
python3 bench/gen_data.py --change "$DATA"
backups change-1pct cold
python3 bench/gen_data.py --change "$DATA" 8
backups change-1pct warm
restores cold
restores warm

echo
echo "data: ${ACTUAL} MB in ${FILES} files (20% small files, 50% random, 30% logs); $(nproc) cores"
sizes="lifeboat $(du -sm "$WORK/lifeboat/repository" | cut -f1) MB, restic $(du -sm "$RESTIC_REPO" | cut -f1) MB"
if others; then
  sizes="$sizes, borg $(du -sm "$BORG_REPO" | cut -f1) MB, tar+gzip $(du -sm "$WORK/archive.tgz" | cut -f1) MB (one archive)"
fi
echo "repository size: $sizes"
table initial-cold no-change-cold no-change-warm change-1pct-cold change-1pct-warm restore-cold restore-warm
echo
tools_table initial-cold no-change-cold no-change-warm change-1pct-cold change-1pct-warm restore-cold restore-warm
