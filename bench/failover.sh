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
#        NO_BUILD=1 to use the existing target/release binaries)
# Targets (issue 5): stop <= 2 s, switchover <= 1 s, kill -9 <= 2 s.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
stall_ms="${STALL_MS:-200}"
[ "${NO_BUILD:-0}" = 1 ] || cargo build --release -q -p pgha --example write_probe --bin pgha
bin="$PWD/target/release/pgha"
probe_bin="$PWD/target/release/examples/write_probe"
work="$(mktemp -d /tmp/pgha-bench-failover.XXXXXX)"
chmod 755 "$work"
dir="$work/c"
port="${PORT:-$((20000 + RANDOM % 10000))}"
up_pid=""; probe_pid=""
cleanup() {
  [ -n "$probe_pid" ] && kill "$probe_pid" 2>/dev/null || true
  if [ -n "$up_pid" ]; then
    kill -TERM "$up_pid" 2>/dev/null || true
    wait "$up_pid" 2>/dev/null || true
  fi
  for d in "$dir"/n*/data; do
    [ -f "$d/postmaster.pid" ] && kill -QUIT "$(head -1 "$d/postmaster.pid")" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
status_json() { "$bin" status --dir "$dir" --json 2>/dev/null || echo '{}'; }
# Prints the primary's name once one primary runs and every other member streams.
converged() {
  status_json | python3 -c '
import json, sys
s = json.load(sys.stdin); ms = s.get("members", [])
p = [m["name"] for m in ms if m["role"] == "primary" and m["state"] == "running"]
st = [m for m in ms if m["state"] == "streaming"]
if len(p) == 1 and p[0] == s.get("leader") and len(st) == len(ms) - 1: print(p[0])'
}
wait_converged() {
  local deadline=$(( $(date +%s) + 90 )) p
  while :; do
    p=$(converged || true)
    [ -n "$p" ] && { echo "$p"; return; }
    [ "$(date +%s)" -gt "$deadline" ] && { echo "cluster did not converge" >&2; "$bin" status --dir "$dir" >&2; exit 1; }
    sleep 0.2
  done
}
# Window after event time $1 from the probe log; waits until the writes are back (60 s max).
window() {
  python3 - "$work/probe.log" "$1" "$stall_ms" <<'EOF'
import sys, time
log, t_ev, stall = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]) / 1000
deadline = time.time() + 60
while True:
    rows = []
    for line in open(log):
        p = line.split()
        if len(p) == 3:
            rows.append((float(p[0]), float(p[1]), p[2] == "ok"))
    after = [r for r in rows if r[1] >= t_ev]
    bad = [i for i, r in enumerate(after) if not r[2] or r[1] - r[0] > stall]
    if bad:
        first = after[bad[0]]
        if first[2]:  # a stalled success: unavailable for its own duration
            print(f"{first[1] - first[0]:.3f}"); break
        ok = [r for r in after[bad[0]:] if r[2]]
        if ok:
            print(f"{ok[0][1] - first[0]:.3f}"); break
    elif after and after[-1][0] > t_ev + 5:
        print("0.000"); break  # five seconds of uninterrupted writes: no window
    if time.time() > deadline:
        print("nan"); break
    time.sleep(0.1)
EOF
}

"$bin" up --dir "$dir" --port "$port" --param fsync=off --param shared_buffers=32MB >"$work/up.log" 2>&1 &
up_pid=$!
primary=$(wait_converged)
if [ "${DIRECT:-0}" = 1 ]; then
  resolve="$bin url --password --dir $dir --primary"; mode="direct to the primary"
else
  resolve="$bin url --password --dir $dir"; mode="through the read-write entry point"
fi
"$probe_bin" - 50 "$work/probe.log" "$resolve" &
probe_pid=$!
sleep 2

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
  w=$(window "$t")
  printf '%-10s run %d: primary %s, write-unavailable %s s\n' "$kind" "$2" "$p" "$w"
  results[$kind]+="$w "
  if [ "$kind" = stop ]; then "$bin" start --dir "$dir" "$p" >/dev/null; fi
}
for kind in stop switchover kill9; do
  for i in $(seq 1 "$runs"); do run_event "$kind" "$i"; done
done
wait_converged >/dev/null

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo
echo "pgha failover bench: 3 members, writes every 50 ms $mode, $runs runs each (PostgreSQL $(postgres --version 2>/dev/null | awk '{print $3}'), $(nproc) cores)"
printf '%-12s %-40s %8s %8s\n' event "runs (s)" median target
for kind in stop switchover kill9; do
  case $kind in stop) target=2;; switchover) target=1;; kill9) target=2;; esac
  # shellcheck disable=SC2086
  printf '%-12s %-40s %8.2f %8s\n' "$kind" "${results[$kind]}" "$(median ${results[$kind]})" "<= $target"
done
