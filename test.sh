#!/usr/bin/env bash
# Runs pgha's whole test suite against real PostgreSQL and etcd on loopback.
# Installs the Debian packages the tests need when they are missing, and fails loudly if it cannot.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh test

# End-to-end tests start several PostgreSQL instances each: two at a time is enough for 2 cores.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-2}"
# The build takes about 2 GB of disk (line tables only, Cargo.toml's [profile.dev]); incremental
# compilation would take as much again and gains nothing on a clean clone. Turning it on or off
# rebuilds nothing.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# With arguments: one `cargo test` with them (e.g. `./test.sh -p pgha-core`).
if [ "$#" -gt 0 ]; then
  exec cargo test --workspace --locked "$@"
fi

# The build and the test clusters (up to about 3 GB under TMPDIR at once) need room: say how much
# there is, so that a run failing for want of it shows that at its top.
mkdir -p "${CARGO_TARGET_DIR:-target}"
echo "test.sh: free space before the build:"
df -h "${TMPDIR:-/tmp}" "${CARGO_TARGET_DIR:-target}" || true

# Format and lints first: among the lints the decision core's purity (crates/pgha-core/clippy.toml: no clock,
# no I/O, no randomness, no hash-ordered collections in pgha-core).
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --no-run

# Two lanes at once. The fault tests (crates/pgha/tests/faults.rs: one cluster at a time on
# network namespaces of their own, mostly waiting out timers) run beside every other test; the
# run fails if either lane does. The fault lane's output follows the other's. Every cargo call
# selects the whole workspace, as the build above did: selecting fewer packages would change
# the features cargo unifies, and build everything again.
faults_log="$(mktemp -t pgha-faults-lane.XXXXXX)"
cargo test --workspace --locked --test faults >"$faults_log" 2>&1 &
faults_pid=$!
kill_tree() {
  local child
  for child in $(pgrep -P "$1"); do kill_tree "$child"; done
  kill "$1" 2>/dev/null || true
}
# an interrupted run takes the fault lane with it, test clusters included
trap 'kill_tree "$faults_pid"' EXIT

# The other lane: two test binaries at a time, one test thread each, taken from a queue whose
# longest binaries come first, so that neither worker idles while the other ends a long binary.
# (Run one binary after another with two threads each, the lane waited on each binary's longest
# test: 1,697 s for 3,047 s of tests in a whole-suite run on 2026-12-08.) The order is by that
# run's times; a binary not named here comes after them (a name without its file fails loudly).
longest_first=(distributed failover chaos synchronous versions day2 simulation fencing up
  etcd_contract control_plane logical_slots tls)
queue=()
for name in "${longest_first[@]}"; do queue+=("--test $name"); done
for file in crates/*/tests/*.rs; do
  name="$(basename "$file" .rs)"
  [[ "$name" = faults || " ${longest_first[*]} " = *" $name "* ]] || queue+=("--test $name")
done
queue+=("--lib --bins")
others_dir="$(mktemp -d -t pgha-others-lane.XXXXXX)"
# one queue entry: its whole output at once when it ends (the two workers' never interleave)
run_entry() {
  local log rc=0
  log="$others_dir/$(tr -c 'a-z_\n' _ <<<"$*").log"
  cargo test --workspace --locked "$@" >"$log" 2>&1 || rc=$?
  flock "$others_dir/print.lock" cat "$log"
  return "$rc"
}
export -f run_entry
export others_dir
others_log="$(mktemp -t pgha-others-lane.XXXXXX)"
others_rc=0
{
  printf '%s\n' "${queue[@]}" | RUST_TEST_THREADS=1 xargs -P 2 -I{} bash -c 'run_entry {}' &&
    cargo test --workspace --locked --doc
} 2>&1 | tee "$others_log" || others_rc=$?
rm -rf "$others_dir"
faults_rc=0
wait "$faults_pid" || faults_rc=$?
trap - EXIT
echo "---- the fault lane (cargo test --workspace --test faults), rc=$faults_rc ----"
cat "$faults_log"
if [ "$others_rc" -ne 0 ] || [ "$faults_rc" -ne 0 ]; then
  # Last, where a log cut to its end still shows it: which tests failed and why (each
  # failure's panic message, its thread named after the test; the whole output of each stands
  # above, under "---- NAME stdout ----").
  echo "---- failed tests (other tests rc=$others_rc, fault tests rc=$faults_rc) ----"
  for log in "$others_log" "$faults_log"; do
    grep -E '^test .* \.\.\. FAILED$|^error: (test failed|could not compile)' "$log" || true
    grep -A 15 -E "^thread '.*' (\([0-9]+\) )?panicked at" "$log" |
      grep -v -E '^note: run with `RUST_BACKTRACE|^stack backtrace:|^ +[0-9]+: |^ +at ' |
      tail -n 150 || true
  done
  rm -f "$faults_log" "$others_log"
  # a machine disk filled by something else fails tests of every kind at once: say how full
  echo "---- free space (the test clusters' directories, the build) ----"
  df -h "${TMPDIR:-/tmp}" "${CARGO_TARGET_DIR:-target}" || true
  echo "test.sh: failed (other tests rc=$others_rc, fault tests rc=$faults_rc)" >&2
  exit 1
fi
rm -f "$faults_log" "$others_log"

# The Debian package of the debug build the tests just used (no release build): built,
# installed (as root: on this machine, then removed; else into a scratch root), its systemd
# units checked with systemd-analyze verify (packaging/check-deb.sh).
DEB_COMPRESSION=gzip packaging/check-deb.sh --bin "${CARGO_TARGET_DIR:-target}/debug/pgha"
