# Shared pieces of the benches on one `pgha up` cluster (sourced by bench/failover.sh and
# bench/sync.sh): starting it, its status, waiting until it converged, stopping it. Needs: bin
# (the pgha binary, see pgha_build in bench/lib/common.sh, sourced here), dir (the cluster's
# directory), port (its base port). Not a script of its own: `source bench/lib/up_cluster.sh`.

# shellcheck source=bench/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

up_pid=""
# up_start LOG [ARGS...]: `pgha up` of 3 members in dir on port, with ARGS, in the background
# (up_pid), its output into LOG.
up_start() {
  local log=$1; shift
  "$bin" up --dir "$dir" --members 3 --port "$port" "$@" >"$log" 2>&1 &
  up_pid=$!
}
# Stops `pgha up` (TERM, it stops its members), then any postmaster left in dir.
up_stop() {
  if [ -n "$up_pid" ]; then
    kill -TERM "$up_pid" 2>/dev/null || true
    wait "$up_pid" 2>/dev/null || true
    up_pid=""
  fi
  if [ -n "$dir" ]; then
    for d in "$dir"/n*/data; do
      [ -f "$d/postmaster.pid" ] && kill -QUIT "$(head -1 "$d/postmaster.pid")" 2>/dev/null || true
    done
  fi
}
status_json() { "$bin" status --dir "$dir" --json 2>/dev/null || echo '{}'; }
# Prints the primary's name once one primary runs, it is the leader and every other member
# streams; fails (prints nothing) until then.
up_converged() { status_json | converged_primary; }
# wait_until WHAT CMD...: runs CMD every 0.2 s until it succeeds; after 90 s says that it timed
# out waiting for WHAT, shows `pgha status` and exits.
wait_until() {
  local what="$1" deadline=$(( $(date +%s) + 90 )); shift
  until "$@"; do
    [ "$(date +%s)" -gt "$deadline" ] && { echo "timed out waiting for $what" >&2; "$bin" status --dir "$dir" >&2; exit 1; }
    sleep 0.2
  done
}
