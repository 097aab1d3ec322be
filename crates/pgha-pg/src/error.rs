//! The error type of everything that touches a PostgreSQL instance.

use std::path::PathBuf;

/// What went wrong while running or inspecting PostgreSQL. Each variant says enough for an
/// operator to act on it; [`PgError::is_retryable`] tells a control loop whether to try again.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error(
        "PostgreSQL server programs not found (looked in: {searched}). Install them \
         (Debian/Ubuntu: `apt-get install postgresql`) or set `postgresql.bin_dir` in the config"
    )]
    BinariesNotFound { searched: String },

    #[error("{dir}: {program} is missing; the PostgreSQL server programs there are incomplete (Debian/Ubuntu: `apt-get install postgresql`)")]
    ProgramMissing { dir: PathBuf, program: String },

    #[error(
        "PostgreSQL {found} in {dir} is too old: pgha supports PostgreSQL {min} to {max} \
         (Debian/Ubuntu: `apt-get install postgresql`, or point `pgha up --pg-bin-dir` or `postgresql.bin_dir` at a newer one)",
        min = crate::binaries::MIN_MAJOR,
        max = crate::binaries::MAX_TESTED_MAJOR
    )]
    VersionTooOld { found: String, dir: PathBuf },

    #[error("could not read the version of {program}: {detail}")]
    VersionUnreadable { program: PathBuf, detail: String },

    #[error("OS user `{user}` (which runs PostgreSQL when pgha runs as root) does not exist; create it (`useradd --system postgres`) or set `postgresql.os_user`")]
    OsUserMissing { user: String },

    #[error("OS user `{user}` cannot reach {path}: {ancestor} is not traversable by it; choose a directory outside it (for example under /tmp or /var/lib) or `chmod o+x {ancestor}`")]
    PathNotReachable {
        user: String,
        path: PathBuf,
        ancestor: PathBuf,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{program} failed ({status}){}", tail_block(.output_tail))]
    CommandFailed {
        program: String,
        status: String,
        output_tail: String,
    },

    #[error("member {member}: PostgreSQL did not start ({status}); last lines of {log}:{}", tail_block(.log_tail))]
    StartFailed {
        member: String,
        status: String,
        log: PathBuf,
        log_tail: String,
    },

    #[error("PostgreSQL {version} refuses it: {detail}")]
    SettingsRefused { version: String, detail: String },

    #[error("{what} timed out after {seconds} s")]
    Timeout { what: String, seconds: u64 },

    #[error(
        "member {member}: not starting {}: a rewind began on it and did not finish \
         ({marker} is there), so its files mix two histories; it is re-cloned from the leader",
        .data.display(), marker = .marker.display()
    )]
    RewindIncomplete {
        member: String,
        data: std::path::PathBuf,
        marker: std::path::PathBuf,
    },

    #[error(
        "member {member}: cannot tell whether a postmaster runs on {} (its postmaster.pid or \
         /proc could not be read: no descriptor left, an I/O error): nothing is stopped on a guess",
        .data.display()
    )]
    PostmasterUnknown {
        member: String,
        data: std::path::PathBuf,
    },

    #[error(
        "{}: {problem}; it is what this member keeps of its cluster beside its data: mend or \
         remove it (remove it only while the store still holds the cluster)",
        .path.display()
    )]
    KeptFileInvalid { path: PathBuf, problem: String },

    #[error("SQL on {member}: {source}")]
    Sql {
        member: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

fn tail_block(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        let indented: Vec<String> = tail.lines().map(|l| format!("    {l}")).collect();
        format!("\n{}", indented.join("\n"))
    }
}

impl PgError {
    /// Turns a SQL error on `member` into a [`PgError::Sql`]: `.map_err(PgError::sql(member))`.
    pub fn sql(member: &str) -> impl FnOnce(tokio_postgres::Error) -> PgError + '_ {
        move |source| PgError::Sql {
            member: member.to_string(),
            source,
        }
    }

    /// Whether retrying the same operation later can succeed without operator action.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            PgError::Timeout { .. } | PgError::Sql { .. } | PgError::Io { .. }
        )
    }

    /// PostgreSQL answered, refusing the connection because every slot is taken (SQLSTATE
    /// 53300): alive and busy, not stalled.
    pub fn is_too_many_connections(&self) -> bool {
        match self {
            PgError::Sql { source, .. } => {
                source.code() == Some(&tokio_postgres::error::SqlState::TOO_MANY_CONNECTIONS)
            }
            _ => false,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        PgError::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = PgError> = std::result::Result<T, E>;
