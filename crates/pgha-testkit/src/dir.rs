//! Temporary directories the PostgreSQL OS user can traverse (the tests may run as root).

use std::os::unix::fs::PermissionsExt;

/// A temporary directory named `PREFIX…`, mode 0755, removed on drop.
pub fn traversable_tempdir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod 755 the test directory");
    dir
}
