# Shared pieces of the distributed-mode benches (sourced by bench/node_crash.sh and
# bench/vs_patroni.sh): free loopback ports, one etcd, a pgha cluster of 3 `pgha agent`s +
# `pgha proxy` (ttl 3 s, safety margin 1 s, loop_wait 500 ms unless PGHA_TTL_MS,
# PGHA_SAFETY_MARGIN_MS, PGHA_LOOP_WAIT_MS say otherwise), waiting for a 3-member cluster to
# converge, resident memory; the clock, medians and the write-unavailable window come from
# bench/lib/common.sh. Needs: bin (the pgha binary), etcd_bin, stall_ms.
# Not a script of its own: `source bench/lib/dist.sh`.

# shellcheck source=bench/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# N free loopback ports in 16000..32000 (below the ephemeral range), one line, space-separated.
free_ports() {
  python3 - "$1" <<'EOF'
import random, socket, sys
n, ports = int(sys.argv[1]), []
while len(ports) < n:
    p = random.randrange(16000, 32000)
    if p in ports:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); ports.append(p)
    except OSError:
        pass
    finally:
        s.close()
print(" ".join(map(str, ports)))
EOF
}

# HTTP status of GET http://$1$2 (empty when nothing answers within 2 s).
code() { curl -s -o /dev/null -m 2 -w '%{http_code}' "http://$1$2" 2>/dev/null || true; }

# One etcd in $1/etcd on ports $2 (client) and $3 (peer); sets etcd_pid and etcd_url.
etcd_pid=""; etcd_url=""
etcd_start() {
  "$etcd_bin" --name=bench --data-dir="$1/etcd" \
    --listen-client-urls="http://127.0.0.1:$2" --advertise-client-urls="http://127.0.0.1:$2" \
    --listen-peer-urls="http://127.0.0.1:$3" --initial-advertise-peer-urls="http://127.0.0.1:$3" \
    --initial-cluster="bench=http://127.0.0.1:$3" --initial-cluster-state=new \
    --heartbeat-interval=50 --election-timeout=500 --unsafe-no-fsync >"$1/etcd.log" 2>&1 &
  etcd_pid=$!
  etcd_url="http://127.0.0.1:$2"
  local _
  for _ in $(seq 1 300); do
    curl -sf "$etcd_url/health" 2>/dev/null | grep -q '"health":"true"' && return 0
    sleep 0.1
  done
  echo "etcd did not become healthy; its log:" >&2; tail -n 20 "$1/etcd.log" >&2; return 1
}
etcd_stop() {
  [ -n "$etcd_pid" ] || return 0
  kill -TERM "$etcd_pid" 2>/dev/null || true
  wait "$etcd_pid" 2>/dev/null || true
  etcd_pid=""
}

# await_leader CHECK WHAT DIR TIMEOUT_S PAUSE_S: runs CHECK every PAUSE_S s until it prints the
# leader's number, and prints it; after CONVERGE_TIMEOUT_S (default TIMEOUT_S) says that WHAT did
# not converge, shows the last lines of DIR/node*.log and exits.
await_leader() {
  local check=$1 what=$2 dir=$3 deadline=$(( $(date +%s) + ${CONVERGE_TIMEOUT_S:-$4} )) pause=$5 p
  while :; do
    p=$("$check")
    [ -n "$p" ] && { echo "$p"; return; }
    if [ "$(date +%s)" -gt "$deadline" ]; then
      echo "$what did not converge; logs:" >&2; tail -n 20 "$dir"/node*.log >&2; exit 1
    fi
    sleep "$pause"
  done
}
# primary_among API1 API2 API3: the number (1..3) of the first member whose REST API answers
# /primary with 200, "?" when none does.
primary_among() {
  local i=0 a
  for a in "$@"; do
    i=$((i + 1))
    [ "$(code "$a" /primary)" = 200 ] && { echo "$i"; return; }
  done
  echo "?"
}

# --- pgha cluster: 3 agents + proxy --------------------------------------------------------
declare -a agent_pid=() api=() pgport=()
proxy_pid=""; pgha_dir=""; pgha_rw=""; pgha_ro=""; pgha_pw=""

# pgha_setup DIR CLUSTER_NAME: configs for node1..3 in DIR (etcd at $etcd_url), 8 fresh ports.
pgha_setup() {
  pgha_dir=$1
  local name=$2 i
  mkdir -p "$pgha_dir"
  chmod 755 "$pgha_dir"
  local -a p
  read -r -a p <<<"$(free_ports 8)"
  pgha_rw=${p[0]}; pgha_ro=${p[1]}
  pgha_pw="bench-su-$RANDOM$RANDOM"
  cat >"$pgha_dir/secrets.toml" <<EOF
superuser_password = "$pgha_pw"
replication_password = "bench-repl-$RANDOM$RANDOM"
api_token = "bench-token-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
EOF
  chmod 600 "$pgha_dir/secrets.toml"
  for i in 1 2 3; do
    pgport[$i]=${p[$((2 * i))]}
    api[$i]="127.0.0.1:${p[$((2 * i + 1))]}"
    # No TLS, as the Patroni side of these benches runs without it (stated in docs/benchmarks.md).
    cat >"$pgha_dir/node$i.toml" <<EOF
insecure_no_tls = true
[cluster]
name = "$name"
[etcd]
endpoints = ["$etcd_url"]
[member]
name = "node$i"
dir = "$pgha_dir/node$i"
host = "127.0.0.1"
port = ${pgport[$i]}
api = "${api[$i]}"
[secrets]
file = "$pgha_dir/secrets.toml"
[postgresql.parameters]
fsync = "off"
shared_buffers = "16MB"
[proxy]
rw_listen = "127.0.0.1:$pgha_rw"
ro_listen = "127.0.0.1:$pgha_ro"
[dynamic]
ttl_ms = ${PGHA_TTL_MS:-3000}
safety_margin_ms = ${PGHA_SAFETY_MARGIN_MS:-1000}
loop_wait_ms = ${PGHA_LOOP_WAIT_MS:-500}
EOF
  done
}
pgha_url() { echo "postgresql://postgres:$pgha_pw@127.0.0.1:$pgha_rw/postgres?connect_timeout=2"; }
start_agent() { # $1 = member number
  "$bin" agent --config "$pgha_dir/node$1.toml" >>"$pgha_dir/node$1.log" 2>&1 &
  agent_pid[$1]=$!
}
start_proxy() {
  "$bin" proxy --config "$pgha_dir/node1.toml" >>"$pgha_dir/proxy.log" 2>&1 &
  proxy_pid=$!
}
# The postmaster's pid of member $1 (empty when it has none).
pgha_postmaster() { head -1 "$pgha_dir/node$1/data/postmaster.pid" 2>/dev/null || true; }
# Prints the leader's number once one member answers /primary and the others /replica.
converged() {
  local leader="" n=0 i
  for i in 1 2 3; do
    if [ "$(code "${api[$i]}" /primary)" = 200 ]; then leader=$i; n=$((n + 1)); fi
  done
  [ "$n" = 1 ] || return 0
  for i in 1 2 3; do
    [ "$i" = "$leader" ] && continue
    [ "$(code "${api[$i]}" /replica)" = 200 ] || return 0
  done
  echo "$leader"
}
wait_converged() { await_leader converged "pgha cluster" "$pgha_dir" 120 0.2; }
# stop_members DIR POSTMASTER_FN TIMEOUT_S PID...: TERM to the members' managers PID... (empty
# ones skipped), KILL to each still there after TIMEOUT_S, then, when DIR is set, QUIT to any
# postmaster left (POSTMASTER_FN N prints member N's).
stop_members() {
  local dir=$1 pm_of=$2 tenths=$(( $3 * 10 )) i p _
  shift 3
  for p in "$@"; do
    [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true
  done
  for p in "$@"; do
    [ -z "$p" ] && continue
    for _ in $(seq 1 "$tenths"); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  [ -n "$dir" ] || return 0
  for i in 1 2 3; do
    p=$("$pm_of" "$i")
    [ -n "$p" ] && kill -QUIT "$p" 2>/dev/null || true
  done
}
# Stops the proxy and the agents (TERM, then KILL after 15 s), then any postmaster left.
pgha_stop_all() {
  [ -n "$proxy_pid" ] && kill -TERM "$proxy_pid" 2>/dev/null || true
  stop_members "$pgha_dir" pgha_postmaster 15 "${agent_pid[@]:1:3}"
  [ -n "$proxy_pid" ] && { wait "$proxy_pid" 2>/dev/null || true; }
  agent_pid=(); proxy_pid=""
}

# Resident memory of process $1 in MB ("?" when it is gone).
rss() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }
