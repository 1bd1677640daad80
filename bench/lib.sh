# Shared by the benchmark scripts (sourced): the release build, timing rows, dropping the page
# cache, and the three-service stack. `measure` and `table` need $WORK (results in
# $WORK/results).

# release_build: builds the binary users run (release, cache in ~/.cache/lifeboat) and sets LB;
# installs /usr/bin/time when missing. LIFEBOAT_BENCH_BIN names another binary to time instead
# (e.g. a copy of an earlier build, for a before/after comparison in one run).
release_build() {
  command -v /usr/bin/time >/dev/null || { apt-get update -qq; apt-get install -y -qq time >/dev/null; }
  if [ -n "${LIFEBOAT_BENCH_BIN:-}" ]; then LB="$LIFEBOAT_BENCH_BIN"; return; fi
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lifeboat/target-release}"
  cargo build --quiet --release --bin lifeboat
  LB="$CARGO_TARGET_DIR/release/lifeboat"
}

# measure LABEL CMD...: runs CMD under /usr/bin/time, appends "label seconds rss_kib"
measure() {
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >"$WORK/out" 2>"$WORK/err" || {
    echo "FAILED: $label: $*"; cat "$WORK/err"; exit 1; }
  echo "$label $(cat "$WORK/time")" >>"$WORK/results"
}

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# cache cold|warm: drops the page cache when cold; either way the row starts with no write of
# the row before still pending (a warm restore timed while the previous restore's 8 GB were
# being written back measured the disk, not the tool)
cache() { sync; if [ "$1" = cold ]; then drop_caches; fi; }

# one_service TAG: sets NAME (a container and volume name), WORK (removed at exit with that
# container and volume) and a fresh repository in WORK.
one_service() {
  NAME=lifeboat-$1-$$
  WORK=$(mktemp -d "/var/tmp/lifeboat-$1.XXXXXX")
  trap 'docker rm -f "$NAME" >/dev/null 2>&1 || true
        docker volume rm -f "$NAME" >/dev/null 2>&1 || true
        rm -rf "$WORK"' EXIT
  export LIFEBOAT_STATE_DIR="$WORK" LIFEBOAT_PASSWORD=bench
  "$LB" init >/dev/null
}

# table ROW...: the Lifeboat/restic table of the given rows
table() {
  printf '%-18s %12s %12s %8s %14s %14s\n' row lifeboat_s restic_s ratio lifeboat_rss restic_rss
  local row ls lr rs rr ratio
  for row in "$@"; do
    read -r _ ls lr < <(grep "^lifeboat:$row " "$WORK/results")
    read -r _ rs rr < <(grep "^restic:$row " "$WORK/results")
    ratio=$(python3 -c "print(f'{$ls/$rs:.2f}')")
    printf '%-18s %12s %12s %8s %11s MiB %11s MiB\n' "$row" "$ls" "$rs" "$ratio" "$((lr / 1024))" "$((rr / 1024))"
  done
}

# tools_table ROW...: every tool's time, ratio to restic and peak RSS on the given rows
tools_table() {
  printf '%-18s %-9s %10s %16s %12s\n' row tool seconds ratio_to_restic peak_rss
  local row tool s r rs
  for row in "$@"; do
    read -r _ rs _ < <(grep "^restic:$row " "$WORK/results")
    while read -r tool s r; do
      printf '%-18s %-9s %10s %16s %8s MiB\n' "$row" "${tool%%:*}" "$s" \
        "$(python3 -c "print(f'{$s/$rs:.2f}')")" "$((r / 1024))"
    done < <(grep ":$row " "$WORK/results")
  done
}

# stack_up P SITE_MB DB_MB [FLAG...]: the three-service stack of project P (compose labels,
# network P_default): a Redis database (DB_MB of keys), an agent writing to it and answering
# over HTTP, a web front (SITE_MB of static files) whose health needs the agent; each waits
# for what it depends on. FLAGs (e.g. -l lifeboat.enable=true) go to every container.
# Sets keys_before (the Redis key count).
stack_up() {
  local p=$1 site_mb=$2 db_mb=$3; shift 3
  local net=${p}_default site c i
  local agent='mkdir -p /www/cgi-bin /state
printf "#!/bin/sh\necho Content-Type: text/plain\necho\nprintf \"GET writes\\r\\nQUIT\\r\\n\" | nc db 6379 | sed -n 2p\n" > /www/cgi-bin/count
chmod +x /www/cgi-bin/count
httpd -p 8080 -h /www
trap "exit 0" TERM
while true; do printf "INCR writes\r\nQUIT\r\n" | nc db 6379 >> /state/replies; sleep 0.2; done'
  docker network create "$net" >/dev/null
  for v in dbdata agentstate site; do docker volume create "${p}_$v" >/dev/null; done
  site=$(docker volume inspect -f '{{.Mountpoint}}' "${p}_site")
  echo "index" > "$site/index.html"
  echo "writing ${site_mb} MB of static files and ${db_mb} MB into Redis..."
  for i in $(seq 1 $((site_mb / 64))); do head -c 64M /dev/urandom > "$site/asset-$i.bin"; done
  docker run -d --name "$p-db-1" --network "$net" --network-alias db \
    -l com.docker.compose.project="$p" -l com.docker.compose.service=db "$@" \
    -v "${p}_dbdata:/data" --health-cmd 'redis-cli ping | grep -q PONG' --health-interval 1s \
    lifeboat-test/debian-services:1 redis-server --dir /data --save '' --appendonly no --protected-mode no \
    --enable-debug-command local >/dev/null
  until [ "$(docker inspect -f '{{.State.Health.Status}}' "$p-db-1")" = healthy ]; do sleep 0.5; done
  docker exec "$p-db-1" redis-cli DEBUG POPULATE $((db_mb * 1024)) key 1024 >/dev/null
  keys_before=$(docker exec "$p-db-1" redis-cli dbsize)
  [ "$keys_before" -ge $((db_mb * 1024)) ] || { echo "Redis holds only $keys_before keys" >&2; exit 1; }
  docker run -d --name "$p-agent-1" --network "$net" --network-alias agent \
    -l com.docker.compose.project="$p" -l com.docker.compose.service=agent "$@" \
    -l com.docker.compose.depends_on=db:service_healthy:false -v "${p}_agentstate:/state" \
    --health-cmd "wget -qO- http://127.0.0.1:8080/cgi-bin/count | grep -q '[0-9]'" --health-interval 1s \
    lifeboat-test/busybox:1 sh -c "$agent" >/dev/null
  docker run -d --name "$p-web-1" --network "$net" --network-alias web \
    -l com.docker.compose.project="$p" -l com.docker.compose.service=web "$@" \
    -l com.docker.compose.depends_on=agent:service_healthy:false -v "${p}_site:/site" \
    --health-cmd "wget -qO- http://agent:8080/cgi-bin/count | grep -q '[0-9]'" --health-interval 1s \
    -l 'lifeboat.probe=wget -qO- http://127.0.0.1/index.html | grep -q index' \
    lifeboat-test/busybox:1 httpd -f -p 80 -h /site >/dev/null
  for c in db agent web; do
    until [ "$(docker inspect -f '{{.State.Health.Status}}' "$p-$c-1")" = healthy ]; do sleep 0.5; done
  done
}

# stack_down P: removes the stack's containers, volumes and network.
stack_down() {
  docker rm -f "$1-db-1" "$1-agent-1" "$1-web-1" >/dev/null 2>&1 || true
  docker volume rm -f "${1}_dbdata" "${1}_agentstate" "${1}_site" >/dev/null 2>&1 || true
  docker network rm "${1}_default" >/dev/null 2>&1 || true
}

# Cluster benchmarks. cluster_setup TAG ETCD_PORT API_PORT: sets WORK (removed at exit, with
# every daemon started and the etcd), ETCD, endpoints, the API token; starts a 3-member etcd
# (scripts/etcd) and initialises the shared repository in $WORK/s1.
cluster_setup() {
  WORK="$(mktemp -d "/tmp/lifeboat-$1.XXXXXX")"
  ETCD="$WORK/etcd"
  MEMBER_PORT_BASE="$3"
  pids=()
  trap cluster_cleanup EXIT
  scripts/etcd start "$ETCD" "$2" >/dev/null
  endpoints="$(sed 's/.*/"&"/' "$ETCD/endpoints" | paste -sd, -)"
  export LIFEBOAT_API_TOKEN=bench-token-0123456789
  LIFEBOAT_STATE_DIR="$WORK/s1" "$LB" init >/dev/null 2>&1
}
cluster_cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 1
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  scripts/etcd stop "$ETCD" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
# member_port H: host hH's API port
member_port() { echo $((MEMBER_PORT_BASE + $1)); }
# member_config H [DAEMON_LINE...]: host hH's config (the shared repository, lease_ttl $TTL)
member_config() {
  local h="$1"
  shift
  mkdir -p "$WORK/s$h"
  {
    echo "[daemon]"
    printf '%s\n' "$@"
    cat <<CONF
[cluster]
etcd = [$endpoints]
host = "h$h"
lease_ttl = "$TTL"
[repository]
location = "$WORK/s1/repository"
password_file = "$WORK/s1/repository.key"
CONF
  } >"$WORK/s$h/lifeboat.toml"
}
# member_start H: starts host hH's release daemon (its pid in pids[H])
member_start() {
  LIFEBOAT_STATE_DIR="$WORK/s$1" "$LB" --config "$WORK/s$1/lifeboat.toml" daemon \
    --listen "127.0.0.1:$(member_port "$1")" 2>"$WORK/d$1.log" &
  pids[$1]=$!
}
# member_api H PATH: GET PATH from host hH's API
member_api() {
  curl -sf -m 2 -H "Authorization: Bearer $LIFEBOAT_API_TOKEN" "http://127.0.0.1:$(member_port "$1")$2"
}
