#!/usr/bin/env bash
# pgha vs Patroni in distributed mode, measured in the same run by the same client.
#
# Targets (each one a fresh 3-member cluster per round on one shared etcd, on loopback):
#   pgha              3 `pgha agent` + `pgha proxy` (bench/lib/dist.sh, as bench/node_crash.sh):
#                     ttl 3 s, safety margin 1 s, loop_wait 500 ms
#   patroni           3 Patroni (pip `patroni[etcd3]`, psycopg2-binary) on the Debian PostgreSQL
#                     binaries, as the postgres OS user, + HAProxy (Debian) routing to the member
#                     whose REST API answers `OPTIONS /primary` with 200: Patroni's smallest
#                     accepted timings, ttl 20 s, loop_wait 1 s, retry_timeout 3 s
#   patroni-defaults  the same with Patroni's defaults, ttl 30 s, loop_wait 10 s, retry_timeout 10 s
# Both sides: PostgreSQL 15 with fsync=off, shared_buffers=16MB, data checksums; otherwise each
# tool's own defaults. The order of the targets rotates every round.
#
# Per target and round, the same client (crates/pgha/examples/write_probe.rs: one INSERT every
# 50 ms on one connection through the target's read-write entry point, reconnecting after a
# failure) measures the write-unavailable window of three events, in this order, waiting
# between them until one primary runs, both standbys stream and the client writes again, then
# 1 s plus a random 0..PAUSE_SPREAD_S s (so that events fall at any phase of the managers' loops):
#   crash       kill -9 of the leader's manager process (pgha agent / patroni) and its
#               postmaster in one command; the manager is then started again (it rejoins)
#   switchover  `pgha switchover` / `patronictl switchover --force` (no target named)
#   pm_kill     kill -9 of the primary's postmaster alone
# Window = from the start of the first write attempt that failed (or stalled more than STALL_MS)
# after the event to the end of the next successful write (bench/lib/common.sh `window`);
# from_event = from the event to the end of that write.
#
# Usage: bench/vs_patroni.sh [ROUNDS]   (default 5)
# Env: TARGETS="pgha patroni patroni-defaults", STALL_MS=200, PAUSE_SPREAD_S=10, NO_BUILD=1 (use the existing
#   release binaries), CARGO_TARGET_DIR, PGHA_ETCD_BIN=etcd, PG_BIN=/usr/lib/postgresql/15/bin,
#   PATRONI_VENV=/opt/pgha-bench/patroni-venv (created with pip when missing), PATRONI_TTL=20,
#   PATRONI_LOOP_WAIT=1, PATRONI_RETRY_TIMEOUT=3, HAPROXY_INTER=500ms, HAPROXY_FALL=1,
#   HAPROXY_RISE=1, OUT_DIR (default bench/results/DATE-vs_patroni), KEEP_WORK=1 (keep the
#   logs in /tmp), BENCH_REV (the pgha commit to record when not run from a git checkout).
# Writes OUT_DIR/runs.tsv (one line per measured event, as it happens), OUT_DIR/probe.txt (the
# client's raw lines around every event) and OUT_DIR/summary.md (medians, runs, ratios,
# settings). Runs as root (PostgreSQL and Patroni then run as `postgres`) or as a plain user.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
rounds="${1:-5}"
stall_ms="${STALL_MS:-200}"
pause_spread="${PAUSE_SPREAD_S:-10}"
read -r -a targets <<<"${TARGETS:-pgha patroni patroni-defaults}"
pg_bin="${PG_BIN:-/usr/lib/postgresql/15/bin}"
venv="${PATRONI_VENV:-/opt/pgha-bench/patroni-venv}"
etcd_bin="${PGHA_ETCD_BIN:-etcd}"
ha_inter="${HAPROXY_INTER:-500ms}"; ha_fall="${HAPROXY_FALL:-1}"; ha_rise="${HAPROXY_RISE:-1}"
die() { echo "vs_patroni: $*" >&2; exit 1; }
for t in "${targets[@]}"; do
  case "$t" in pgha|patroni|patroni-defaults) ;; *) die "unknown target $t" ;; esac
done
# Patroni timings per target: ttl loop_wait retry_timeout.
timings_patroni="${PATRONI_TTL:-20} ${PATRONI_LOOP_WAIT:-1} ${PATRONI_RETRY_TIMEOUT:-3}"
timings_patroni_defaults="30 10 10"

# --- what is needed, installed when missing -------------------------------------------------
[ -x "$pg_bin/postgres" ] || die "no PostgreSQL binaries in $pg_bin (apt-get install postgresql-15)"
command -v "$etcd_bin" >/dev/null || die "no etcd ($etcd_bin; apt-get install etcd-server)"
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || die "running as root needs the postgres OS user (apt-get install postgresql)"
  as_pg_cmd=(setpriv --reuid=postgres --regid=postgres --init-groups --reset-env)  # execs the program
else
  as_pg_cmd=()
fi
apt_install() {
  [ "$(id -u)" = 0 ] || die "$1 is missing and installing it needs root (apt-get install -y $1)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "$@" >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$@" >/dev/null 2>&1; } \
    || die "apt-get install -y $* failed"
}
haproxy_bin=$(command -v haproxy || ls /usr/sbin/haproxy 2>/dev/null || true)
if [ -z "$haproxy_bin" ] && [[ " ${targets[*]} " == *" patroni"* ]]; then
  apt_install haproxy
  haproxy_bin=$(command -v haproxy || ls /usr/sbin/haproxy 2>/dev/null) || die "haproxy installed but not found"
fi
if [[ " ${targets[*]} " == *" patroni"* ]] && ! "$venv/bin/python" -c 'import patroni, psycopg2, etcd' 2>/dev/null; then
  # Debian's python3 (not a pyenv one under /root): the postgres user must be able to run it.
  /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
  mkdir -p "$(dirname "$venv")"
  /usr/bin/python3 -m venv "$venv" || die "python3 -m venv $venv failed"
  "$venv/bin/pip" install -q 'patroni[etcd3]' psycopg2-binary || die "pip install 'patroni[etcd3]' psycopg2-binary failed"
fi
if [[ " ${targets[*]} " == *" patroni"* ]]; then
  "${as_pg_cmd[@]}" "$venv/bin/python" -c 'import patroni, psycopg2, etcd' || die "the postgres user cannot run Patroni from $venv"
fi
# shellcheck source=bench/lib/dist.sh
source bench/lib/dist.sh
pgha_build --probe
[ -x "$bin" ] && [ -x "$probe_bin" ] || die "no $bin or $probe_bin (build them or unset NO_BUILD)"

# --- run state and clean-up ------------------------------------------------------------------
make_work pgha-vs-patroni
probe_pid=""; haproxy_pid=""; pat_dir=""
declare -a pat_pid=() pat_api=() pat_pg=()

pat_stop_all() {
  [ -n "$haproxy_pid" ] && { kill -TERM "$haproxy_pid" 2>/dev/null || true; wait "$haproxy_pid" 2>/dev/null || true; }
  haproxy_pid=""
  stop_members "$pat_dir" pat_postmaster 30 "${pat_pid[@]:1:3}"
  pat_pid=()
}
stop_probe() {
  [ -n "$probe_pid" ] && { kill "$probe_pid" 2>/dev/null || true; wait "$probe_pid" 2>/dev/null || true; }
  probe_pid=""
}
cleanup() {
  local rc=$?
  stop_probe
  pgha_stop_all
  pat_stop_all
  etcd_stop
  wait 2>/dev/null || true
  if [ "${KEEP_WORK:-0}" = 1 ]; then
    echo "logs kept in $work" >&2
  elif [ "$rc" != 0 ]; then
    echo "failed (exit $rc); last lines of the logs in $work:" >&2
    for f in "$work"/*/*.log; do [ -f "$f" ] && { echo "== $f" >&2; tail -n 8 "$f" >&2; }; done
    rm -rf "$work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- Patroni cluster: 3 patroni + HAProxy ----------------------------------------------------
# pat_setup DIR SCOPE TTL LOOP_WAIT RETRY_TIMEOUT: configs for node1..3 and HAProxy in DIR.
pat_setup() {
  pat_dir=$1
  local scope=$2 ttl=$3 loop=$4 retry=$5 i
  local -a p
  read -r -a p <<<"$(free_ports 7)"
  pat_rw=${p[0]}
  local pw="bench-su-$RANDOM$RANDOM" rpw="bench-repl-$RANDOM$RANDOM"
  pat_url="postgresql://postgres:$pw@127.0.0.1:$pat_rw/postgres?connect_timeout=2"
  mkdir -p "$pat_dir"
  for i in 1 2 3; do
    pat_pg[$i]=${p[$((2 * i - 1))]}
    pat_api[$i]="127.0.0.1:${p[$((2 * i))]}"
    mkdir -p "$pat_dir/node$i"
    cat >"$pat_dir/node$i.yml" <<EOF
scope: $scope
namespace: /service/
name: node$i
restapi:
  listen: ${pat_api[$i]}
  connect_address: ${pat_api[$i]}
etcd3:
  host: ${etcd_url#http://}
bootstrap:
  dcs:
    ttl: $ttl
    loop_wait: $loop
    retry_timeout: $retry
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        fsync: 'off'
        shared_buffers: 16MB
  initdb:
  - encoding: UTF8
  - data-checksums
postgresql:
  listen: 127.0.0.1:${pat_pg[$i]}
  connect_address: 127.0.0.1:${pat_pg[$i]}
  data_dir: $pat_dir/node$i/data
  bin_dir: $pg_bin
  pgpass: $pat_dir/node$i/pgpass
  authentication:
    superuser: {username: postgres, password: '$pw'}
    replication: {username: replicator, password: '$rpw'}
  parameters:
    unix_socket_directories: '$pat_dir/node$i'
    password_encryption: scram-sha-256
  pg_hba:
  - local all all trust
  - host replication replicator 127.0.0.1/32 scram-sha-256
  - host all all 127.0.0.1/32 scram-sha-256
  remove_data_directory_on_rewind_failure: true
  remove_data_directory_on_diverged_timelines: true
watchdog:
  mode: 'off'
EOF
  done
  # Patroni's documented HAProxy template (haproxy.cfg in its repository), check timings
  # HAPROXY_INTER/FALL/RISE instead of its inter 3s fall 3 rise 2; logs (with times) to stderr.
  cat >"$pat_dir/haproxy.cfg" <<EOF
global
    maxconn 100
    log stderr format iso local0 info
defaults
    log global
    option tcplog
    mode tcp
    retries 2
    timeout client 30m
    timeout connect 4s
    timeout server 30m
    timeout check 5s
listen primary
    bind 127.0.0.1:$pat_rw
    option httpchk OPTIONS /primary
    http-check expect status 200
    default-server inter $ha_inter fall $ha_fall rise $ha_rise on-marked-down shutdown-sessions
    server node1 127.0.0.1:${pat_pg[1]} maxconn 100 check port ${pat_api[1]#127.0.0.1:}
    server node2 127.0.0.1:${pat_pg[2]} maxconn 100 check port ${pat_api[2]#127.0.0.1:}
    server node3 127.0.0.1:${pat_pg[3]} maxconn 100 check port ${pat_api[3]#127.0.0.1:}
EOF
  [ "$(id -u)" = 0 ] && chown -R postgres: "$pat_dir/node1" "$pat_dir/node2" "$pat_dir/node3" "$pat_dir"/node*.yml
  chmod 600 "$pat_dir"/node*.yml
}
start_patroni() { # $1 = member number; a simple command, so that $! is patroni itself
  "${as_pg_cmd[@]}" "$venv/bin/patroni" "$pat_dir/node$1.yml" >>"$pat_dir/node$1.log" 2>&1 &
  pat_pid[$1]=$!
}
start_haproxy() {
  "$haproxy_bin" -f "$pat_dir/haproxy.cfg" -db >>"$pat_dir/haproxy.log" 2>&1 &
  haproxy_pid=$!
}
pat_postmaster() { head -1 "$pat_dir/node$1/data/postmaster.pid" 2>/dev/null || true; }
# Prints the leader's number once Patroni's /cluster shows one running leader (also answering
# /primary) and two streaming replicas.
pat_converged() {
  local l
  l=$(python3 - "${pat_api[@]:1:3}" <<'EOF'
import json, sys, urllib.request
c = None
for a in sys.argv[1:]:
    try:
        c = json.load(urllib.request.urlopen(f"http://{a}/cluster", timeout=2)); break
    except Exception:
        pass
ms = (c or {}).get("members", [])
lead = [m for m in ms if m.get("role") == "leader" and m.get("state") == "running"]
rep = [m for m in ms if m.get("role") in ("replica", "sync_standby", "quorum_standby") and m.get("state") == "streaming"]
if len(ms) == 3 and len(lead) == 1 and len(rep) == 2:
    print(lead[0]["name"][len("node"):])
EOF
)
  [ -n "$l" ] && [ "$(code "${pat_api[$l]}" /primary)" = 200 ] && echo "$l"
  return 0
}
pat_wait_converged() { await_leader pat_converged "Patroni cluster" "$pat_dir" 180 0.3; }

# --- per target -------------------------------------------------------------------------------
# Each target defines: <t>_up ROUND (cluster up, sets url), <t>_leader, <t>_crash LEADER,
# <t>_switchover LEADER (runs the command in the background, sets sw_pid), <t>_pm_kill LEADER,
# <t>_down, from these events common to both (each sets ev_t, the time of the event):
url=""
# crash_member WHO MANAGER_PID POSTMASTER_PID: kill -9 of both in one command.
crash_member() {
  [ -n "$3" ] || die "$1: no postmaster.pid"
  ev_t=$(now)
  kill -9 "$2" "$3"
  wait "$2" 2>/dev/null || true
}
# kill_postmaster WHO POSTMASTER_PID: kill -9 of the postmaster alone.
kill_postmaster() {
  [ -n "$2" ] || die "$1: no postmaster.pid"
  ev_t=$(now)
  kill -9 "$2"
}
# switchover_bg LOG CMD...: CMD in the background (sw_pid), its output appended to LOG.
switchover_bg() {
  local log=$1; shift
  ev_t=$(now)
  "$@" >>"$log" 2>&1 &
  sw_pid=$!
}
pgha_up() {
  pgha_setup "$work/pgha-r$1" "bench-r$1"
  local i; for i in 1 2 3; do start_agent "$i"; done
  wait_converged >/dev/null
  start_proxy
  url=$(pgha_url)
}
pgha_leader() { wait_converged; }
pgha_crash() { crash_member "pgha node$1" "${agent_pid[$1]}" "$(pgha_postmaster "$1")"; }
pgha_restart() { start_agent "$1"; }
pgha_switchover() {
  switchover_bg "$pgha_dir/switchover.log" "$bin" switchover --config "$pgha_dir/node$1.toml"
}
pgha_pm_kill() { kill_postmaster "pgha node$1" "$(pgha_postmaster "$1")"; }
pgha_new_leader() { primary_among "${api[@]:1:3}"; }
pgha_down() { pgha_stop_all; }

patroni_up() { # $1 = round, $2 = "ttl loop_wait retry_timeout"
  local -a tm; read -r -a tm <<<"$2"
  pat_setup "$work/$cur-r$1" "bench-$cur-r$1" "${tm[@]}"
  local i; for i in 1 2 3; do start_patroni "$i"; done
  pat_wait_converged >/dev/null
  start_haproxy
  url=$pat_url
}
patroni_leader() { pat_wait_converged; }
patroni_crash() {
  grep -q 'bin/patroni' "/proc/${pat_pid[$1]}/cmdline" 2>/dev/null || die "pid ${pat_pid[$1]} is not node$1's patroni"
  crash_member "Patroni node$1" "${pat_pid[$1]}" "$(pat_postmaster "$1")"
}
patroni_restart() { start_patroni "$1"; }
patroni_switchover() {
  switchover_bg "$pat_dir/switchover.log" "$venv/bin/patronictl" -c "$pat_dir/node$1.yml" switchover --force
}
patroni_pm_kill() { kill_postmaster "Patroni node$1" "$(pat_postmaster "$1")"; }
patroni_new_leader() { primary_among "${pat_api[@]:1:3}"; }
patroni_down() { pat_stop_all; }
# The function family of target $1.
fam() { case "$1" in pgha) echo pgha ;; *) echo patroni ;; esac; }

# Waits until the client's last write succeeded less than a second ago (60 s max).
wait_writes() {
  local deadline=$(( $(date +%s) + 60 ))
  while :; do
    if python3 - "$1" <<'EOF'
import sys, time
last = None
for line in open(sys.argv[1]):
    p = line.split()
    if len(p) == 3:
        last = p
sys.exit(0 if last and last[2] == "ok" and time.time() - float(last[1]) < 1 else 1)
EOF
    then return 0; fi
    [ "$(date +%s)" -gt "$deadline" ] && die "the client does not write through $cur (log $1)"
    sleep 0.2
  done
}
# The client's lines from 1 s before the event to 1 s after the end of the window, into probe.txt.
excerpt() { # LOG T_EVENT FROM_EVENT HEADER
  { echo "# $4"; awk -v a="$2" -v fk="$3" 'BEGIN { b = (fk == "nan") ? a + 130 : a + fk + 1 }
      NF == 3 && $2 >= a - 1 && $1 <= b' "$1"; } >>"$out/probe.txt"
}

# --- results directory ------------------------------------------------------------------------
out="${OUT_DIR:-$root/bench/results/$(date +%F)-vs_patroni}"
if [ -z "${OUT_DIR:-}" ] && [ -e "$out" ]; then
  n=2; while [ -e "$out-$n" ]; do n=$((n + 1)); done; out="$out-$n"
fi
mkdir -p "$out"
: >"$out/probe.txt"
printf 'round\tslot\ttarget\tevent\twindow_s\tfrom_event_s\tload1\tleader\tnew_leader\tt_event\tpg_ready_s\trouted_s\tpause_s\n' >"$out/runs.tsv"
rev="${BENCH_REV:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
if [ -z "${BENCH_REV:-}" ] && ! git diff --quiet HEAD -- crates Cargo.toml Cargo.lock 2>/dev/null; then rev="$rev+uncommitted"; fi
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
cmdline="bench/vs_patroni.sh $rounds"
for v in TARGETS STALL_MS PAUSE_SPREAD_S PATRONI_TTL PATRONI_LOOP_WAIT PATRONI_RETRY_TIMEOUT HAPROXY_INTER HAPROXY_FALL HAPROXY_RISE; do
  if [ -n "${!v:-}" ]; then cmdline="$v=\"${!v}\" $cmdline"; fi
done
started=$(date -u +%FT%TZ)

read -r -a eports <<<"$(free_ports 2)"
etcd_start "$work" "${eports[0]}" "${eports[1]}"

record() { # round slot event window from_event leader new_leader [pg_ready routed pause]
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$cur" "$3" "$4" "$5" \
    "$(cut -d' ' -f1 /proc/loadavg)" "$6" "$7" "$ev_t" "${8:--}" "${9:--}" "${10:--}" >>"$out/runs.tsv"
}
# after T_EVENT PG_LOG [HAPROXY_LOG NODE]: prints "PG_READY ROUTED", seconds from the event to
# PostgreSQL's first "ready to accept connections" (read-write) in PG_LOG, and to HAProxy's
# first "Server primary/NODE is UP" ("-" when there is none: HAProxy never marked it down).
after() {
  python3 - "$@" <<'EOF'
import datetime, re, sys
t = float(sys.argv[1])
def first(path, pattern, fmt):
    try:
        for line in open(path, errors="replace"):
            m = re.match(pattern, line)
            if m:
                ts = (datetime.datetime.fromisoformat(m.group(1)) if fmt == "iso" else
                      datetime.datetime.strptime(m.group(1), fmt).replace(tzinfo=datetime.timezone.utc)).timestamp()
                if ts > t:
                    return f"{ts - t:.3f}"
    except OSError:
        pass
    return "-"
ready = first(sys.argv[2], r"(\S+ \S+) UTC \[\d+\] LOG:  database system is ready to accept connections", "%Y-%m-%d %H:%M:%S.%f")
routed = first(sys.argv[3], r"(\S+) Server primary/" + sys.argv[4] + r" is UP", "iso") if len(sys.argv) > 4 else "-"
print(ready, routed)
EOF
}
measure() { # round slot event: runs it on the current target, waits for the window, records it
  local f; f=$(fam "$cur")
  local leader w fk new
  leader=$("${f}_leader")
  wait_writes "$plog"
  # A random pause, so that the event falls at any phase of the managers' loops (else each
  # event would come at the same point of Patroni's 10 s default loop, run after run).
  local pause; pause=$(python3 -c "import random; print(f'{1 + random.uniform(0, $pause_spread):.2f}')")
  sleep "$pause"
  sw_pid=""
  "${f}_$3" "$leader"
  read -r w fk <<<"$(window "$plog" "$ev_t")"
  [ -n "$sw_pid" ] && { wait "$sw_pid" || echo "note: $cur switchover command failed (see its log)" >&2; }
  new=$("${f}_new_leader")
  [ "$3" = crash ] && "${f}_restart" "$leader"
  local ready routed
  if [ "$f" = pgha ]; then
    read -r ready routed <<<"$(after "$ev_t" "$pgha_dir/node$new/postgresql.log")"
  else
    read -r ready routed <<<"$(after "$ev_t" "$pat_dir/node$new.log" "$pat_dir/haproxy.log" "node$new")"
  fi
  record "$1" "$2" "$3" "$w" "$fk" "node$leader" "node$new" "$ready" "$routed" "$pause"
  excerpt "$plog" "$ev_t" "$fk" "round $1 $cur $3 t_event=$ev_t window=$w from_event=$fk"
  printf 'round %s %-16s %-10s window %6s s  from event %6s s  (PostgreSQL ready %s s, HAProxy up %s s)  node%s -> node%s  load %s\n' \
    "$1" "$cur" "$3" "$w" "$fk" "$ready" "$routed" "$leader" "$new" "$(cut -d' ' -f1 /proc/loadavg)"
}

n=${#targets[@]}
for round in $(seq 1 "$rounds"); do
  for slot in $(seq 0 $((n - 1))); do
    cur=${targets[$(( (round - 1 + slot) % n ))]}
    f=$(fam "$cur")
    t0=$(now)
    case "$cur" in
      pgha) pgha_up "$round" ;;
      patroni) patroni_up "$round" "$timings_patroni" ;;
      patroni-defaults) patroni_up "$round" "$timings_patroni_defaults" ;;
    esac
    ev_t=$t0
    boot=$(python3 -c "print(f'{$(now) - $t0:.3f}')")
    record "$round" "$((slot + 1))" bootstrap "$boot" "$boot" - -
    plog="$work/probe-$cur-r$round.log"
    "$probe_bin" "$url" 50 "$plog" &
    probe_pid=$!
    for ev in crash switchover pm_kill; do measure "$round" "$((slot + 1))" "$ev"; done
    stop_probe
    "${f}_down"
  done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# --- summary ------------------------------------------------------------------------------------
ver() { "$@" 2>/dev/null | head -1 || echo "?"; }
cat >"$work/settings.md" <<EOF
## Settings

- Machine: $(nproc) cores, load average at start $load_start, at the end $load_end (1-min load at each event in runs.tsv).
- Versions: pgha $rev ($(ver "$bin" --version), release build); Patroni $(ver "$venv/bin/patroni" --version | awk '{print $2}'); $(ver "$haproxy_bin" -v | awk '{print "HAProxy", $3}'); etcd $(ver "$etcd_bin" --version | awk '{print $3}'); PostgreSQL $(ver "$pg_bin/postgres" --version | awk '{print $3}').
- One etcd on loopback shared by all targets (heartbeat 50 ms, election timeout 500 ms, --unsafe-no-fsync); each target gets a fresh 3-member cluster (own etcd prefix) every round, measured alone.
- PostgreSQL on both sides: fsync=off, shared_buffers=16MB, data checksums, scram-sha-256; everything else as each tool sets it.
- Client: write_probe, one INSERT every 50 ms on one connection, reconnecting after a failure (2 s timeouts on connect and on each INSERT); a write stalled more than $stall_ms ms counts as unavailable.
- pgha: 3 \`pgha agent\` + \`pgha proxy --config\` (its read-write listener); ttl 3 s, safety margin 1 s, loop_wait 500 ms.
- patroni: 3 Patroni (pip \`patroni[etcd3]\`, psycopg2-binary) as the \`postgres\` OS user, etcd3 API; ttl/loop_wait/retry_timeout = $timings_patroni s (Patroni raises ttl < 20, loop_wait < 1, retry_timeout < 3 to these minimums); use_pg_rewind, use_slots, maximum_lag_on_failover 1 MB, watchdog off.
- patroni-defaults: the same with Patroni's defaults ttl/loop_wait/retry_timeout = $timings_patroni_defaults s.
- HAProxy in front of Patroni: Patroni's documented template (mode tcp, retries 2, \`option httpchk OPTIONS /primary\`, \`http-check expect status 200\`, on-marked-down shutdown-sessions, timeout connect 4 s, timeout check 5 s; logging added) with \`inter $ha_inter fall $ha_fall rise $ha_rise\` instead of the template's inter 3s fall 3 rise 2.
- Events per target and round, in this order: crash (kill -9 of the leader's \`pgha agent\` / \`patroni\` process and its postmaster in one command; the manager is then started again and rejoins), switchover (\`pgha switchover --config\` / \`patronictl switchover --force\`, no target named), pm_kill (kill -9 of the primary's postmaster; the manager restarts it). Before each event: one running primary, two streaming standbys, the client writing again, then a pause of 1 s plus a uniform random 0–$pause_spread s, so that events fall at any phase of the managers' loops (without it, every event came at the same point of Patroni's 10 s default loop).

Raw: runs.tsv (one line per event as measured, with the 1-min load, the leader before and after, the event time, the breakdown columns and the pause before the event), probe.txt (the client's lines from 1 s before each event to 1 s after the window: start end ok|fail, epoch seconds).
EOF
SUM_TARGETS="${targets[*]}" SUM_HEAD="Command: \`$cmdline\` ($rounds rounds, target order rotated each round; started $started)." \
python3 - "$out" "$work/settings.md" <<'EOF'
import csv, os, statistics, sys
out, settings = sys.argv[1], open(sys.argv[2]).read()
rows = list(csv.DictReader(open(f"{out}/runs.tsv"), delimiter="\t"))
targets = os.environ["SUM_TARGETS"].split()
events = [("crash", "node crash (kill -9 of manager + postmaster)"),
          ("switchover", "planned switchover"),
          ("pm_kill", "kill -9 of the primary's postmaster alone"),
          ("bootstrap", "bootstrap to converged (not a window)")]
def vals(t, e, k="window_s"):
    return [float(r[k]) for r in rows if r["target"] == t and r["event"] == e]
def med(v):
    v = [x for x in v if x == x]
    return statistics.median(v) if v else float("nan")
L = ["# pgha vs Patroni, distributed mode: write-unavailable window (s)\n", os.environ["SUM_HEAD"] + "\n",
     "Medians of the rounds; runs in round order; min–max is the spread; ratio = target median / pgha median.\n"]
others = [t for t in targets if t != "pgha"] if "pgha" in targets else []
cols = ["event"] + [c for t in targets for c in (f"{t} median (min–max)", f"{t} runs")] + [f"{t}/pgha" for t in others]
L.append("| " + " | ".join(cols) + " |")
L.append("|" + " --- |" * len(cols))
for e, name in events:
    cells = [name]
    for t in targets:
        v = vals(t, e)
        cells.append(f"**{med(v):.2f}** ({min(v):.2f}–{max(v):.2f})" if v else "–")
        cells.append(" ".join(f"{x:.3f}" for x in v))
    for t in others:
        p, m = med(vals("pgha", e)), med(vals(t, e))
        cells.append(f"{m / p:.1f}×" if p > 0 else ("n/a (pgha 0)" if m == m else "–"))
    L.append("| " + " | ".join(cells) + " |")
def col(t, e, k):
    v = [float(r[k]) for r in rows if r["target"] == t and r["event"] == e and r.get(k, "-") not in ("-", "", None)]
    n = len(vals(t, e))
    return f"{statistics.median(v):.2f}" + ("" if len(v) == n else f" ({len(v)} of {n})") if v else "–"
L.append("\nBreakdown, medians in s from the event: to the end of the first successful write after it (from event); "
         "to the new or restarted primary's \"database system is ready to accept connections\" (PostgreSQL ready); "
         "to HAProxy marking that member UP (HAProxy up; missing when HAProxy never marked it down).\n")
L.append("| target | event | from event | PostgreSQL ready | HAProxy up |")
L.append("| --- | --- | --- | --- | --- |")
for t in targets:
    for e, _ in events[:3]:
        L.append(f"| {t} | {e} | {col(t, e, 'from_event_s')} | {col(t, e, 'pg_ready_s')} | {col(t, e, 'routed_s')} |")
L.append("")
L.append(settings)
open(f"{out}/summary.md", "w").write("\n".join(L))
EOF
echo
cat "$out/summary.md"
echo "results in $out"
