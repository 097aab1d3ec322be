# Pieces every bench uses: the clock, medians, the release binaries, and the write-unavailable
# window from a write_probe log. Not a script of its own: `source bench/lib/common.sh` from the
# repository root (bench/lib/dist.sh and bench/lib/up_cluster.sh source it themselves).

now() { date +%s.%N; }
# converged_primary [N]: reads `pgha status --json` on stdin; prints the primary's name once
# one primary runs, it is the leader and every other member streams (and, with N, the status
# lists N members); fails, printing nothing, until then.
converged_primary() {
  python3 -c '
import json, sys
try:
    s = json.load(sys.stdin)
except ValueError:
    sys.exit(1)
ms = s.get("members", [])
want = int(sys.argv[1]) if len(sys.argv) > 1 else len(ms)
p = [m["name"] for m in ms if m["role"] == "primary" and m["state"] == "running"]
st = [m for m in ms if m["state"] == "streaming"]
if len(ms) == want and len(p) == 1 and p[0] == s.get("leader") and len(st) == len(ms) - 1:
    print(p[0])
else:
    sys.exit(1)' "$@"
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# make_work NAME: sets work to a fresh directory /tmp/NAME.XXXXXX that the postgres OS user can
# enter (the members' data directories go below it).
make_work() {
  work="$(mktemp -d "/tmp/$1.XXXXXX")"
  chmod 755 "$work"
}

# pgha_build [--probe]: sets bin to the release pgha (BIN when set, else CARGO_TARGET_DIR's or
# target/'s release/pgha, built first with cargo unless NO_BUILD=1); with --probe also probe_bin
# to the write_probe example (crates/pgha/examples/write_probe.rs), built along.
pgha_build() {
  local target_dir="${CARGO_TARGET_DIR:-$PWD/target}" probe=0
  local -a what=()
  [ "${1:-}" = --probe ] && probe=1
  [ -n "${BIN:-}" ] || what+=(--bin pgha)
  [ "$probe" = 1 ] && what+=(--example write_probe)
  if [ "${NO_BUILD:-0}" != 1 ] && [ "${#what[@]}" -gt 0 ]; then
    cargo build --release -q -p pgha "${what[@]}"
  fi
  bin="${BIN:-$target_dir/release/pgha}"
  if [ "$probe" = 1 ]; then probe_bin="$target_dir/release/examples/write_probe"; fi
}

# probe_start TARGET [RESOLVE]: starts the write_probe (probe_bin, see pgha_build --probe) in
# the background, one write every 50 ms to TARGET ("-": to what the command RESOLVE prints,
# asked again after every failure), logging each to $work/probe.log; sets probe_pid and gives
# it 2 s to connect.
probe_start() {
  "$probe_bin" "$1" 50 "$work/probe.log" "${@:2}" &
  probe_pid=$!
  sleep 2
}
# probe_stop: stops the write_probe if probe_start started it (for a cleanup trap).
probe_stop() { [ -n "${probe_pid:-}" ] && kill "$probe_pid" 2>/dev/null || true; }

# How long a write may take before window counts it as unavailable, in ms (STALL_MS).
stall_ms="${stall_ms:-${STALL_MS:-200}}"

# window LOG T_EVENT: waits (up to WINDOW_DEADLINE_S, default 120 s) until the writes in the
# write_probe log LOG are back after the event at T_EVENT and prints "WINDOW FROM_EVENT":
# WINDOW = from the start of the first write attempt that failed (or stalled more than
# $stall_ms) after the event to the end of the next successful write (0.000 when none failed
# or stalled in the 5 s after the event); FROM_EVENT = from the event to the end of the first
# successful write after the failure (or, with no failure, the first one started after it).
window() {
  python3 - "$1" "$2" "$stall_ms" "${WINDOW_DEADLINE_S:-120}" <<'EOF'
import sys, time
log, t_ev, stall, limit = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]) / 1000, float(sys.argv[4])
deadline = time.time() + limit
while True:
    rows = []
    for line in open(log):
        p = line.split()
        if len(p) == 3:
            rows.append((float(p[0]), float(p[1]), p[2] == "ok"))
    after = [r for r in rows if r[1] >= t_ev]
    bad = [i for i, r in enumerate(after) if not r[2] or r[1] - r[0] > stall]
    first_ok = [r for r in after if r[2] and r[0] >= t_ev]
    if bad:
        first = after[bad[0]]
        ok = [r for r in after[bad[0]:] if r[2]]
        if first[2] or ok:
            w = first[1] - first[0] if first[2] else ok[0][1] - first[0]
            fk = ok[0][1] - t_ev if ok else first[1] - t_ev
            print(f"{w:.3f} {fk:.3f}"); break
    elif first_ok and after[-1][0] > t_ev + 5:
        print(f"0.000 {first_ok[0][1] - t_ev:.3f}"); break
    if time.time() > deadline:
        print("nan nan"); break
    time.sleep(0.1)
EOF
}
