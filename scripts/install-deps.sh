#!/usr/bin/env bash
# Installs the Debian packages pgha needs when they are missing: `scripts/install-deps.sh build`
# for building and running pgha, `scripts/install-deps.sh test` for the test suite too.
# Fails loudly, naming the packages, when it cannot install them.
set -euo pipefail
what="${1:-build}"
missing=()
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1 || missing+=(postgresql)
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then missing+=(postgresql); fi
if [ "$what" = test ]; then
  command -v pgbench >/dev/null 2>&1 || missing+=(postgresql-contrib)
  command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
  # The fault tests run hosts in network namespaces and blackhole links with iptables DROP.
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  command -v iptables >/dev/null 2>&1 || missing+=(iptables)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
echo "pgha: installing missing packages: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq "${missing[@]}"; }; then
  echo "pgha: could not install ${missing[*]}; install them (apt-get install ${missing[*]}) and try again" >&2
  exit 1
fi
