//! Where each supported PostgreSQL major version's programs are on this machine: 15 from
//! Debian, the others fetched by `scripts/install-deps.sh test` into `$PGHA_CACHE`.

use std::path::PathBuf;

/// The major versions pgha supports and tests, oldest first.
pub const MAJORS: [u32; 5] = [14, 15, 16, 17, 18];

/// Debian's PostgreSQL 15 programs.
pub const DEBIAN_15: &str = "/usr/lib/postgresql/15/bin";

/// The server builds `scripts/install-deps.sh test` fetches (keep the two lists equal).
pub const FETCHED: &[(u32, &str)] = &[
    (14, "14.23.0"),
    (16, "16.15.0"),
    (17, "17.11.0"),
    (18, "18.6.0"),
];

/// Where `scripts/install-deps.sh test` caches what the tests need beyond Debian's packages
/// (`PGHA_CACHE`, default `/var/cache/pgha`).
pub fn deps_cache() -> PathBuf {
    std::env::var_os("PGHA_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/pgha"))
}

/// `bin/` of the PostgreSQL `major` programs (server, psql, ...); panics, saying how to get
/// them, when absent.
pub fn bin_dir(major: u32) -> PathBuf {
    if major == 15 {
        let dir = PathBuf::from(DEBIAN_15);
        assert!(
            dir.join("postgres").exists(),
            "PostgreSQL 15 not found in {}: apt-get install postgresql-15",
            dir.display()
        );
        return dir;
    }
    let (_, version) = FETCHED
        .iter()
        .find(|(m, _)| *m == major)
        .unwrap_or_else(|| panic!("no server build of PostgreSQL {major} is fetched"));
    let dir = deps_cache().join(format!("pg-{version}")).join("bin");
    assert!(
        dir.join("postgres").exists(),
        "PostgreSQL {version} not found in {}: run scripts/install-deps.sh test",
        dir.display()
    );
    dir
}
