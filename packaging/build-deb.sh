#!/usr/bin/env bash
# Builds the pgha Debian package with dpkg-deb: /usr/bin/pgha, the pgha-agent and pgha-proxy
# systemd units, /etc/pgha and /var/lib/pgha, and the docs with an example node config.
#   packaging/build-deb.sh [--bin PATH] [--out DIR]
# --bin: the pgha binary to ship (default: `cargo build --release -p pgha --bin pgha` and
# target/release/pgha); it is stripped into the package. --out: where the .deb goes (default
# target/deb). Prints the .deb's path last. Install it with `apt install ./pgha_*.deb`.
# DEB_COMPRESSION: dpkg-deb's compressor (default xz; test.sh uses gzip, which is much faster).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"

bin=""
out="$root/target/deb"
while [ "$#" -gt 0 ]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "build-deb.sh: unknown argument $1 (--bin PATH, --out DIR)" >&2; exit 2 ;;
  esac
done
for tool in dpkg-deb dpkg strip; do
  command -v "$tool" >/dev/null || { echo "build-deb.sh: $tool is missing (apt-get install dpkg binutils)" >&2; exit 1; }
done

if [ -z "$bin" ]; then
  (cd "$root" && cargo build --release --locked -p pgha --bin pgha)
  bin="$root/target/release/pgha"
fi
[ -x "$bin" ] || { echo "build-deb.sh: $bin is not an executable" >&2; exit 1; }

# The version of crates/pgha/Cargo.toml (its own, or the workspace's it inherits).
version_of() { sed -n '/^\[\(package\|workspace.package\)\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' "$1" | head -n1; }
version="$(version_of "$root/crates/pgha/Cargo.toml")"
[ -n "$version" ] || version="$(version_of "$root/Cargo.toml")"
[ -n "$version" ] || { echo "build-deb.sh: no version in crates/pgha/Cargo.toml nor the workspace's" >&2; exit 1; }
arch="$(dpkg --print-architecture)"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
pkg="$stage/pgha"
install -d -m 0755 "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/usr/lib/systemd/system" "$pkg/etc/pgha" \
  "$pkg/var/lib/pgha" "$pkg/usr/share/doc/pgha/examples"
strip --strip-unneeded -o "$pkg/usr/bin/pgha" "$bin"
chmod 0755 "$pkg/usr/bin/pgha"
install -m 0644 "$here/systemd/pgha-agent.service" "$here/systemd/pgha-proxy.service" \
  "$pkg/usr/lib/systemd/system/"
install -m 0644 "$here/examples/node.toml" "$pkg/usr/share/doc/pgha/examples/node.toml"
install -m 0644 "$root/README.md" "$pkg/usr/share/doc/pgha/README.md"
for doc in operations design security; do
  install -m 0644 "$root/docs/$doc.md" "$pkg/usr/share/doc/pgha/$doc.md"
done
cat > "$pkg/usr/share/doc/pgha/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: pgha
Comment: PostgreSQL high availability manager. The binary also contains the Rust crates listed
 in the source's Cargo.lock, each under its own license (MIT and/or Apache-2.0 for most).

Files: *
Copyright: the pgha authors
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
for script in postinst prerm postrm; do
  install -m 0755 "$here/debian/$script" "$pkg/DEBIAN/$script"
done

# Shared libraries as dpkg-shlibdeps finds them (dpkg-dev), else the two a Rust binary links.
libs="libc6, libgcc-s1"
if command -v dpkg-shlibdeps >/dev/null; then
  mkdir -p "$stage/src/debian"
  printf 'Source: pgha\n\nPackage: pgha\nArchitecture: any\n' >"$stage/src/debian/control"
  found="$(cd "$stage/src" && dpkg-shlibdeps -O --warnings=0 "$pkg/usr/bin/pgha" 2>/dev/null |
    sed -n 's/^shlibs:Depends=//p')"
  [ -n "$found" ] && libs="$found"
fi
size="$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)"
# pgha runs the PostgreSQL server programs (postgres, initdb, pg_ctl, pg_basebackup, pg_rewind,
# pg_controldata) of a supported major version (14 to 18): any of Debian's or PGDG's server
# packages, or the `postgresql` metapackage of the distribution. etcd usually runs on three hosts
# of its own or beside the members: suggested, never pulled in (Recommends would start a
# one-node etcd on every host).
cat > "$pkg/DEBIAN/control" <<EOF
Package: pgha
Version: $version
Architecture: $arch
Maintainer: pgha developers <pgha@localhost>
Installed-Size: $size
Depends: $libs, postgresql | postgresql-18 | postgresql-17 | postgresql-16 | postgresql-15 | postgresql-14
Suggests: etcd-server, etcd-client
Section: database
Priority: optional
Description: PostgreSQL high availability manager
 pgha runs PostgreSQL streaming replication for you: one agent per member over etcd
 bootstraps, clones, promotes the best standby when the primary dies, rewinds a former
 primary before it follows again, and a proxy gives clients one address.
 .
 This package ships the pgha binary, the pgha-agent and pgha-proxy systemd units (neither is
 enabled: write /etc/pgha/node.toml first, see /usr/share/doc/pgha/examples/node.toml) and the
 documentation.
EOF

mkdir -p "$out"
deb="$out/pgha_${version}_${arch}.deb"
dpkg-deb --root-owner-group "-Z${DEB_COMPRESSION:-xz}" --build "$pkg" "$deb" >/dev/null
echo "$deb"
