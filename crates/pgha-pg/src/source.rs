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

impl SourceServer<'_> {
    /// The libpq connection string of the source: address, TLS verification and role.
    pub fn conninfo(&self) -> String {
        format!(
            "{} user={}",
            crate::tls::conninfo_target(self.name, self.host, self.port, self.ca_cert),
            crate::conf::quote_conninfo(self.user)
        )
    }
}
