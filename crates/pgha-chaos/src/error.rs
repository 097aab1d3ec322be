//! Why a campaign could not start, go on, or clean up after itself.

use pgha_host::client::ClientError;

/// A campaign's failure (a broken promise is no error: it is in the report).
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// The cluster is not healthy enough to be put under faults; nothing was done.
    #[error("the cluster is not healthy, so no fault was injected:\n  - {}\nfix it (see `pgha status`) and run again", .reasons.join("\n  - "))]
    Unhealthy { reasons: Vec<String> },
    /// The cluster's API did not answer as it should.
    #[error("the cluster's API: {0}")]
    Api(#[from] ClientError),
    /// A SQL statement of the campaign's own (setup, read-back, cleanup) failed.
    #[error("{what}: {source}")]
    Sql {
        what: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{what}: no answer within {seconds} s")]
    Timeout { what: String, seconds: u64 },
    /// A fault could not be injected (e.g. no postmaster to kill).
    #[error("cannot inject {fault}: {why}")]
    Inject {
        fault: String,
        why: crate::inject_error::InjectError,
    },
    #[error("{0}")]
    Usage(String),
    #[error("write {file}: {source}")]
    Write {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

impl ChaosError {
    /// Whether trying again later may work (the cluster or its API was busy or down).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            ChaosError::Unhealthy { .. } | ChaosError::Api(_) | ChaosError::Timeout { .. }
        )
    }
}

impl ChaosError {
    /// A failed connection for `what`.
    pub fn connect(what: impl Into<String>, e: crate::target::ConnectError) -> Self {
        match e {
            crate::target::ConnectError::Pg(source) => ChaosError::Sql {
                what: what.into(),
                source,
            },
            crate::target::ConnectError::TimedOut => ChaosError::Timeout {
                what: what.into(),
                seconds: crate::workload::CONNECT_TIMEOUT.as_secs(),
            },
        }
    }
}
