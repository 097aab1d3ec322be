//! Where each supported PostgreSQL major version's server programs are on this machine: 15
//! from Debian, the others fetched by `scripts/install-deps.sh test` into `$PGHA_CACHE`.

use std::path::PathBuf;

/// The server builds `scripts/install-deps.sh test` fetches (keep the two lists equal).
pub const FETCHED: &[(u32, &str)] = &[
    (14, "14.23.0"),
    (16, "16.15.0"),
    (17, "17.11.0"),
    (18, "18.6.0"),
];

/// `bin/` of the PostgreSQL `major` server programs; panics, saying how to get them, when absent.
pub fn bin_dir(major: u32) -> PathBuf {
    if major == 15 {
        let dir = PathBuf::from("/usr/lib/postgresql/15/bin");
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
    let cache = std::env::var_os("PGHA_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/pgha"));
    let dir = cache.join(format!("pg-{version}")).join("bin");
    assert!(
        dir.join("postgres").exists(),
        "PostgreSQL {version} not found in {}: run scripts/install-deps.sh test",
        dir.display()
    );
    dir
}
