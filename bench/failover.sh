#!/usr/bin/env bash
# Write-unavailable window of a 3-member `pgha up` cluster, median of RUNS runs each, for
#   (a) `pgha stop` of the primary, (b) `pgha switchover`, (c) kill -9 of the primary's postmaster.
# A client (crates/pgha/examples/write_probe.rs) writes one row every 50 ms on one connection
# through the read-write entry point (`pgha url --password --dir DIR`: the probe is
# tokio-postgres, which reads no libpq password file; with DIRECT=1, straight to the primary,
# re-resolved with `pgha url --password --primary` after every failure), reconnecting after a
# failure. Window = from the start of the first write attempt that failed (or stalled more than
# STALL_MS) after the event, to the end of the next successful write.
# Usage: bench/failover.sh [RUNS]     (default 5; env: DIRECT=1, STALL_MS=200, PORT=base port,
#        BIN=path to pgha, NO_BUILD=1 to use the existing release binaries (target/ or
#        CARGO_TARGET_DIR))
# Targets (issue 5): stop <= 2 s, switchover <= 1 s, kill -9 <= 2 s.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
# shellcheck source=bench/lib/up_cluster.sh
source bench/lib/up_cluster.sh
pgha_build --probe
make_work pgha-bench-failover
dir="$work/c"
port="${PORT:-$((20000 + RANDOM % 10000))}"
cleanup() {
  probe_stop
  up_stop
  rm -rf "$work"
}
trap cleanup EXIT

wait_converged() { wait_until "the cluster to converge" up_converged; }

up_start "$work/up.log" --param fsync=off --param shared_buffers=32MB
primary=$(wait_converged)
if [ "${DIRECT:-0}" = 1 ]; then
  resolve="$bin url --password --dir $dir --primary"; mode="direct to the primary"
else
  resolve="$bin url --password --dir $dir"; mode="through the read-write entry point"
fi
probe_start - "$resolve"

declare -A results
run_event() { # $1 = kind, $2 = run number
  local kind=$1 p t w pid
  p=$(wait_converged)
  sleep 1
  t=$(now)
  case "$kind" in
    stop) "$bin" stop --dir "$dir" "$p" >/dev/null ;;
    switchover) "$bin" switchover --dir "$dir" >/dev/null ;;
    kill9) pid=$(head -1 "$dir/$p/data/postmaster.pid"); kill -9 "$pid" ;;
  esac
  read -r w _ <<<"$(window "$work/probe.log" "$t")"
  printf '%-10s run %d: primary %s, write-unavailable %s s\n' "$kind" "$2" "$p" "$w"
  results[$kind]+="$w "
  if [ "$kind" = stop ]; then "$bin" start --dir "$dir" "$p" >/dev/null; fi
}
for kind in stop switchover kill9; do
  for i in $(seq 1 "$runs"); do run_event "$kind" "$i"; done
done
wait_converged >/dev/null

echo
echo "pgha failover bench: 3 members, writes every 50 ms $mode, $runs runs each (PostgreSQL $(postgres --version 2>/dev/null | awk '{print $3}'), $(nproc) cores)"
printf '%-12s %-40s %8s %8s\n' event "runs (s)" median target
for kind in stop switchover kill9; do
  case $kind in stop) target=2;; switchover) target=1;; kill9) target=2;; esac
  # shellcheck disable=SC2086
  printf '%-12s %-40s %8.2f %8s\n' "$kind" "${results[$kind]}" "$(median ${results[$kind]})" "<= $target"
done
