#!/usr/bin/env bash
# Durability under primary kills, per synchronous mode, on a 3-member `pgha up` cluster: `pgha
# chaos` (the real binary) injects kill-primary (kill -9 of the primary's postmaster) and
# crash-primary (its member stopped as by a crash: agent gone, PostgreSQL stopped immediately)
# while two writers commit through the read-write entry point and record every acknowledged
# id; after each campaign every acknowledged row must be on the final primary. Modes
# alternate (strict, on, off), the order rotating each round; one campaign of FAULTS faults
# per mode and round, each with its own seed (printed, and in its JSON).
# Usage: bench/durability.sh [ROUNDS]   (default 2; env: FAULTS=10, OUT_DIR=where the raw
#        chaos JSON and logs go (default: a temporary directory, removed), PORT=base port,
#        BIN=path to pgha, NO_BUILD=1 to use the existing release binary)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-2}"
faults="${FAULTS:-10}"
# shellcheck source=bench/lib/up_cluster.sh
source bench/lib/up_cluster.sh
pgha_build
make_work pgha-bench-durability
dir="$work/c"
port="${PORT:-$((20000 + RANDOM % 10000))}"
out="${OUT_DIR:-$work/out}"
mkdir -p "$out"
cleanup() { up_stop; rm -rf "$work"; }
trap cleanup EXIT

echo "pgha up: 3 members, fsync=off, shared_buffers=32MB; pgha chaos --faults kill-primary,crash-primary --rounds $faults, 2 writers, $rounds rounds"
up_start "$out/up.log" --param fsync=off --param shared_buffers=32MB
wait_until "the cluster to converge" up_converged >/dev/null

modes=(strict on off)
broken=0
for ((r = 0; r < rounds; r++)); do
  for ((i = 0; i < ${#modes[@]}; i++)); do
    m="${modes[$(( (i + r) % ${#modes[@]} ))]}"
    "$bin" config set --dir "$dir" synchronous_mode="$m" >/dev/null
    wait_until "synchronous_mode=$m" up_converged >/dev/null
    seed=$((20261205 + 100 * r + i))
    name="round$((r + 1))-$m"
    rc=0
    "$bin" chaos --dir "$dir" --faults kill-primary,crash-primary --rounds "$faults" \
      --seed "$seed" --json >"$out/$name.json" 2>"$out/$name.log" || rc=$?
    echo "$rc" >"$out/$name.rc"
    # 0: every promise kept; 4: acknowledged writes lost where none is promised (off); 3: a
    # promise broken (said in the summary, and the exit status).
    [ "$rc" = 3 ] && broken=1
    if [ "$rc" != 0 ] && [ "$rc" != 3 ] && [ "$rc" != 4 ]; then
      echo "pgha chaos exited $rc in $name (see $out/$name.log):" >&2
      tail -20 "$out/$name.log" >&2
      exit 1
    fi
    python3 - "$out/$name.json" "$r" "$m" "$seed" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
f = [x for x in d["faults"] if x.get("unavailable_ms") is not None]
print(f"round {int(sys.argv[2]) + 1}  {sys.argv[3]:<7} seed {sys.argv[4]}  faults {len(d['faults'])}  "
      f"acknowledged {d['writes_acknowledged']}  lost {d['lost']}  two writers {d['two_writers']}  "
      f"verdict {d['verdict']}")
PY
    wait_until "the cluster to converge" up_converged >/dev/null
  done
done

python3 bench/lib/durability_summary.py "$out" "${modes[@]}"
if [ "$broken" = 1 ]; then
  echo "a promise was broken (verdict broken in a campaign above): see the chaos JSON in $out" >&2
  exit 3
fi
