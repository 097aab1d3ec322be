#!/usr/bin/env bash
# Long `pgha chaos` campaigns, one per replication mode, each against a fresh 3-member
# `pgha up` cluster, writing the raw results (JSON, gzipped HTML timeline, event log, exit status)
# and a summary table per mode and fault kind.
#   off     asynchronous replication (acknowledged writes may be lost: reported, not a failure)
#   on      synchronous_mode=on  (FIRST 1)
#   strict  synchronous_mode=strict (FIRST 1)
#   quorum  synchronous_mode=on, synchronous_method=quorum (ANY 1)
# Usage: bench/chaos.sh [DURATION]   (per mode, default 15m; e.g. 90s, 10m, 1h)
#   env: ROUNDS=N (N faults per mode instead of a duration), MODES="off on strict quorum",
#        FAULTS=all (or a list, see `pgha chaos --help`),
#        SEED (default: from the clock; printed), WRITERS=2, FSYNC=on, MAX_WAL_SIZE=256MB,
#        OUT=bench/results/<date>-chaos, PORT=base port, BIN=path to pgha (default: build
#        target/release/pgha), NO_BUILD=1 to use the existing target/release/pgha
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-15m}"
modes="${MODES:-off on strict quorum}"
faults="${FAULTS:-all}"
seed="${SEED:-$(date +%s)}"
writers="${WRITERS:-2}"
fsync="${FSYNC:-on}"
max_wal="${MAX_WAL_SIZE:-256MB}"
out="${OUT:-bench/results/$(date -u +%Y-%m-%d)-chaos}"
source bench/lib/up_cluster.sh
pgha_build
mkdir -p "$out"
out="$(cd "$out" && pwd)"
make_work pgha-bench-chaos
port="${PORT:-$((20000 + RANDOM % 10000))}"
dir=""; chaos_pid=""
stop_cluster() {
  if [ -n "$chaos_pid" ]; then
    kill -TERM "$chaos_pid" 2>/dev/null || true   # like Ctrl-C: it cleans up and reports
    wait "$chaos_pid" 2>/dev/null || true
    chaos_pid=""
  fi
  up_stop
}
cleanup() { stop_cluster; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

{
  echo "# bench/chaos.sh $duration  (ROUNDS=${ROUNDS:-} MODES=\"$modes\" FAULTS=$faults SEED=$seed WRITERS=$writers FSYNC=$fsync MAX_WAL_SIZE=$max_wal)"
  echo "# started $(date -u +%FT%TZ) on $(nproc) cores; $("$bin" --version); commit $(git rev-parse --short HEAD)"
} | tee "$out/run.txt"

for mode in $modes; do
  case "$mode" in
    off) args=() ;;
    on) args=(--synchronous-mode on) ;;
    strict) args=(--synchronous-mode strict) ;;
    quorum) args=(--synchronous-mode on --synchronous-method quorum) ;;
    *) echo "unknown mode $mode (off, on, strict, quorum)" >&2; exit 2 ;;
  esac
  dir="$work/$mode"
  # max_wal_size bounds each member's pg_wal (the campaign writes without pause; at the
  # default 1GB three members took more than this machine's shared disk had free).
  up_start "$out/$mode.up.log" --param "fsync=$fsync" --param shared_buffers=64MB \
    --param "max_wal_size=$max_wal" "${args[@]}"
  wait_until "the $mode cluster to converge" up_converged
  if [ -n "${ROUNDS:-}" ]; then length=(--rounds "$ROUNDS"); else length=(--duration "$duration"); fi
  cmd=("$bin" chaos --dir "$dir" "${length[@]}" --faults "$faults" --seed "$seed"
       --writers "$writers" --json --report "$out/$mode.html")
  echo "== $mode: ${cmd[*]}" | tee -a "$out/run.txt"
  t0=$(date +%s)
  set +e
  "${cmd[@]}" > "$out/$mode.json" 2> "$out/$mode.log" &
  chaos_pid=$!
  wait "$chaos_pid"
  rc=$?
  chaos_pid=""
  set -e
  echo "$rc" > "$out/$mode.rc"
  echo "   exit $rc after $(( $(date +%s) - t0 )) s" | tee -a "$out/run.txt"
  stop_cluster
  gzip -9f "$out/$mode.up.log"
  [ -f "$out/$mode.html" ] && gzip -9f "$out/$mode.html"   # raw, kept small (zcat/gunzip to view)
  port=$((port + 20))
done

python3 - "$out" $modes <<'PY' | tee "$out/summary.md"
import json, sys
out, modes = sys.argv[1], sys.argv[2:]
print("| mode | fault | injected | recovered | write-unavailable s (median / p95 / max) | recovery s (median / p95 / max) | old member back s (median / p95 / max) | lost |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
totals = []
for mode in modes:
    try:
        s = json.load(open(f"{out}/{mode}.json"))
    except Exception as e:
        print(f"| {mode} | (no result: {e}) | | | | | | |")
        continue
    sec = lambda d: "-" if d["n"] == 0 else f'{d["median_ms"]/1000:.2f} / {d["p95_ms"]/1000:.2f} / {d["max_ms"]/1000:.2f}'
    for k in s["by_kind"]:
        print(f'| {mode} | {k["kind"]} | {k["injected"]} | {k["recovered"]} | {sec(k["unavailable"])} | {sec(k["recovery"])} | {sec(k["rejoin"])} | {k["lost"]} |')
    totals.append((mode, s))
print()
print("| mode | faults | duration s | writes acknowledged | lost | WAL ranges lost | two-writer intervals | verdict |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for mode, s in totals:
    ranges = "; ".join(f'{r["era"]["member"]} tl {r["era"]["timeline"]}: {r["lsn_from"]}..{r["lsn_to"]} ({r["count"]})' for r in s["lost_ranges"]) or "-"
    print(f'| {mode} | {len(s["faults"])} | {s["duration_s"]:.0f} | {s["writes_acknowledged"]} | {s["lost"]} | {ranges} | {len(s["two_writers"])} | {s["verdict"]} |')
PY
