//! Refuses what pgha would trust — a cluster directory, its config and secrets files, a node
//! config, the PostgreSQL binaries — when someone other than the invoking user or root could
//! have written it: pgha runs as root, runs the programs a config names and hands out the
//! passwords a secrets file holds.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why a path is not trusted, and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum Untrusted {
    #[error(
        "{path} belongs to uid {owner}, neither you (uid {me}) nor root: pgha would trust what \
         it holds; use one you own, or `chown` it"
    )]
    Owner { path: PathBuf, owner: u32, me: u32 },
    #[error(
        "{path} is writable by {who} (mode {mode:04o}): they could change what pgha runs or \
         reads; `chmod go-w {path}`"
    )]
    Writable {
        path: PathBuf,
        who: &'static str,
        mode: u32,
    },
    #[error(
        "{path} is readable by others (mode {mode:04o}) but holds the cluster's passwords; \
         `chmod 600 {path}`"
    )]
    SecretsExposed { path: PathBuf, mode: u32 },
    #[error(
        "pgha writes in {} as root, but a directory above it is not safe: {above}",
        .path.display()
    )]
    Above {
        path: PathBuf,
        above: Box<Untrusted>,
    },
    #[error("cannot check {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `path` (followed if a link: what pgha uses is the target) is owned by the invoking user
/// or root, and writable by no one else.
pub fn check(path: &Path) -> Result<(), Untrusted> {
    let meta = std::fs::metadata(path).map_err(|source| Untrusted::Unreadable {
        path: path.into(),
        source,
    })?;
    let me = nix::unistd::Uid::effective().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(Untrusted::Owner {
            path: path.into(),
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.mode() & 0o7777;
    let who = if mode & 0o002 != 0 {
        "every user"
    } else if mode & 0o020 != 0 {
        "its group"
    } else {
        return Ok(());
    };
    Err(Untrusted::Writable {
        path: path.into(),
        who,
        mode,
    })
}

/// Every directory above `path` — as written and as resolved through symbolic links — is
/// trusted as [`check`] says, or is a sticky directory (such as /tmp: nobody may rename or
/// remove what others own in it) that [`check`] would trust but for that. Whoever could write
/// one of them could put another directory, or a link, where pgha writes as root; such as
/// the PostgreSQL OS user, were the directory in its home (`sudo pgha up --dir ~postgres/x`).
pub fn check_ancestors(path: &Path) -> Result<(), Untrusted> {
    let absolute = std::path::absolute(path).map_err(|source| Untrusted::Unreadable {
        path: path.into(),
        source,
    })?;
    let mut chains = vec![absolute.clone()];
    if let Ok(resolved) = std::fs::canonicalize(&absolute) {
        chains.push(resolved);
    }
    for chain in &chains {
        for dir in chain.ancestors().skip(1) {
            let Ok(meta) = std::fs::metadata(dir) else {
                continue; // not there yet: created by pgha, as root
            };
            match check(dir) {
                Err(Untrusted::Writable { .. }) if meta.mode() & 0o1000 != 0 => {}
                Err(above) => {
                    return Err(Untrusted::Above {
                        path: path.into(),
                        above: Box::new(above),
                    })
                }
                Ok(()) => {}
            }
        }
    }
    Ok(())
}

/// A secrets file: trusted as [`check`] says, and readable by its owner only.
pub fn check_secrets(path: &Path) -> Result<(), Untrusted> {
    check(path)?;
    let mode = std::fs::metadata(path)
        .map_err(|source| Untrusted::Unreadable {
            path: path.into(),
            source,
        })?
        .mode()
        & 0o7777;
    if mode & 0o077 != 0 {
        return Err(Untrusted::SecretsExposed {
            path: path.into(),
            mode,
        });
    }
    Ok(())
}

/// The PostgreSQL programs pgha runs (as root, or as the OS user with the cluster's data)
/// and their directory must be trusted as the config is.
pub fn check_binaries(bins: &crate::PgBinaries) -> Result<(), Untrusted> {
    check(&bins.dir)?;
    for program in [
        "postgres",
        "initdb",
        "pg_ctl",
        "pg_basebackup",
        "pg_rewind",
        "pg_controldata",
    ] {
        let path = bins.program(program);
        if path.exists() {
            check(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn must_be_root() {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "this test hands a directory to another user: run it as root (CI does)"
        );
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn own_files_not_writable_by_others_are_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgha.toml");
        std::fs::write(&file, "").unwrap();
        chmod(&file, 0o644);
        check(dir.path()).unwrap();
        check(&file).unwrap();
        chmod(&file, 0o600);
        check_secrets(&file).unwrap();
    }

    #[test]
    fn writable_by_others_or_exposed_secrets_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o777);
        let err = check(dir.path()).unwrap_err();
        assert!(matches!(
            err,
            Untrusted::Writable {
                who: "every user",
                ..
            }
        ));
        assert!(err.to_string().contains("chmod go-w"), "{err}");
        chmod(dir.path(), 0o775);
        assert!(matches!(
            check(dir.path()),
            Err(Untrusted::Writable {
                who: "its group",
                ..
            })
        ));
        let secrets = dir.path().join("secrets.toml");
        std::fs::write(&secrets, "").unwrap();
        chmod(&secrets, 0o644);
        let err = check_secrets(&secrets).unwrap_err();
        assert!(matches!(err, Untrusted::SecretsExposed { mode: 0o644, .. }));
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    /// A directory above the one pgha writes in as root, owned or writable by someone else,
    /// is refused; a sticky one (as /tmp) is not; a link is judged by where it leads and by
    /// the directory it sits in.
    #[test]
    fn directories_above_must_be_trusted_too() {
        must_be_root();
        let root = tempfile::tempdir().unwrap();
        let home = root.path().join("home");
        let cluster = home.join("cluster");
        std::fs::create_dir_all(&cluster).unwrap();
        check_ancestors(&cluster).unwrap();
        check_ancestors(&cluster.join("not-yet")).unwrap();
        std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
        let err = check_ancestors(&cluster).unwrap_err();
        assert!(
            matches!(&err, Untrusted::Above { above, .. } if matches!(**above, Untrusted::Owner { owner: 65534, .. })),
            "{err}"
        );
        assert!(err.to_string().contains("a directory above it"), "{err}");
        std::os::unix::fs::chown(&home, Some(0), Some(0)).unwrap();
        chmod(&home, 0o777);
        assert!(check_ancestors(&cluster).is_err());
        chmod(&home, 0o1777);
        check_ancestors(&cluster).unwrap();
        chmod(&home, 0o755);
        // Through a link in a directory others may write: refused though the target is fine.
        let open = root.path().join("open");
        std::fs::create_dir(&open).unwrap();
        chmod(&open, 0o777);
        let link = open.join("link");
        std::os::unix::fs::symlink(&home, &link).unwrap();
        assert!(check_ancestors(&link.join("cluster")).is_err());
        // A trusted link to a directory in one others own: refused.
        let elsewhere = root.path().join("elsewhere");
        std::fs::create_dir_all(elsewhere.join("cluster")).unwrap();
        std::os::unix::fs::chown(&elsewhere, Some(65534), Some(65534)).unwrap();
        let trusted_link = root.path().join("trusted-link");
        std::os::unix::fs::symlink(&elsewhere, &trusted_link).unwrap();
        assert!(check_ancestors(&trusted_link.join("cluster")).is_err());
    }

    #[test]
    fn another_users_directory_is_refused() {
        must_be_root();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
        let err = check(dir.path()).unwrap_err();
        assert!(
            matches!(err, Untrusted::Owner { owner: 65534, .. }),
            "{err}"
        );
    }
}
