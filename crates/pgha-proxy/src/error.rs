//! Error types of the proxy and the prober, each saying whether a retry makes sense.

use std::io;
use std::time::Duration;

/// What went wrong serving one client, or setting the proxy up.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: io::Error },
    /// The client did not send a complete startup packet within the startup timeout.
    #[error("client startup packet not received within {0:?}")]
    StartupTimeout(Duration),
    /// A plaintext client did not finish authenticating within the authentication timeout.
    #[error("client authentication not finished within {0:?}")]
    AuthTimeout(Duration),
    /// No byte moved either way in a session for the idle timeout.
    #[error("session idle for {0:?}")]
    IdleTimeout(Duration),
    /// A backend no longer accepts TLS although the proxy told the client it would.
    #[error("backend {0} refused the SSLRequest it used to accept")]
    BackendRefusedTls(String),
    /// The client sent something that is not a valid startup sequence.
    #[error("invalid startup packet: {0}")]
    BadStartup(&'static str),
    /// No target appeared (or none could be reached) within the hold timeout.
    #[error("no {role} target available after {waited:?}")]
    NoTarget {
        role: &'static str,
        waited: Duration,
    },
    /// Connecting to a backend failed.
    #[error("cannot connect to backend {addr}: {source}")]
    BackendConnect { addr: String, source: io::Error },
    /// The configured `max_client_conn` was reached.
    #[error("too many client connections (max {0})")]
    TooManyConnections(usize),
    /// The proxy is shutting down.
    #[error("proxy shutting down")]
    Shutdown,
    /// The session was closed because its backend stopped being a valid target (leader change).
    #[error("backend {0} is no longer a valid target")]
    TargetChanged(String),
    /// The proxy's TLS files could not be read or used.
    #[error("proxy TLS: {what}: {detail}")]
    TlsSetup { what: String, detail: String },
    /// A client did not start TLS although the proxy requires it.
    #[error("client did not start TLS, which this proxy requires")]
    TlsRequired,
    /// The TLS handshake with a backend failed (its certificate did not verify, or it refused).
    #[error("TLS with backend {addr} ({name}) failed: {source}")]
    BackendTls {
        addr: String,
        name: String,
        source: io::Error,
    },
    /// A backend sent a startup message the proxy cannot read.
    #[error("backend startup: {0}")]
    BadBackendMessage(&'static str),
    /// A client over TLS to the proxy offered SCRAM channel binding, which cannot reach
    /// PostgreSQL through a proxy that terminates TLS.
    #[error("SCRAM channel binding requested through a TLS-terminating proxy")]
    ChannelBinding,
    /// A read-write session's backend answered its startup as a standby (`in_hot_standby`):
    /// the primary the proxy routed by was demoted since it was last confirmed.
    #[error("backend {0} answered a read-write session's startup in recovery")]
    BackendInRecovery(String),
    /// A read-only session's backend, chosen as a standby, answered its startup as a primary
    /// (`in_hot_standby = off`): that standby was promoted since it was last checked.
    #[error(
        "backend {0}, chosen as a standby, answered a read-only session's startup as a primary"
    )]
    BackendNotInRecovery(String),
    /// A client's SCRAM exchange with the proxy failed (wrong password, malformed message,
    /// channel binding); the client was told as PostgreSQL would tell it.
    #[error("client SCRAM: {0}")]
    ClientScram(crate::scram::ScramError),
    /// The proxy's SCRAM login to PostgreSQL for an authenticated client failed.
    #[error("SCRAM login to the backend: {0}")]
    BackendScram(crate::scram::ScramError),
    /// PostgreSQL refused the proxy's SCRAM login for a client (its error was relayed).
    #[error("the backend refused the login")]
    BackendRefusedLogin,
    /// Socket I/O failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

impl ProxyError {
    /// Whether the same operation may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProxyError::NoTarget { .. }
                | ProxyError::BackendConnect { .. }
                | ProxyError::TooManyConnections(_)
                | ProxyError::TargetChanged(_)
                | ProxyError::BackendRefusedTls(_)
                | ProxyError::BackendTls { .. }
                | ProxyError::Io(_)
        )
    }
}

/// What went wrong probing one candidate.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Connecting or querying did not finish in time.
    #[error("probe of {addr} timed out after {after:?}")]
    Timeout { addr: String, after: Duration },
    /// The PostgreSQL client reported an error.
    #[error("probe of {addr} failed: {source}")]
    Postgres {
        addr: String,
        source: tokio_postgres::Error,
    },
    /// The server answered something unexpected.
    #[error("probe of {addr}: unexpected answer: {what}")]
    Unexpected { addr: String, what: String },
}

impl ProbeError {
    /// Probes are always worth retrying on the next round.
    pub fn is_retryable(&self) -> bool {
        true
    }
}
