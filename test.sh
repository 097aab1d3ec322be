#!/usr/bin/env bash
# Runs pgha's whole test suite against real PostgreSQL and etcd on loopback.
# Installs the Debian packages the tests need when they are missing, and fails loudly if it cannot.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1 || missing+=(postgresql)
command -v pgbench >/dev/null 2>&1 || missing+=(postgresql-contrib)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then missing+=(postgresql); fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing missing packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq "${missing[@]}"; }; then
    echo "test.sh: could not install ${missing[*]}; install them and run ./test.sh again" >&2
    exit 1
  fi
fi

# End-to-end tests start several PostgreSQL instances each: two at a time is enough for 2 cores.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-2}"
cargo test --workspace --locked "$@"
