#!/usr/bin/env bash
# Scale in files: a volume holding FILES small files (default 1,000,000; 100 B to 1 KiB each,
# 1,000 per directory). Lifeboat and restic side by side, each row with the page cache
# dropped first: initial backup, no-change backup, restore. Wall time and peak RSS, and the
# RSS per million files. (Scale in bytes: bench/compare.sh SIZE_MB.)
#
#   bench/scale.sh [FILES]        (root, a Docker engine, restic)
set -euo pipefail
cd "$(dirname "$0")/.."
FILES="${1:-1000000}"
. bench/lib.sh
release_build
scripts/fixtures busybox >/dev/null
one_service scale
trap 'docker rm -f "$NAME" "$NAME-r" >/dev/null 2>&1 || true
      docker volume rm -f "$NAME" "$NAME-r_$NAME" >/dev/null 2>&1 || true
      rm -rf "$WORK"' EXIT
docker volume create "$NAME" >/dev/null
DATA=$(docker volume inspect -f '{{.Mountpoint}}' "$NAME")
echo "writing $FILES files..."
python3 - "$DATA" "$FILES" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(5)
for i in range(n):
    d = os.path.join(root, f"d{i // 1000:05d}")
    if i % 1000 == 0:
        os.mkdir(d)
    fd = os.open(os.path.join(d, f"f{i:07d}"), os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, rng.randbytes(rng.randint(100, 1024)))
    os.close(fd)
PY
docker run -d --name "$NAME" -v "$NAME:/data" lifeboat-test/busybox:1 sleep 86400 >/dev/null
export RESTIC_PASSWORD=bench
restic -q -r "$WORK/restic" init
for row in initial no-change; do
  drop_caches; measure "lifeboat:$row" "$LB" backup "$NAME"
  drop_caches; measure "restic:$row" restic -q -r "$WORK/restic" backup "$DATA"
done
drop_caches; measure "lifeboat:restore" "$LB" restore "$NAME" --as "$NAME-r"
drop_caches; measure "restic:restore" restic -q -r "$WORK/restic" restore latest --target "$WORK/r"
echo
echo "$FILES files, $(du -sm "$DATA" | cut -f1) MB; $(nproc) cores; page cache dropped before each row"
table initial no-change restore
