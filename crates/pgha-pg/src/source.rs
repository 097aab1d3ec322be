//! A member that a PostgreSQL program copies from (pg_basebackup, pg_rewind): where it is, the
//! name its certificate must carry, and the role and password file to log in with.

use std::path::Path;

/// The source server of a clone or a rewind.
#[derive(Debug, Clone)]
pub struct SourceServer<'a> {
    /// The source member's name: what its TLS certificate must name.
    pub name: &'a str,
    pub host: &'a str,
    pub port: u16,
    /// The role to log in as (the replication role for a clone, the superuser for a rewind).
    pub user: &'a str,
    /// libpq password file holding that role's password.
    pub passfile: &'a Path,
    /// The cluster CA: the source must prove its name with a certificate from it (`None`:
    /// no TLS).
    pub ca_cert: Option<&'a Path>,
}

/// libpq settings that end a connection to a silent source (see [`SourceServer::conninfo`]).
const SILENT_SOURCE: &str = "connect_timeout=5 keepalives=1 keepalives_idle=5 \
                             keepalives_interval=2 keepalives_count=3 tcp_user_timeout=15000";

impl SourceServer<'_> {
    /// The libpq connection string of the source: address, TLS verification, role, and
    /// how soon a source gone silent is given up (a connect in 5 s; keepalives after 5 s
    /// without a word, 3 probes 2 s apart; data sent and not acknowledged for 15 s): a clone
    /// or rewind whose source's host died or was cut off fails in seconds and is tried again
    /// from the leader then, instead of waiting out TCP for up to two hours (found by review).
    pub fn conninfo(&self) -> String {
        format!(
            "{} user={} {SILENT_SOURCE}",
            crate::tls::conninfo_target(self.name, self.host, self.port, self.ca_cert),
            crate::conf::quote_conninfo(self.user)
        )
    }
}
