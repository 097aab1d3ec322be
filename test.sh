#!/usr/bin/env bash
# Runs pgha's whole test suite against real PostgreSQL and etcd on loopback.
# Installs the Debian packages the tests need when they are missing, and fails loudly if it cannot.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh test

# End-to-end tests start several PostgreSQL instances each: two at a time is enough for 2 cores.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-2}"
cargo test --workspace --locked "$@"
