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
#        existing release binaries, CARGO_TARGET_DIR as for cargo, BIN=path to pgha,
#        PGHA_ETCD_BIN=etcd)
# Target (issue 3): median window <= ttl + 1 s = 4 s; agent RSS < 30 MB.
# The etcd and cluster pieces live in bench/lib/dist.sh (shared with bench/vs_patroni.sh), the
# build and window ones in bench/lib/common.sh (shared with every bench).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
etcd_bin="${PGHA_ETCD_BIN:-etcd}"
# shellcheck source=bench/lib/dist.sh
source bench/lib/dist.sh
pgha_build --probe
make_work pgha-bench-crash

cleanup() {
  probe_stop
  pgha_stop_all
  etcd_stop
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

read -r -a eports <<<"$(free_ports 2)"
etcd_start "$work" "${eports[0]}" "${eports[1]}"
pgha_setup "$work" bench

t0=$(now)
for i in 1 2 3; do start_agent "$i"; done
wait_converged >/dev/null
boot=$(python3 -c "print(f'{$(now) - $t0:.1f}')")
start_proxy
probe_start "$(pgha_url)"

windows=(); from_kill=()
for run in $(seq 1 "$runs"); do
  leader=$(wait_converged)
  sleep 1
  pm=$(pgha_postmaster "$leader")
  t=$(now)
  kill -9 "${agent_pid[$leader]}" "$pm"
  wait "${agent_pid[$leader]}" 2>/dev/null || true
  read -r w fk <<<"$(window "$work/probe.log" "$t")"
  new=$(primary_among "${api[@]:1:3}")
  printf 'run %d: killed node%s (agent + postmaster), write-unavailable %s s (%s s from the kill), new leader node%s\n' \
    "$run" "$leader" "$w" "$fk" "$new"
  windows+=("$w"); from_kill+=("$fk")
  start_agent "$leader"
done
wait_converged >/dev/null
sleep 2
mem=""
for i in 1 2 3; do mem+="node$i $(rss "${agent_pid[$i]}") MB, "; done
proxy_mem=$(rss "$proxy_pid")

echo
echo "pgha node-crash bench (distributed): 3 agents + etcd $("$etcd_bin" --version 2>/dev/null | awk 'NR==1{print $3}'), ttl 3 s, loop_wait 500 ms, safety margin 1 s,"
echo "writes every 50 ms through pgha proxy, $runs runs (PostgreSQL $(postgres --version 2>/dev/null | awk '{print $3}'), $(nproc) cores); bootstrap took $boot s"
printf 'write-unavailable window (s): %s -> median %.2f (target <= 4)\n' "${windows[*]}" "$(median "${windows[@]}")"
printf 'from the kill (s):            %s -> median %.2f\n' "${from_kill[*]}" "$(median "${from_kill[@]}")"
echo "agent RSS (release, converged after the runs): ${mem%, }; proxy ${proxy_mem} MB (target < 30 MB per agent)"
