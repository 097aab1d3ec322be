#!/usr/bin/env bash
# Runs pgha's whole test suite against real PostgreSQL and etcd on loopback.
# Installs the Debian packages the tests need when they are missing, and fails loudly if it cannot.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh test

# End-to-end tests start several PostgreSQL instances each: two at a time is enough for 2 cores.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-2}"
# Lints first: among them the decision core's purity (crates/pgha-core/clippy.toml: no clock,
# no I/O, no randomness, no hash-ordered collections in pgha-core).
if [ "$#" -eq 0 ]; then
  cargo clippy --workspace --all-targets --locked -- -D warnings
fi
cargo test --workspace --locked "$@"
# The Debian package of the debug build the tests just used (no release build): built,
# installed (as root: on this machine, then removed; else into a scratch root), its systemd
# units checked with systemd-analyze verify (packaging/check-deb.sh).
if [ "$#" -eq 0 ]; then
  DEB_COMPRESSION=gzip packaging/check-deb.sh --bin "${CARGO_TARGET_DIR:-target}/debug/pgha"
fi
