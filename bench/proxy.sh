#!/usr/bin/env bash
# Proxy throughput and latency: pgbench direct vs pgha proxy vs HAProxy (tcp) vs PgBouncer
# (session), alternating targets within each round, medians over ROUNDS, ratios to direct.
#
#   bench/proxy.sh                      # defaults: DURATION=10 ROUNDS=3 SCALE=10 CLIENTS=16 JOBS=2
#   DURATION=20 ROUNDS=5 bench/proxy.sh
#
# Needs PostgreSQL (PG_BIN, default /usr/lib/postgresql/15/bin) and pgbench; installs haproxy
# and pgbouncer from Debian when missing (skipped, and said so, if that fails). PGHA_THREADS
# sets the proxy's session worker threads (default: one per core, like HAProxy's nbthread
# default; each has its own event loop). PostgreSQL runs with synchronous_commit=off so tpcb-like is CPU-bound.
set -euo pipefail

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
SCALE=${SCALE:-10}
CLIENTS=${CLIENTS:-16}
JOBS=${JOBS:-2}
PGHA_THREADS=${PGHA_THREADS:-$(nproc)}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

WORK=$(mktemp -d /tmp/pgha-proxy-bench.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${PG_STARTED:-}" ] && as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ "$(id -u)" = 0 ]; then
  chown postgres: "$WORK"
  as_pg() { runuser -u postgres -- "$@"; }
else
  as_pg() { "$@"; }
fi

for tool in haproxy pgbouncer; do
  if ! command -v "$tool" >/dev/null && [ ! -x "/usr/sbin/$tool" ]; then
    (apt-get install -y "$tool" >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y "$tool" >/dev/null 2>&1; }) \
      || echo "note: could not install $tool; its column will be skipped" >&2
  fi
done
HAPROXY=$(command -v haproxy || ls /usr/sbin/haproxy 2>/dev/null || true)
PGBOUNCER=$(command -v pgbouncer || ls /usr/sbin/pgbouncer 2>/dev/null || true)

echo "building proxy_bench (release)..." >&2
cargo build --quiet --release -p pgha-proxy --example proxy_bench --manifest-path "$ROOT/Cargo.toml"
PROXY_BIN=$CARGO_TARGET_DIR/release/examples/proxy_bench

PG_PORT=$(free_port); PGHA_PORT=$(free_port); HA_PORT=$(free_port); BOUNCER_PORT=$(free_port)

as_pg "$PG_BIN/initdb" -A trust -U postgres -N -D "$WORK/data" >/dev/null
cat >>"$WORK/data/postgresql.conf" <<CONF
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK'
max_connections = 200
shared_buffers = 128MB
synchronous_commit = off
CONF
as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/pg.log" -w start >/dev/null
PG_STARTED=1
"$PG_BIN/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres -i -q -s "$SCALE" postgres >/dev/null 2>&1

"$PROXY_BIN" "127.0.0.1:$PGHA_PORT" "127.0.0.1:$PG_PORT" "$PGHA_THREADS" 2>"$WORK/pgha.log" &
PIDS+=($!)
TARGETS=(direct pgha)
PORT_direct=$PG_PORT
PORT_pgha=$PGHA_PORT

if [ -n "$HAPROXY" ]; then
  cat >"$WORK/haproxy.cfg" <<CONF
global
  maxconn 4096
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
listen pg
  bind 127.0.0.1:$HA_PORT
  server pg 127.0.0.1:$PG_PORT
CONF
  "$HAPROXY" -f "$WORK/haproxy.cfg" -db >/dev/null 2>&1 &
  PIDS+=($!)
  TARGETS+=(haproxy)
  PORT_haproxy=$HA_PORT
fi
if [ -n "$PGBOUNCER" ]; then
  echo '"postgres" ""' >"$WORK/userlist.txt"
  cat >"$WORK/pgbouncer.ini" <<CONF
[databases]
postgres = host=127.0.0.1 port=$PG_PORT dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $WORK/userlist.txt
pool_mode = session
default_pool_size = 40
max_client_conn = 1000
logfile = $WORK/pgbouncer.log
CONF
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$WORK/pgbouncer.ini" "$WORK/userlist.txt"
    "$PGBOUNCER" -u postgres "$WORK/pgbouncer.ini" >/dev/null 2>&1 &  # same pid after the switch
  else
    "$PGBOUNCER" "$WORK/pgbouncer.ini" >/dev/null 2>&1 &
  fi
  PIDS+=($!)
  TARGETS+=(pgbouncer)
  PORT_pgbouncer=$BOUNCER_PORT
fi

# Wait (with a deadline) until every target answers.
for t in "${TARGETS[@]}"; do
  port_var=PORT_$t
  for _ in $(seq 1 100); do
    "$PG_BIN/psql" -h 127.0.0.1 -p "${!port_var}" -U postgres -Atc 'select 1' postgres >/dev/null 2>&1 && break
    sleep 0.1
  done
  "$PG_BIN/psql" -h 127.0.0.1 -p "${!port_var}" -U postgres -Atc 'select 1' postgres >/dev/null
done

# run TARGET ARGS... -> prints "tps latency_ms"
run() {
  local target=$1; shift
  local port_var=PORT_$target
  "$PG_BIN/pgbench" -h 127.0.0.1 -p "${!port_var}" -U postgres -n -T "$DURATION" "$@" postgres 2>/dev/null |
    awk '/^latency average/ {lat=$4} /^tps/ {tps=$3} END {printf "%s %s\n", tps, lat}'
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

TESTS=("select-only|-S -c $CLIENTS -j $JOBS" "tpcb-like|-c $CLIENTS -j $JOBS" "select-only -C|-S -C -c $CLIENTS -j $JOBS" "latency -S -c 1|-S -c 1 -j 1")
declare -A RES
for r in $(seq 1 "$ROUNDS"); do
  for test in "${TESTS[@]}"; do
    name=${test%%|*}; args=${test#*|}
    for t in "${TARGETS[@]}"; do
      # shellcheck disable=SC2086
      out=$(run "$t" $args)
      RES["$name|$t|$r|tps"]=${out% *}
      RES["$name|$t|$r|lat"]=${out#* }
      echo "round $r  $name  $t: tps ${out% *}  latency ${out#* } ms" >&2
    done
  done
done

# med NAME TARGET FIELD [vs-direct: ratio|diff] -> median over rounds
med() {
  local name=$1 t=$2 field=$3 mode=${4:-}
  for r in $(seq 1 "$ROUNDS"); do
    local v=${RES["$name|$t|$r|$field"]} d=${RES["$name|direct|$r|$field"]}
    case $mode in
      ratio) awk -v a="$v" -v b="$d" 'BEGIN {print a/b}' ;;
      diff) awk -v a="$v" -v b="$d" 'BEGIN {print (a-b)*1000}' ;;
      *) echo "$v" ;;
    esac
  done | median
}

echo
echo "pgbench, PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}'), scale $SCALE, ${DURATION}s runs, $ROUNDS rounds (targets alternating), $(nproc) cores, pgha worker threads: $PGHA_THREADS"
echo "tps: median over rounds; ratios: median of the per-round ratios to direct (same round)"
printf '%-18s' "test"
for t in "${TARGETS[@]}"; do printf '%12s' "$t"; done
for t in "${TARGETS[@]:1}"; do printf '%17s' "$t/direct"; done
echo
for test in "${TESTS[@]}"; do
  name=${test%%|*}
  [[ $name == latency* ]] && continue
  printf '%-18s' "$name"
  for t in "${TARGETS[@]}"; do printf '%12.0f' "$(med "$name" "$t" tps)"; done
  for t in "${TARGETS[@]:1}"; do printf '%17.3f' "$(med "$name" "$t" tps ratio)"; done
  echo
done
name="latency -S -c 1"
printf '%-18s' "-S -c 1 lat (us)"
for t in "${TARGETS[@]}"; do printf '%12.1f' "$(awk -v a="$(med "$name" "$t" lat)" 'BEGIN {print a*1000}')"; done
for t in "${TARGETS[@]:1}"; do printf '%17s' "+$(printf '%.1f' "$(med "$name" "$t" lat diff)")us"; done
echo
