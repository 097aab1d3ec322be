#!/usr/bin/env bash
# Proxy throughput and latency: pgbench against one PostgreSQL member of a real `pgha up
# --members 1` cluster, four ways, in the same run:
#   direct     the member's own port
#   pgha       pgha's read-write entry point (the proxy `pgha up` runs, as it runs it)
#   haproxy    HAProxy (mode tcp) in front of the member's port
#   pgbouncer  PgBouncer (pool_mode session) in front of the member's port
# Tests (pgbench scale SCALE, each run DURATION s, -n): select-only `-S -c 16 -j 2`, tpcb-like
# `-c 16 -j 2`, select-only with a new connection per transaction `-S -C -c 16 -j 2`, and
# latency `-S -c 1 -j 1`. Each of ROUNDS rounds runs every test against every target; the order
# of the targets rotates: round r starts with target r mod 4 (direct pgha haproxy pgbouncer).
#
#   ROUNDS=5 DURATION=10 bash bench/proxy.sh      # as root; about 15 min with these values
#
# Env: ROUNDS=5, DURATION=10, SCALE=10, CLIENTS=16, JOBS=2, TLS=on|off (below), PORT=base port
#   of the cluster (default random), OUT_DIR (default bench/results/DATE-proxy, or
#   DATE-plaintext-proxy with TLS=off; -2, -3, ... when it exists), CARGO_TARGET_DIR (default
#   /tmp/pgha-bench-target), BENCH_REV (commit to build, default HEAD; with BIN or NO_BUILD: the
#   commit to record), BUILD_FROM_CHECKOUT=1 (build the working tree instead), NO_BUILD=1 or
#   BIN=path (use an existing release pgha).
#
# Build: the release `pgha` is built from a clean `git archive` export of BENCH_REV into its own
# target dir, so neither uncommitted edits in a shared checkout nor someone else's rebuild can
# change the binary under the run; the summary records that commit.
#
# Settings, all sides (also written into the results' summary.md):
#   PostgreSQL as `pgha up` sets it (scram-sha-256, ssl=on with a member certificate from the
#   cluster CA, shared_buffers 128MB, fsync on, ...) plus `--synchronous-commit off` (pgha's
#   setting; it writes synchronous_commit=off, so tpcb-like is CPU-bound rather than fsync-bound)
#   and `--param max_connections=200`.
#   TLS=on (default, what `pgha up` and `pgha url` give users): every target gets `pgha url`'s
#   connection parameters with only the port changed (passfile=DIR/pgpass, sslmode=verify-full,
#   sslrootcert=the cluster CA, libpq's default channel_binding=prefer): direct and HAProxy
#   carry TLS from pgbench to PostgreSQL (HAProxy passes the bytes through); pgha's proxy
#   (cluster.proxy_tls = "terminate", the default) and PgBouncer each end the client's TLS with
#   the same certificate (PgBouncer gets a copy of pgha's proxy certificate and key) and speak
#   TLS again to the member (PgBouncer: server_tls_sslmode=verify-full against the cluster CA).
#   TLS=off: `pgha up --proxy-tls passthrough`, sslmode=disable for every target, PgBouncer
#   without TLS on either side: the proxies' own cost with no cryptography.
#   Authentication: the cluster's generated superuser password, read by libpq from the
#   cluster's pgpass (as `pgha url` says). pgha's proxy (TLS=on) checks SCRAM itself against
#   pg_authid. PgBouncer: auth_type=scram-sha-256 and an auth_file holding the superuser's SCRAM
#   secret as stored in pg_authid (no plain password on disk); it logs in to PostgreSQL with
#   the keys the client's SCRAM exchange revealed.
#   pgha's proxy: as `pgha up` runs it, on pgha's own 2-thread runtime, default limits.
#   HAProxy: mode tcp, maxconn 4096, nbthread = its default (one per core), no health check.
#   PgBouncer: pool_mode session, default_pool_size 40, max_client_conn 1000, default
#   server_reset_query (DISCARD ALL); runs as the postgres OS user.
#
# Installs haproxy and pgbouncer from Debian when missing, and stops if it cannot.
# Writes OUT_DIR/ROUND-TARGET-TEST.txt (each run's raw pgbench output), runs.tsv (one line a
# run: round, position in the round, target, test, tps, latency, 1-minute load), config/
# (haproxy.cfg, pgbouncer.ini, pgha.toml, the member's settings) and summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
rounds="${ROUNDS:-5}"
duration="${DURATION:-10}"
scale="${SCALE:-10}"
clients="${CLIENTS:-16}"
jobs="${JOBS:-2}"
tls="${TLS:-on}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/pgha-bench-target}"
die() { echo "bench/proxy.sh: $*" >&2; exit 1; }
trap 'echo "bench/proxy.sh: failed at line $LINENO" >&2' ERR
case $tls in on | off) ;; *) die "TLS must be on or off, not $tls" ;; esac
[ "$(id -u)" = 0 ] || die "run it as root (PostgreSQL and PgBouncer run as the postgres OS user)"
# shellcheck source=bench/lib/up_cluster.sh
source bench/lib/up_cluster.sh

# --- tools ------------------------------------------------------------------------------------
tool() { command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || true; }
missing=()
for t in haproxy pgbouncer; do [ -n "$(tool $t)" ] || missing+=("$t"); done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]} from Debian..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "${missing[@]}" >/dev/null; } ||
    die "could not install ${missing[*]} (apt-get install ${missing[*]}): no run without every target"
fi
haproxy_bin=$(tool haproxy); pgbouncer_bin=$(tool pgbouncer)
[ -n "$haproxy_bin" ] && [ -n "$pgbouncer_bin" ] || die "haproxy or pgbouncer still missing"
pgbench="$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | tail -1)"
psql="$(command -v psql || ls /usr/lib/postgresql/*/bin/psql 2>/dev/null | tail -1)"
[ -x "$pgbench" ] && [ -x "$psql" ] || die "pgbench or psql not found: install postgresql-client"

# --- pgha, built from a clean export of one commit --------------------------------------------
if [ "${BUILD_FROM_CHECKOUT:-0}" = 1 ] || [ -n "${BIN:-}" ] || [ "${NO_BUILD:-0}" = 1 ]; then
  rev="$(git rev-parse --short HEAD)"
  if ! git diff --quiet HEAD -- crates Cargo.toml Cargo.lock; then rev="$rev+uncommitted"; fi
  rev="${BENCH_REV:-$rev}"
  [ -n "${BIN:-}" ] || [ "${NO_BUILD:-0}" = 1 ] || echo "building pgha (release) from the checkout..." >&2
  pgha_build
else
  rev="$(git rev-parse --short "${BENCH_REV:-HEAD}")" || die "no commit ${BENCH_REV:-HEAD}"
  src="/tmp/pgha-bench-src-$rev"
  if [ ! -f "$src/Cargo.toml" ]; then
    rm -rf "$src" && mkdir -p "$src"
    git archive "$rev" | tar -x -C "$src"
  fi
  echo "building pgha (release) at $rev in $src, target dir $CARGO_TARGET_DIR..." >&2
  pushd "$src" >/dev/null
  pgha_build
  popd >/dev/null
  rm -rf "$src"
fi
[ -x "$bin" ] || die "no pgha binary at $bin"

# --- results directory --------------------------------------------------------------------------
name="$(date +%F)-proxy"; [ "$tls" = off ] && name="$(date +%F)-plaintext-proxy"
out="${OUT_DIR:-$root/bench/results/$name}"
if [ -z "${OUT_DIR:-}" ] && [ -e "$out" ]; then
  n=2; while [ -e "$out-$n" ]; do n=$((n + 1)); done; out="$out-$n"
fi
mkdir -p "$out/config"
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
started_at="$(date -u '+%F %T UTC')"

# --- the cluster --------------------------------------------------------------------------------
make_work pgha-bench-proxy
dir="$work/c"
port="${PORT:-$((20000 + RANDOM % 10000))}"
haproxy_pid=""; pgbouncer_pid=""
cleanup() {
  [ -n "$haproxy_pid" ] && kill "$haproxy_pid" 2>/dev/null || true
  [ -n "$pgbouncer_pid" ] && kill "$pgbouncer_pid" 2>/dev/null || true
  up_stop
  rm -rf "$work"
}
trap cleanup EXIT

up_args=(--members 1 --port "$port" --synchronous-commit off --param max_connections=200)
[ "$tls" = off ] && up_args+=(--proxy-tls passthrough)
echo "pgha up ${up_args[*]} --dir $dir" >&2
"$bin" up --dir "$dir" "${up_args[@]}" >"$work/up.log" 2>&1 &
up_pid=$!
wait_until "the cluster" up_converged >/dev/null
read -r pg_port rw_port < <(status_json | python3 -c '
import json, sys
s = json.load(sys.stdin)
m = [m for m in s["members"] if m["role"] == "primary"][0]
print(m["port"], s["proxy"]["rw"].rsplit(":", 1)[1])')
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ha_port=$(free_port); pb_port=$(free_port)

# Every target's connection string: `pgha url`'s, only the port changed (TLS=off: no TLS).
entry_url="$("$bin" url --dir "$dir")"
case $entry_url in *"@127.0.0.1:$rw_port/"*) ;; *) die "unexpected entry URL $entry_url" ;; esac
url_for() {
  local u="${entry_url/@127.0.0.1:$rw_port\//@127.0.0.1:$1/}"
  if [ "$tls" = off ]; then u="${u%%&sslmode=*}&sslmode=disable"; fi
  echo "$u"
}
targets=(direct pgha haproxy pgbouncer)
declare -A url=(
  [direct]="$(url_for "$pg_port")" [pgha]="$(url_for "$rw_port")"
  [haproxy]="$(url_for "$ha_port")" [pgbouncer]="$(url_for "$pb_port")"
)
sql() { "$psql" "${url[direct]}" -XAtc "$1"; }

# HAProxy: plain TCP forwarding to the member.
cat >"$out/config/haproxy.cfg" <<CONF
global
  maxconn 4096
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
listen pg
  bind 127.0.0.1:$ha_port
  server n1 127.0.0.1:$pg_port
CONF
"$haproxy_bin" -f "$out/config/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
haproxy_pid=$!

# PgBouncer, as the postgres OS user: the superuser's SCRAM secret from pg_authid as auth_file;
# with TLS a copy of the proxy's certificate for clients, verify-full against the CA to the member.
pb="$work/pgbouncer"
mkdir -p "$pb"
printf '"postgres" "%s"\n' "$(sql "select rolpassword from pg_authid where rolname = 'postgres'")" >"$pb/userlist.txt"
if [ "$tls" = on ]; then
  cp "$dir/tls/proxy.crt" "$dir/tls/proxy.key" "$dir/tls/ca.crt" "$pb/"
  tls_conf="client_tls_sslmode = allow
client_tls_cert_file = $pb/proxy.crt
client_tls_key_file = $pb/proxy.key
server_tls_sslmode = verify-full
server_tls_ca_file = $pb/ca.crt"
else
  tls_conf="client_tls_sslmode = disable
server_tls_sslmode = disable"
fi
cat >"$out/config/pgbouncer.ini" <<CONF
[databases]
postgres = host=127.0.0.1 port=$pg_port dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $pb_port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $pb/userlist.txt
pool_mode = session
default_pool_size = 40
max_client_conn = 1000
logfile = $pb/pgbouncer.log
$tls_conf
CONF
cp "$out/config/pgbouncer.ini" "$pb/pgbouncer.ini"
chown -R postgres: "$pb"
chmod 600 "$pb/userlist.txt" "$pb"/*.key 2>/dev/null || true
"$pgbouncer_bin" -u postgres "$pb/pgbouncer.ini" >"$work/pgbouncer.out" 2>&1 &
pgbouncer_pid=$!

# Every target answers (and, with TLS, speaks TLS to pgbench) before anything is measured.
answers() { "$psql" "${url[$1]}" -XAtc 'select 1' >/dev/null 2>&1; }
for t in "${targets[@]}"; do
  wait_until "$t to answer" answers "$t"
done
want_ssl=t; [ "$tls" = off ] && want_ssl=f
for t in "${targets[@]}"; do
  [ "$("$psql" "${url[$t]}" -XAtc 'select ssl from pg_stat_ssl where pid = pg_backend_pid()')" = "$want_ssl" ] ||
    die "$t: the session reaching PostgreSQL does not have ssl = $want_ssl (TLS=$tls)"
done

echo "pgbench -i -s $scale" >&2
"$pgbench" -i -q -s "$scale" "${url[direct]}" >"$work/init.log" 2>&1 || { cat "$work/init.log" >&2; die "pgbench -i failed"; }

# Settings and versions, for the summary.
cp "$dir/pgha.toml" "$out/config/pgha.toml"
sql "select name, setting, unit, source from pg_settings
     where source not in ('default', 'override', 'client', 'session')
        or name in ('fsync', 'work_mem', 'huge_pages', 'max_connections', 'shared_buffers')
     order by name" >"$out/config/postgresql-settings.txt"
pg_version="$(sql 'show server_version')"
pgbench_version="$("$pgbench" --version)"
haproxy_version="$("$haproxy_bin" -v | sed -n 1p)"
pgbouncer_version="$("$pgbouncer_bin" --version | sed -n 1p)"
pgha_version="$("$bin" --version 2>/dev/null || echo pgha)"

# --- the runs -----------------------------------------------------------------------------------
tests=(select-only tpcb-like select-only-C latency-c1)
declare -A args=(
  [select-only]="-S -c $clients -j $jobs"
  [tpcb-like]="-c $clients -j $jobs"
  [select-only-C]="-S -C -c $clients -j $jobs"
  [latency-c1]="-S -c 1 -j 1"
)
printf 'round\tposition\ttarget\ttest\ttps\tlatency_ms\tload1\n' >"$out/runs.tsv"
for ((r = 1; r <= rounds; r++)); do
  order=()
  for ((i = 0; i < 4; i++)); do order+=("${targets[$(( (r + i) % 4 ))]}"); done
  echo "round $r: ${order[*]}" >&2
  for test in "${tests[@]}"; do
    for ((i = 0; i < 4; i++)); do
      t="${order[$i]}"
      raw="$out/$r-$t-$test.txt"
      # shellcheck disable=SC2086
      { echo "# round $r, position $((i + 1)), $t, $test: pgbench -n -T $duration ${args[$test]} (URL below)"
        echo "# ${url[$t]}"
        echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
        "$pgbench" -n -T "$duration" ${args[$test]} "${url[$t]}" 2>&1; } >"$raw" ||
        { cat "$raw" >&2; die "pgbench failed: $raw"; }
      tps="$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$raw" | sed -n 1p)"
      lat="$(sed -n 's/^latency average = \([0-9.]*\) ms$/\1/p' "$raw")"
      [ -n "$tps" ] && [ -n "$lat" ] || { cat "$raw" >&2; die "no tps or latency in $raw"; }
      ! grep -q '^number of failed transactions: [1-9]' "$raw" || die "failed transactions in $raw"
      load1="$(cut -d' ' -f1 /proc/loadavg)"
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$((i + 1))" "$t" "$test" "$tps" "$lat" "$load1" >>"$out/runs.tsv"
      printf '  %-14s %-10s tps %9.1f  latency %7.3f ms  load %s\n' "$test" "$t" "$tps" "$lat" "$load1" >&2
    done
  done
done
load_end="$(cut -d' ' -f1-3 /proc/loadavg)"
status_json | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["proxy"]["listeners"][0], indent=1))' \
  >"$out/config/pgha-proxy-rw-metrics.json"

# --- summary ------------------------------------------------------------------------------------
cmdline="ROUNDS=$rounds DURATION=$duration bash bench/proxy.sh"
[ "$tls" = off ] && cmdline="TLS=off $cmdline"
[ "$scale$clients$jobs" = "10162" ] || cmdline="SCALE=$scale CLIENTS=$clients JOBS=$jobs $cmdline"
python3 - "$out" <<EOF
import csv, statistics as st, sys
out = sys.argv[1]
rows = list(csv.DictReader(open(f"{out}/runs.tsv"), delimiter="\t"))
targets = ["direct", "pgha", "haproxy", "pgbouncer"]
tests = ["select-only", "tpcb-like", "select-only-C", "latency-c1"]
rounds = sorted({int(r["round"]) for r in rows})
v = {(int(r["round"]), r["target"], r["test"]): (float(r["tps"]), float(r["latency_ms"])) for r in rows}
order = {}
for r in rows:
    order.setdefault(int(r["round"]), {})[int(r["position"])] = r["target"]
def med(xs): return st.median(xs)
def spread(xs, f): return f"{f(med(xs))} ({f(min(xs))}–{f(max(xs))})"
tps = lambda x: f"{x:.0f}"
rat = lambda x: f"{x:.3f}"
us = lambda x: f"{x:.0f}"
L = []
p = L.append
p("# bench/proxy.sh: direct vs pgha vs HAProxy vs PgBouncer")
p("")
p("Command: \`$cmdline\` (started $started_at).")
p("")
p("- pgha commit: $rev ($pgha_version), built in release mode into $CARGO_TARGET_DIR")
p("- PostgreSQL $pg_version; $pgbench_version; $haproxy_version; $pgbouncer_version")
p(f"- machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), shared with other work")
p("- load average before: $load_start; after: $load_end (1-minute load at every run: runs.tsv)")
p("- TLS=$tls; pgbench scale $scale, $duration s a run, -n; $rounds rounds, the targets' order rotating (round r starts with target r mod 4 of direct, pgha, haproxy, pgbouncer)")
p("- tests: " + "; ".join(f"{t}: \`{a}\`" for t, a in [("select-only", "-S -c $clients -j $jobs"), ("tpcb-like", "-c $clients -j $jobs"), ("select-only-C", "-S -C -c $clients -j $jobs"), ("latency-c1", "-S -c 1 -j 1")]))
p("- settings: see config/ (haproxy.cfg, pgbouncer.ini, pgha.toml, the member's non-default PostgreSQL settings) and the header of bench/proxy.sh")
p("")
p("## Throughput (tps, median over rounds, min–max in parentheses)")
p("")
p("| test | " + " | ".join(targets) + " |")
p("| --- |" + " --- |" * len(targets))
for t in tests[:3]:
    p(f"| {t} | " + " | ".join(spread([v[(r, x, t)][0] for r in rounds], tps) for x in targets) + " |")
p("")
p("## Ratios to direct (median of the per-round ratios, min–max), and rounds pgha beat HAProxy")
p("")
p("| test | pgha/direct | HAProxy/direct | PgBouncer/direct | pgha/HAProxy | rounds pgha > HAProxy | rounds pgha > PgBouncer |")
p("| --- | --- | --- | --- | --- | --- | --- |")
for t in tests[:3]:
    ratio = lambda x, y: [v[(r, x, t)][0] / v[(r, y, t)][0] for r in rounds]
    wins_h = sum(v[(r, "pgha", t)][0] > v[(r, "haproxy", t)][0] for r in rounds)
    wins_b = sum(v[(r, "pgha", t)][0] > v[(r, "pgbouncer", t)][0] for r in rounds)
    p(f"| {t} | " + " | ".join(spread(ratio(x, "direct"), rat) for x in ["pgha", "haproxy", "pgbouncer"])
      + f" | {spread(ratio('pgha', 'haproxy'), rat)} | {wins_h} of {len(rounds)} | {wins_b} of {len(rounds)} |")
p("")
p("## Latency, -S -c 1 (average latency per transaction in µs, median over rounds, min–max; added: median of the per-round differences to direct)")
p("")
p("| | " + " | ".join(targets) + " |")
p("| --- |" + " --- |" * len(targets))
t = "latency-c1"
p("| latency | " + " | ".join(spread([v[(r, x, t)][1] * 1000 for r in rounds], us) for x in targets) + " |")
p("| added | – | " + " | ".join(spread([(v[(r, x, t)][1] - v[(r, "direct", t)][1]) * 1000 for r in rounds], lambda d: f"{d:+.0f}") for x in targets[1:]) + " |")
wins = sum(v[(r, "pgha", t)][1] < v[(r, "haproxy", t)][1] for r in rounds)
p("")
p(f"pgha's latency was lower than HAProxy's in {wins} of {len(rounds)} rounds.")
p("")
p("## Every round (tps; latency-c1: µs; ratio to direct of the same round in parentheses)")
p("")
p("| round | order | test | " + " | ".join(targets) + " |")
p("| --- | --- | --- |" + " --- |" * len(targets))
for r in rounds:
    o = " → ".join(order[r][i] for i in sorted(order[r]))
    for t in tests:
        if t == "latency-c1":
            cells = [f"{v[(r, x, t)][1] * 1000:.0f}" for x in targets]
        else:
            d = v[(r, "direct", t)][0]
            cells = [f"{v[(r, x, t)][0]:.0f}" + ("" if x == "direct" else f" ({v[(r, x, t)][0] / d:.3f})") for x in targets]
        p(f"| {r} | {o} | {t} | " + " | ".join(cells) + " |")
p("")
p("Raw pgbench output of every run: ROUND-TARGET-TEST.txt in this directory.")
open(f"{out}/summary.md", "w").write("\n".join(L) + "\n")
print("\n".join(L))
EOF
echo "results: $out" >&2
