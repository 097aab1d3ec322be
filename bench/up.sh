#!/usr/bin/env bash
# Measures `pgha up` on an empty directory until every standby streams (median of RUNS runs),
# the resident memory of the pgha process once the cluster is up, and the clean shutdown time.
# Usage: bench/up.sh [RUNS] [MEMBERS]        (defaults: 5 runs, 3 members; default PostgreSQL settings;
#        env: BIN=path to pgha, NO_BUILD=1 to use the existing release binary)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
members="${2:-3}"
# shellcheck source=bench/lib/common.sh
source bench/lib/common.sh
pgha_build
make_work pgha-bench-up
trap 'rm -rf "$work"' EXIT

port=$((40000 + RANDOM % 15000))
ups=(); rss=(); downs=()
for i in $(seq 1 "$runs"); do
  dir="$work/c$i"
  out="$work/out$i"
  t0=$(now)
  "$bin" up --dir "$dir" --members "$members" --port "$port" >"$out" 2>&1 &
  pid=$!
  until grep -q " is up:" "$out"; do
    kill -0 "$pid" 2>/dev/null || { cat "$out"; echo "pgha up exited early" >&2; exit 1; }
    sleep 0.01
  done
  t1=$(now)
  sleep 2
  r=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  t2=$(now)
  kill -TERM "$pid"
  wait "$pid"
  t3=$(now)
  up=$(echo "$t1 - $t0" | bc -l); down=$(echo "$t3 - $t2" | bc -l)
  printf 'run %d: up %.2f s, pgha RSS %d kB, shutdown %.2f s\n' "$i" "$up" "$r" "$down"
  ups+=("$up"); rss+=("$r"); downs+=("$down")
  rm -rf "$dir"
done
echo
printf 'pgha up, %d members, %d runs: median %.2f s to all standbys streaming; pgha RSS median %d kB; shutdown median %.2f s\n' \
  "$members" "$runs" "$(median "${ups[@]}")" "$(median "${rss[@]}")" "$(median "${downs[@]}")"
