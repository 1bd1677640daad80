#!/usr/bin/env bash
# How long `lifeboat doctor` takes on 20 containers (aim: under 2 s), each with a volume of
# 1,000 small files, limits, a healthcheck; five runs, median and worst printed.
#
#   bench/doctor.sh [CONTAINERS]      (default 20; needs root and a Docker engine)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-20}"
. bench/lib.sh
release_build
scripts/fixtures busybox >/dev/null
WORK=$(mktemp -d)
PREFIX=lifeboat-dbench-$$
cleanup() {
  docker ps -aq --filter "name=$PREFIX" | xargs -r docker rm -f >/dev/null
  docker volume ls -q --filter "name=$PREFIX" | xargs -r docker volume rm -f >/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
export LIFEBOAT_STATE_DIR="$WORK" LIFEBOAT_PASSWORD=bench
"$LB" init >/dev/null
names=()
for i in $(seq 1 "$N"); do
  name="$PREFIX-$i"
  docker volume create "$name" >/dev/null
  dir=$(docker volume inspect -f '{{.Mountpoint}}' "$name")
  for j in $(seq 1 1000); do echo "record $j" > "$dir/f$j"; done
  docker run -d --name "$name" -v "$name:/data" --memory 64m --cpus 0.2 \
    --health-cmd true --health-interval 5s lifeboat-test/busybox:1 sleep 86400 >/dev/null
  names+=("$name")
done
"$LB" backup "${names[@]}" >/dev/null 2>&1
times=()
for _ in 1 2 3 4 5; do
  s=$(date +%s.%N)
  "$LB" doctor "${names[@]}" --json >/dev/null || true
  e=$(date +%s.%N)
  times+=("$(python3 -c "print(f'{$e - $s:.3f}')")")
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
echo "doctor on $N containers (1,000 files each), 5 runs: $(echo $sorted | tr '\n' ' ')"
echo "median $(echo "$sorted" | sed -n 3p) s, worst $(echo "$sorted" | tail -n1) s"
