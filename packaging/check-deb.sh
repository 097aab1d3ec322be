#!/usr/bin/env bash
# Builds the pgha .deb and checks it installed: `systemd-analyze verify` of both units (any
# complaint about them fails), `pgha --version` from /usr/bin, the shipped example config
# valid, and the package removed again.
#   packaging/check-deb.sh [--bin PATH] [--scratch]
# --bin: the binary to package (as build-deb.sh; test.sh passes its debug build).
# As root on a machine where pgha is not installed (CI's throwaway machine) it installs with
# `dpkg -i` and removes with `dpkg -r` (and --purge); otherwise, or with --scratch, it unpacks into a
# scratch root (with this machine's systemd units beside it) and verifies with --root.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

bin_args=()
scratch=0
while [ "$#" -gt 0 ]; do
  case "$1" in
    --bin) bin_args=(--bin "$2"); shift 2 ;;
    --scratch) scratch=1; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "check-deb.sh: unknown argument $1 (--bin PATH, --scratch)" >&2; exit 2 ;;
  esac
done
fail() { echo "check-deb.sh: FAILED: $*" >&2; exit 1; }
command -v systemd-analyze >/dev/null || fail "systemd-analyze is missing (apt-get install systemd)"

work="$(mktemp -d)"
installed=0
cleanup() {
  if [ "$installed" = 1 ]; then
    dpkg --purge pgha >/dev/null || echo "check-deb.sh: dpkg --purge pgha failed: remove it yourself" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT

deb="$("$here/build-deb.sh" "${bin_args[@]}" --out "$work" | tail -n1)"
[ -f "$deb" ] || fail "build-deb.sh made no package"
version="$(dpkg-deb -f "$deb" Version)"
echo "check-deb.sh: built $deb"
for path in ./usr/bin/pgha ./usr/lib/systemd/system/pgha-agent.service \
  ./usr/lib/systemd/system/pgha-proxy.service ./usr/share/doc/pgha/copyright \
  ./usr/share/doc/pgha/README.md ./usr/share/doc/pgha/examples/node.toml ./etc/pgha/; do
  dpkg-deb -c "$deb" | awk '{print $6}' | grep -qxF "$path" || fail "$path is not in the package"
done

status() { dpkg-query -W -f '${db:Status-Status}' pgha 2>/dev/null || true; }
if [ "$scratch" = 0 ] && [ "$(id -u)" = 0 ] && { [ -z "$(status)" ] || [ "$(status)" = not-installed ]; }; then
  root=""
  dpkg -i "$deb" || fail "dpkg -i $deb"
  installed=1
  [ "$(status)" = installed ] || fail "dpkg says pgha is $(status), not installed"
  echo "check-deb.sh: installed with dpkg -i"
else
  root="$work/root"
  mkdir -p "$root"
  dpkg-deb -x "$deb" "$root"
  # systemd's own units (sysinit.target, ...), which verify loads too.
  cp -an /usr/lib/systemd/system/. "$root/usr/lib/systemd/system/"
  echo "check-deb.sh: unpacked into the scratch root $root"
fi

# verify exits 0 on a bad setting (it only warns): any word about our units fails.
verify=(systemd-analyze verify)
[ -n "$root" ] && verify+=(--root="$root")
said="$("${verify[@]}" pgha-agent.service pgha-proxy.service 2>&1)" ||
  fail "systemd-analyze verify:"$'\n'"$said"
if [ -n "$said" ]; then
  echo "$said" >&2
  if grep -q pgha <<<"$said"; then fail "systemd-analyze verify complains about the units"; fi
fi
echo "check-deb.sh: systemd-analyze verify: both units clean"

pgha="$root/usr/bin/pgha"
got="$("$pgha" --version)" || fail "$pgha --version"
[ "$got" = "pgha $version" ] || fail "$pgha --version says '$got', the package is $version"
"$pgha" config validate "$root/usr/share/doc/pgha/examples/node.toml" >/dev/null ||
  fail "the shipped example node.toml is not valid"
echo "check-deb.sh: $got from $pgha; the example node.toml is valid"

if [ "$installed" = 1 ]; then
  dpkg -r pgha >/dev/null || fail "dpkg -r pgha"
  [ ! -e /usr/bin/pgha ] || fail "/usr/bin/pgha is still there after dpkg -r"
  dpkg --purge pgha >/dev/null || fail "dpkg --purge pgha"
  installed=0
  [ "$(status)" = not-installed ] || [ -z "$(status)" ] || fail "pgha is $(status) after dpkg --purge"
  echo "check-deb.sh: removed with dpkg -r, then purged"
fi
echo "check-deb.sh: ok"
