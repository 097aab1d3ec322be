#!/usr/bin/env bash
# Cost of synchronous replication: pgbench tpcb-like against the read-write entry point of a
# 3-member `pgha up` cluster, in one run, switching live with `pgha config set` between
#   async        synchronous_mode=off
#   remote_write synchronous_mode=on, synchronous_commit=remote_write
#   on           synchronous_mode=on, synchronous_commit=on
#   remote_apply synchronous_mode=on, synchronous_commit=remote_apply
# alternating the four ROUNDS times (the order rotates each round), printing tps and average
# latency of every run, then the median per mode and the median of per-round ratios to async.
# Usage: bench/sync.sh [ROUNDS]   (default 3; env: SECONDS_EACH=20, SCALE=10, CLIENTS=8,
#        THREADS=2, FSYNC=on, PORT=base port, BIN=path to pgha (default: build
#        target/release/pgha), NO_BUILD=1 to use the existing target/release/pgha)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
secs="${SECONDS_EACH:-20}"
scale="${SCALE:-10}"
clients="${CLIENTS:-8}"
threads="${THREADS:-2}"
fsync="${FSYNC:-on}"
# shellcheck source=bench/lib/up_cluster.sh
source bench/lib/up_cluster.sh
pgha_build
pgbench="$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | tail -1)"
psql="$(command -v psql || ls /usr/lib/postgresql/*/bin/psql 2>/dev/null | tail -1)"
[ -x "$pgbench" ] || { echo "pgbench not found: install postgresql-client" >&2; exit 1; }
make_work pgha-bench-sync
dir="$work/c"
port="${PORT:-$((20000 + RANDOM % 10000))}"
cleanup() { up_stop; rm -rf "$work"; }
trap cleanup EXIT

# Succeeds when one primary runs, both standbys stream, and the synchronous state matches
# mode $1: off → no sync standby; on → one `sync` standby and both standbys in the set.
settled() {
  status_json | python3 -c '
import json, sys
s = json.load(sys.stdin); ms = s.get("members", []); mode = sys.argv[1]
p = [m for m in ms if m["role"] == "primary" and m["state"] == "running"]
st = [m for m in ms if m["state"] == "streaming"]
sync = s.get("synchronous") or {}
states = [m.get("sync_state") for m in st]
ok = len(p) == 1 and len(st) == len(ms) - 1 and sync.get("mode") == mode
if mode == "off": ok = ok and all(x == "async" for x in states)
else: ok = ok and states.count("sync") == 1 and len(sync.get("set") or []) == len(st)
sys.exit(0 if ok else 1)' "$1"
}

echo "pgha up: 3 members, fsync=$fsync, shared_buffers=64MB; pgbench -s $scale -c $clients -j $threads -T $secs, $rounds rounds"
up_start "$work/up.log" --param fsync="$fsync" --param shared_buffers=64MB --param max_connections=50
wait_until "the cluster" settled off
url="$("$bin" url --dir "$dir")"
"$pgbench" -i -q -s "$scale" "$url" >/dev/null 2>&1

commit_level() { "$psql" "$url" -XAtc "SHOW synchronous_commit"; }
switch_to() {  # mode: async | remote_write | on | remote_apply
  if [ "$1" = async ]; then
    "$bin" config set --dir "$dir" synchronous_mode=off synchronous_commit=on >/dev/null
    wait_until "async" settled off
    level=on
  else
    "$bin" config set --dir "$dir" synchronous_mode=on synchronous_commit="$1" >/dev/null
    wait_until "synchronous $1" settled on
    level="$1"
  fi
  wait_until "synchronous_commit=$level" test "$(commit_level)" = "$level"
}

modes=(async remote_write on remote_apply)
results="$work/results"
: >"$results"
for ((r = 0; r < rounds; r++)); do
  for ((i = 0; i < ${#modes[@]}; i++)); do
    m="${modes[$(( (i + r) % ${#modes[@]} ))]}"
    switch_to "$m"
    out="$("$pgbench" -n -c "$clients" -j "$threads" -T "$secs" "$url" 2>&1)"
    tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | head -1)"
    lat="$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' <<<"$out")"
    [ -n "$tps" ] || { echo "pgbench failed:" >&2; echo "$out" >&2; exit 1; }
    printf 'round %d  %-13s tps %9.1f  latency %7.2f ms\n' "$((r + 1))" "$m" "$tps" "$lat"
    echo "$r $m $tps $lat" >>"$results"
  done
done

python3 - "$results" <<'EOF'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
modes = ["async", "remote_write", "on", "remote_apply"]
by = {m: [(int(r), float(t), float(l)) for r, mm, t, l in rows if mm == m] for m in modes}
base = {r: t for r, t, _ in by["async"]}
print("\nmode           median tps  median latency  tps vs async (median of per-round ratios)")
for m in modes:
    tps = st.median(t for _, t, _ in by[m]); lat = st.median(l for _, _, l in by[m])
    ratio = st.median(t / base[r] for r, t, _ in by[m])
    print(f"{m:<13} {tps:11.1f} {lat:12.2f} ms  {ratio:8.2f}")
EOF
