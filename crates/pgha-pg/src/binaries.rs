//! Finding the PostgreSQL server programs and reading their version.

use std::path::{Path, PathBuf};

use crate::error::{PgError, Result};

/// The programs pgha runs; all must live in the same directory.
pub const REQUIRED: [&str; 6] = [
    "initdb",
    "pg_ctl",
    "postgres",
    "pg_basebackup",
    "pg_rewind",
    "pg_controldata",
];

/// The oldest PostgreSQL major version pgha runs; older ones are refused (13 and older are out
/// of support upstream, and untested here).
pub const MIN_MAJOR: u32 = 14;

/// The newest PostgreSQL major version tested (crates/pgha/tests/versions.rs runs each of
/// `MIN_MAJOR..=MAX_TESTED_MAJOR`); newer ones are not refused.
pub const MAX_TESTED_MAJOR: u32 = 18;

/// The directory holding the server programs of one PostgreSQL installation, and its version.
#[derive(Debug, Clone)]
pub struct PgBinaries {
    pub dir: PathBuf,
    pub major: u32,
    /// The full version string, e.g. "15.18".
    pub version: String,
}

impl PgBinaries {
    /// The path of one program, e.g. `program("pg_ctl")`.
    pub fn program(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Finds the server programs: `configured` if given, else the directory of `pg_ctl` on
    /// `PATH`, else `pg_config --bindir`, else the newest `/usr/lib/postgresql/<v>/bin`.
    pub fn discover(configured: Option<&Path>) -> Result<Self> {
        if let Some(dir) = configured {
            return Self::at(dir);
        }
        let mut searched = Vec::new();
        for candidate in candidates() {
            searched.push(candidate.display().to_string());
            if candidate.join("pg_ctl").is_file() && candidate.join("initdb").is_file() {
                return Self::at(&candidate);
            }
        }
        if searched.is_empty() {
            searched.push("PATH, pg_config, /usr/lib/postgresql/*/bin".into());
        }
        Err(PgError::BinariesNotFound {
            searched: searched.join(", "),
        })
    }

    /// Checks that `dir` holds every program pgha needs, in a supported version.
    pub fn at(dir: &Path) -> Result<Self> {
        for program in REQUIRED {
            if !dir.join(program).is_file() {
                if program == "pg_ctl" || program == "initdb" {
                    return Err(PgError::BinariesNotFound {
                        searched: dir.display().to_string(),
                    });
                }
                return Err(PgError::ProgramMissing {
                    dir: dir.to_path_buf(),
                    program: program.into(),
                });
            }
        }
        let pg_ctl = dir.join("pg_ctl");
        let output = std::process::Command::new(&pg_ctl)
            .arg("--version")
            .output()
            .map_err(|e| PgError::VersionUnreadable {
                program: pg_ctl.clone(),
                detail: e.to_string(),
            })?;
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        let (major, version) = parse_version(&text).ok_or_else(|| PgError::VersionUnreadable {
            program: pg_ctl.clone(),
            detail: format!("unexpected output {text:?}"),
        })?;
        if major < MIN_MAJOR {
            return Err(PgError::VersionTooOld {
                found: version,
                dir: dir.to_path_buf(),
            });
        }
        Ok(PgBinaries {
            dir: dir.to_path_buf(),
            major,
            version,
        })
    }
}

/// Directories to try, in order, without duplicates.
fn candidates() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut push = |p: PathBuf| {
        if !out.contains(&p) {
            out.push(p);
        }
    };
    if let Some(path) = std::env::var_os("PATH") {
        for entry in std::env::split_paths(&path) {
            let pg_ctl = entry.join("pg_ctl");
            if pg_ctl.is_file() {
                // Follow symlinks such as /usr/local/bin/pg_ctl -> /usr/lib/postgresql/15/bin/pg_ctl,
                // so the sibling programs are found too.
                let real = std::fs::canonicalize(&pg_ctl).unwrap_or(pg_ctl);
                if let Some(dir) = real.parent() {
                    push(dir.to_path_buf());
                }
            }
        }
    }
    if let Ok(output) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
    {
        if output.status.success() {
            let dir = String::from_utf8_lossy(&output.stdout).trim().to_string();
            if !dir.is_empty() {
                push(PathBuf::from(dir));
            }
        }
    }
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, e.path().join("bin")))
        })
        .collect();
    versioned.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    for (_, dir) in versioned {
        push(dir);
    }
    out
}

/// Parses `pg_ctl (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` into (15, "15.18").
pub fn parse_version(text: &str) -> Option<(u32, String)> {
    let rest = text.split("(PostgreSQL)").nth(1)?.trim();
    let version = rest.split_whitespace().next()?.to_string();
    let major = version
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    Some((major, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(
            parse_version("pg_ctl (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"),
            Some((15, "15.18".into()))
        );
        assert_eq!(
            parse_version("pg_ctl (PostgreSQL) 12.1\n"),
            Some((12, "12.1".into()))
        );
        assert_eq!(
            parse_version("pg_ctl (PostgreSQL) 17beta1\n"),
            Some((17, "17beta1".into()))
        );
        assert_eq!(parse_version("something else"), None);
    }
}
