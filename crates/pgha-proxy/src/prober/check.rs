//! One check of a member: how the prober connects (credentials, TLS, timing) and the query
//! that tells a primary from a standby, with its WAL position.

use std::time::Duration;

use tokio_postgres::Client;

use crate::error::ProbeError;

/// Credentials and timing of the checks (passed in by the caller; never logged).
#[derive(Clone)]
pub struct ProberConfig {
    /// Role to connect as.
    pub user: String,
    /// Its password, if the server asks for one.
    pub password: Option<String>,
    /// Database to connect to.
    pub dbname: String,
    /// Bound for connecting plus querying one member.
    pub check_timeout: Duration,
    /// Time between rounds in [`Prober::run`].
    pub interval: Duration,
    /// TLS with the cluster CA: a member must prove its name before the password is sent
    /// (`None`: no TLS).
    pub tls: Option<pgha_pg::tls::ClientTls>,
}

impl std::fmt::Debug for ProberConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProberConfig")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("dbname", &self.dbname)
            .field("check_timeout", &self.check_timeout)
            .field("interval", &self.interval)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl ProberConfig {
    /// Checks as `user` on database `postgres`, 2 s per check, a round per second.
    pub fn new(user: impl Into<String>) -> Self {
        ProberConfig {
            user: user.into(),
            password: None,
            dbname: "postgres".into(),
            check_timeout: Duration::from_secs(2),
            interval: Duration::from_secs(1),
            tls: None,
        }
    }
}

/// One member's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// `pg_is_in_recovery()`.
    pub in_recovery: bool,
    /// Current WAL LSN (primary) or last replayed LSN (standby), as a byte position.
    pub lsn: u64,
    /// A WAL receiver is running and streaming.
    pub streaming: bool,
    /// The `application_name`s of the standbys this server sends WAL to (streaming or catching
    /// up): pgha's members connect under their member names.
    pub receivers: Vec<String>,
}

// A role without pg_read_all_stats sees no walreceiver status or walsender state: it counts
// as streaming (the sender's application_name is visible to every role).
const CHECK_SQL: &str = "select pg_is_in_recovery(), \
    (case when pg_is_in_recovery() then pg_last_wal_replay_lsn() else pg_current_wal_lsn() end)::text, \
    coalesce((select coalesce(status, 'streaming') = 'streaming' from pg_stat_wal_receiver limit 1), false), \
    coalesce((select array_agg(application_name) from pg_stat_replication \
      where coalesce(state, 'streaming') in ('streaming', 'catchup') \
        and application_name is not null), '{}')";

/// Parses `X/Y` into a byte position.
fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// Connects to member `name` at `addr` as `config` says, naming itself `application`.
pub(crate) async fn connect(
    config: &ProberConfig,
    name: &str,
    addr: &str,
    application: &str,
) -> Result<Client, ProbeError> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| ProbeError::Unexpected {
            addr: addr.to_string(),
            what: "address is not host:port".into(),
        })?;
    let port: u16 = port.parse().map_err(|_| ProbeError::Unexpected {
        addr: addr.to_string(),
        what: "bad port".into(),
    })?;
    let mut pg = tokio_postgres::Config::new();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    pgha_pg::tls::target(&mut pg, name, host, port, config.tls.is_some());
    pg.user(&config.user)
        .dbname(&config.dbname)
        .application_name(application)
        .connect_timeout(config.check_timeout);
    if let Some(p) = &config.password {
        pg.password(p);
    }
    pgha_pg::probe::open(pg, config.tls.as_ref())
        .await
        .map_err(|source| ProbeError::Postgres {
            addr: addr.to_string(),
            source,
        })
}

pub(super) async fn query(client: &Client, addr: &str) -> Result<ProbeResult, ProbeError> {
    let row = client
        .query_one(CHECK_SQL, &[])
        .await
        .map_err(|source| ProbeError::Postgres {
            addr: addr.to_string(),
            source,
        })?;
    let lsn_text: Option<String> = row.get(1);
    let lsn = lsn_text
        .as_deref()
        .and_then(parse_lsn)
        .ok_or_else(|| ProbeError::Unexpected {
            addr: addr.to_string(),
            what: format!("bad lsn {lsn_text:?}"),
        })?;
    Ok(ProbeResult {
        in_recovery: row.get(0),
        lsn,
        streaming: row.get(2),
        receivers: row.try_get(3).map_err(|source| ProbeError::Postgres {
            addr: addr.to_string(),
            source,
        })?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_parses() {
        assert_eq!(parse_lsn("0/16B3748"), Some(0x16B3748));
        assert_eq!(parse_lsn("1/0"), Some(1 << 32));
        assert_eq!(parse_lsn("x"), None);
    }

    #[test]
    fn password_not_in_debug() {
        let mut c = ProberConfig::new("u");
        c.password = Some("hunter2".into());
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
