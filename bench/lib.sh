# Shared by the benchmark scripts (sourced): timing rows and dropping the page cache.
# Needs $WORK (results go to $WORK/results).

# measure LABEL CMD...: runs CMD under /usr/bin/time, appends "label seconds rss_kib"
measure() {
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >"$WORK/out" 2>"$WORK/err" || {
    echo "FAILED: $label: $*"; cat "$WORK/err"; exit 1; }
  echo "$label $(cat "$WORK/time")" >>"$WORK/results"
}

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

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
