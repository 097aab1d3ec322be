#!/usr/bin/env bash
# Node crash in distributed mode: 3 `pgha agent`s + one etcd on loopback (ttl 3 s, loop_wait
# 500 ms, safety margin 1 s); a client (crates/pgha/examples/write_probe.rs) writes one row every
# 50 ms through `pgha proxy --config` (read-write listener), reconnecting after a failure. Each
# run kills -9 the leader's agent AND its postmaster in one command, measures the
# write-unavailable window, restarts the killed agent and waits until it streams again.
# Window = from the start of the first write attempt that failed (or stalled more than STALL_MS)
# after the kill to the end of the next successful write; "from kill" = from the kill to the end
# of the first successful write started after it. Also reports each agent's resident memory.
# Usage: bench/node_crash.sh [RUNS]   (default 5; env: STALL_MS=200, NO_BUILD=1 to use the
#        existing release binaries, CARGO_TARGET_DIR as for cargo, PGHA_ETCD_BIN=etcd)
# Target (issue 3): median window <= ttl + 1 s = 4 s; agent RSS < 30 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
stall_ms="${STALL_MS:-200}"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
[ "${NO_BUILD:-0}" = 1 ] || cargo build --release -q -p pgha --example write_probe --bin pgha
bin="$target_dir/release/pgha"
probe_bin="$target_dir/release/examples/write_probe"
etcd_bin="${PGHA_ETCD_BIN:-etcd}"
work="$(mktemp -d /tmp/pgha-bench-crash.XXXXXX)"
chmod 755 "$work"
pw="bench-su-$RANDOM$RANDOM"

declare -a agent_pid
etcd_pid=""; proxy_pid=""; probe_pid=""
cleanup() {
  [ -n "$probe_pid" ] && kill "$probe_pid" 2>/dev/null || true
  [ -n "$proxy_pid" ] && kill -TERM "$proxy_pid" 2>/dev/null || true
  for i in 1 2 3; do
    [ -n "${agent_pid[$i]:-}" ] && kill -TERM "${agent_pid[$i]}" 2>/dev/null || true
  done
  for i in 1 2 3; do
    p="${agent_pid[$i]:-}"
    [ -z "$p" ] && continue
    for _ in $(seq 1 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  for d in "$work"/node*/data; do
    [ -f "$d/postmaster.pid" ] && kill -QUIT "$(head -1 "$d/postmaster.pid")" 2>/dev/null || true
  done
  [ -n "$etcd_pid" ] && { kill -TERM "$etcd_pid" 2>/dev/null || true; wait "$etcd_pid" 2>/dev/null || true; }
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# 12 free loopback ports below 32768.
read -r -a ports <<<"$(python3 - <<'EOF'
import random, socket
ports = []
while len(ports) < 12:
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
)"
etcd_client=${ports[0]}; etcd_peer=${ports[1]}; rw=${ports[2]}; ro=${ports[3]}

"$etcd_bin" --name=bench --data-dir="$work/etcd" \
  --listen-client-urls="http://127.0.0.1:$etcd_client" --advertise-client-urls="http://127.0.0.1:$etcd_client" \
  --listen-peer-urls="http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer" \
  --initial-cluster="bench=http://127.0.0.1:$etcd_peer" --initial-cluster-state=new \
  --heartbeat-interval=50 --election-timeout=500 --unsafe-no-fsync >"$work/etcd.log" 2>&1 &
etcd_pid=$!
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$etcd_client/health" 2>/dev/null | grep -q '"health":"true"' && break
  sleep 0.1
done

cat >"$work/secrets.toml" <<EOF
superuser_password = "$pw"
replication_password = "bench-repl-$RANDOM$RANDOM"
api_token = "bench-token-$RANDOM$RANDOM"
EOF
chmod 600 "$work/secrets.toml"
declare -a api pgport
for i in 1 2 3; do
  pgport[$i]=${ports[$((2 + 2 * i))]}
  api[$i]="127.0.0.1:${ports[$((3 + 2 * i))]}"
  cat >"$work/node$i.toml" <<EOF
[cluster]
name = "bench"
[etcd]
endpoints = ["http://127.0.0.1:$etcd_client"]
[member]
name = "node$i"
dir = "$work/node$i"
host = "127.0.0.1"
port = ${pgport[$i]}
api = "${api[$i]}"
[secrets]
file = "$work/secrets.toml"
[postgresql.parameters]
fsync = "off"
shared_buffers = "16MB"
[proxy]
rw_listen = "127.0.0.1:$rw"
ro_listen = "127.0.0.1:$ro"
[dynamic]
ttl_ms = 3000
safety_margin_ms = 1000
loop_wait_ms = 500
EOF
done

start_agent() { # $1 = member number
  "$bin" agent --config "$work/node$1.toml" >>"$work/node$1.log" 2>&1 &
  agent_pid[$1]=$!
}
code() { curl -s -o /dev/null -m 2 -w '%{http_code}' "http://$1$2" 2>/dev/null || true; }
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
wait_converged() {
  local deadline=$(( $(date +%s) + 120 )) p
  while :; do
    p=$(converged)
    [ -n "$p" ] && { echo "$p"; return; }
    if [ "$(date +%s)" -gt "$deadline" ]; then
      echo "cluster did not converge; agent logs:" >&2; tail -n 20 "$work"/node*.log >&2; exit 1
    fi
    sleep 0.2
  done
}
now() { date +%s.%N; }
# Window after the kill at $1, from the probe log; waits until the writes are back (60 s max).
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
rss() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }

t0=$(now)
for i in 1 2 3; do start_agent "$i"; done
wait_converged >/dev/null
boot=$(python3 -c "print(f'{$(now) - $t0:.1f}')")
"$bin" proxy --config "$work/node1.toml" >>"$work/proxy.log" 2>&1 &
proxy_pid=$!
"$probe_bin" "postgresql://postgres:$pw@127.0.0.1:$rw/postgres?connect_timeout=2" 50 "$work/probe.log" &
probe_pid=$!
sleep 2

windows=(); from_kill=()
for run in $(seq 1 "$runs"); do
  leader=$(wait_converged)
  sleep 1
  pm=$(head -1 "$work/node$leader/data/postmaster.pid")
  t=$(now)
  kill -9 "${agent_pid[$leader]}" "$pm"
  wait "${agent_pid[$leader]}" 2>/dev/null || true
  read -r w fk <<<"$(window "$t")"
  new=""
  for i in 1 2 3; do [ "$(code "${api[$i]}" /primary)" = 200 ] && new=$i; done
  printf 'run %d: killed node%s (agent + postmaster), write-unavailable %s s (%s s from the kill), new leader node%s\n' \
    "$run" "$leader" "$w" "$fk" "${new:-?}"
  windows+=("$w"); from_kill+=("$fk")
  start_agent "$leader"
done
wait_converged >/dev/null
sleep 2
mem=""
for i in 1 2 3; do mem+="node$i $(rss "${agent_pid[$i]}") MB, "; done
proxy_mem=$(rss "$proxy_pid")

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo
echo "pgha node-crash bench (distributed): 3 agents + etcd $("$etcd_bin" --version 2>/dev/null | awk 'NR==1{print $3}'), ttl 3 s, loop_wait 500 ms, safety margin 1 s,"
echo "writes every 50 ms through pgha proxy, $runs runs (PostgreSQL $(postgres --version 2>/dev/null | awk '{print $3}'), $(nproc) cores); bootstrap took $boot s"
printf 'write-unavailable window (s): %s -> median %.2f (target <= 4)\n' "${windows[*]}" "$(median "${windows[@]}")"
printf 'from the kill (s):            %s -> median %.2f\n' "${from_kill[*]}" "$(median "${from_kill[@]}")"
echo "agent RSS (release, converged after the runs): ${mem%, }; proxy ${proxy_mem} MB (target < 30 MB per agent)"
