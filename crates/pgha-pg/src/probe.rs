//! SQL probes: what a running PostgreSQL says about its role, timeline, WAL positions and standbys.

use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use crate::error::{PgError, Result};

pub use crate::alter_system::{reset_alter_system, set_by_alter_system};
pub use crate::slots::{drop_slot, drop_stale_failover_slots, ensure_slot, list_slots};

/// How pgha logs in to a member over the network.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    pub dbname: String,
    /// TLS with the cluster CA: the member must prove its name before the password is sent
    /// (`None`: no TLS).
    pub tls: Option<crate::tls::ClientTls>,
}

/// Opens a connection to `host:port`; the connection task runs on the current tokio runtime.
pub async fn connect(
    member: &str,
    host: &str,
    port: u16,
    creds: &Credentials,
    timeout: Duration,
) -> Result<Client> {
    let mut config = tokio_postgres::Config::new();
    crate::tls::target(&mut config, member, host, port, creds.tls.is_some());
    config
        .user(&creds.user)
        .password(&creds.password)
        .dbname(&creds.dbname)
        .application_name("pgha")
        .connect_timeout(timeout);
    tokio::time::timeout(timeout, open(config, creds.tls.as_ref()))
        .await
        .map_err(|_| PgError::Timeout {
            what: format!("connect to {member} ({host}:{port})"),
            seconds: timeout.as_secs(),
        })?
        .map_err(PgError::sql(member))
}

/// Connects as `config` says, with `tls` when given (see [`crate::tls::target`]), and runs
/// the connection on the current tokio runtime.
pub async fn open(
    config: tokio_postgres::Config,
    tls: Option<&crate::tls::ClientTls>,
) -> std::result::Result<Client, tokio_postgres::Error> {
    match tls {
        Some(tls) => {
            let (client, connection) = config.connect(tls.connector()).await?;
            tokio::spawn(connection);
            Ok(client)
        }
        None => {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(connection);
            Ok(client)
        }
    }
}

/// A standby as the primary's pg_stat_replication reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicationPeer {
    pub application_name: String,
    pub state: String,
    /// async, sync, potential or quorum, as PostgreSQL reports it.
    pub sync_state: String,
    pub flush_lsn: Option<u64>,
    pub replay_lsn: Option<u64>,
    pub replay_lag_seconds: Option<f64>,
}

/// One probe of a running member (its default: a primary whose positions were not read).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PgState {
    pub in_recovery: bool,
    pub server_version_num: i32,
    pub system_identifier: String,
    pub timeline: Option<u32>,
    /// On a primary: pg_current_wal_lsn().
    pub current_lsn: Option<u64>,
    /// On a primary: pg_current_wal_flush_lsn().
    pub flush_lsn: Option<u64>,
    /// On a primary: how many of its processes wait on a WAL write or sync right now (not a
    /// read: a walsender reading old WAL for a standby that catches up is no stall).
    pub wal_io_waits: i64,
    /// On a standby: last WAL received and replayed.
    pub receive_lsn: Option<u64>,
    pub replay_lsn: Option<u64>,
    /// On a standby: pg_stat_wal_receiver.status ("streaming", ...), None without a receiver.
    pub wal_receiver_status: Option<String>,
    /// On a standby: the timeline its WAL receiver receives (`received_tli`), None without one.
    pub received_timeline: Option<u32>,
    /// On a standby: the upstream "host:port" it streams from.
    pub upstream: Option<String>,
    /// On a standby: its replay is paused (by a DBA, or by PostgreSQL when the primary's
    /// settings rose above its own: see [`crate::hot_standby`]).
    pub replay_paused: bool,
    /// On a standby: what its startup process is doing (`None` when that cannot be seen).
    pub startup: Option<StartupActivity>,
    /// On a primary: its standbys.
    pub replication: Vec<ReplicationPeer>,
    /// `synchronous_standby_names` as this session sees it (after the last reload).
    pub sync_names: String,
}

/// What a standby's startup process (recovery) is doing, from its wait event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupActivity {
    /// Waiting for WAL to arrive: it replayed all it has (`pg_wal`, the archive, what was
    /// streamed).
    WaitingForWal,
    /// Replay held short of the WAL it has: paused, delayed (`recovery_min_apply_delay`), or
    /// waiting out a query it conflicts with.
    Held,
    /// Replaying, reading WAL (from `pg_wal`, or through `restore_command`), or a wait that
    /// tells neither.
    Other,
}

impl StartupActivity {
    fn from_class(class: &str) -> Self {
        match class {
            "wal" => StartupActivity::WaitingForWal,
            "held" => StartupActivity::Held,
            _ => StartupActivity::Other,
        }
    }
}

impl PgState {
    /// Whether the standby streams its upstream's WAL. A receiver on an older timeline than
    /// the newest the standby knows of is not: it receives up to that timeline's end and stops.
    /// A standby whose WAL went past the point where its upstream's timeline forked restarts
    /// such a receiver every few hundred ms, each streaming for an instant: counted as
    /// streaming, those instants kept restarting the stream timeout that makes it rewind.
    pub fn is_streaming(&self) -> bool {
        let behind = matches!(
            (self.received_timeline, self.timeline),
            (Some(receiving), Some(known)) if receiving < known
        );
        self.in_recovery && self.wal_receiver_status.as_deref() == Some("streaming") && !behind
    }

    /// On a primary: its flush position while some process waits on a WAL write or sync.
    /// WAL merely inserted and not flushed is no sign (an open transaction's records wait in
    /// the buffers until it commits), nor is an insert position a page header past the flush
    /// position (an idle server after a segment switch): only a write or sync that is under
    /// way counts, and a flush position that does not move meanwhile means the disk stalled.
    pub fn wal_waiting_at(&self) -> Option<u64> {
        (self.wal_io_waits > 0).then_some(self.flush_lsn?)
    }

    /// The timeline the member's own WAL is on. On a standby with a WAL receiver, the one it
    /// receives: recovery asks for the timeline it is on, and a standby whose WAL went past
    /// the point where a newer timeline forked asks for the older one again and again, however
    /// many newer histories it holds. Otherwise [`PgState::timeline`].
    pub fn wal_timeline(&self) -> Option<u32> {
        match (self.in_recovery, self.received_timeline) {
            (true, Some(receiving)) => Some(receiving),
            _ => self.timeline,
        }
    }

    /// The WAL position that best describes the member: current on a primary, else the
    /// furthest of received and replayed.
    pub fn position(&self) -> Option<u64> {
        if self.in_recovery {
            match (self.receive_lsn, self.replay_lsn) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            }
        } else {
            self.current_lsn
        }
    }
}

/// Reads the member's state in a few round trips.
pub async fn probe(client: &Client, member: &str) -> Result<PgState> {
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(), current_setting('server_version_num')::int, \
             (SELECT system_identifier::text FROM pg_control_system()), \
             current_setting('synchronous_standby_names')",
            &[],
        )
        .await
        .map_err(PgError::sql(member))?;
    let in_recovery: bool = row.get(0);
    let mut state = PgState {
        in_recovery,
        server_version_num: row.get(1),
        system_identifier: row.get(2),
        sync_names: row.get(3),
        ..PgState::default()
    };
    if in_recovery {
        let row = client
            .query_one(
                "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::bigint, \
                        pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint, \
                        r.status, r.received_tli, r.sender_host || ':' || r.sender_port, \
                        (SELECT timeline_id FROM pg_control_checkpoint()), \
                        (SELECT max(('x' || substr(name, 1, 8))::bit(32)::int) FROM pg_ls_waldir() \
                          WHERE name ~ '^[0-9A-F]{8}\\.history$' \
                            AND coalesce(pg_read_file('pg_wal/' || name, 0, 6, true), '# pgha') \
                                <> '# pgha'), \
                        pg_get_wal_replay_pause_state() <> 'not paused', \
                        (SELECT CASE \
                           WHEN wait_event IN ('RecoveryWalStream', \
                                               'RecoveryRetrieveRetryInterval') THEN 'wal' \
                           WHEN wait_event_type IN ('Lock', 'BufferPin') \
                             OR wait_event IN ('RecoveryApplyDelay', 'RecoveryPause', \
                                               'RecoveryConflictSnapshot', \
                                               'RecoveryConflictTablespace') THEN 'held' \
                           ELSE 'other' END \
                           FROM pg_stat_activity WHERE backend_type = 'startup' LIMIT 1) \
                 FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver r ON true",
                &[],
            )
            .await
            .map_err(PgError::sql(member))?;
        state.receive_lsn = row.get::<_, Option<i64>>(0).map(|v| v as u64);
        state.replay_lsn = row.get::<_, Option<i64>>(1).map(|v| v as u64);
        state.wal_receiver_status = row.get(2);
        let received_tli: Option<i32> = row.get(3);
        state.received_timeline = received_tli.filter(|t| *t > 0).map(|t| t as u32);
        state.upstream = row.get(4);
        state.replay_paused = row.get(7);
        state.startup = row
            .get::<_, Option<&str>>(8)
            .map(StartupActivity::from_class);
        let checkpoint_tli: Option<i32> = row.get(5);
        let history_tli: Option<i32> = row.get(6);
        // The checkpoint's timeline lags a timeline switch until the next restartpoint, and
        // the receiver's is gone once it stops (the primary died): a standby holds the history
        // file of every timeline it has received WAL on, so the newest one counts too. Not the
        // placeholders a promotion lays for timelines it never received (`crate::timelines`):
        // one left by a promotion that did not happen names no timeline this member is on.
        state.timeline = [received_tli, checkpoint_tli, history_tli]
            .into_iter()
            .flatten()
            .filter(|t| *t > 0)
            .max()
            .map(|t| t as u32);
    } else {
        let row = client
            .query_one(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, \
                        ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int, \
                        pg_wal_lsn_diff(pg_current_wal_flush_lsn(), '0/0')::bigint, \
                        (SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'IO' \
                          AND wait_event IN ('WALWrite', 'WALSync', 'WALInitWrite', 'WALInitSync'))",
                &[],
            )
            .await
            .map_err(PgError::sql(member))?;
        state.current_lsn = Some(row.get::<_, i64>(0) as u64);
        state.timeline = Some(row.get::<_, i32>(1) as u32);
        state.flush_lsn = Some(row.get::<_, i64>(2) as u64);
        state.wal_io_waits = row.get(3);
        let rows = client
            .query(
                "SELECT application_name, state, sync_state, \
                        pg_wal_lsn_diff(flush_lsn, '0/0')::bigint, \
                        pg_wal_lsn_diff(replay_lsn, '0/0')::bigint, \
                        EXTRACT(epoch FROM replay_lag)::float8 \
                 FROM pg_stat_replication WHERE application_name <> '' ORDER BY application_name",
                &[],
            )
            .await
            .map_err(PgError::sql(member))?;
        state.replication = rows
            .iter()
            .map(|r| ReplicationPeer {
                application_name: r.get(0),
                state: r.get::<_, Option<String>>(1).unwrap_or_default(),
                sync_state: r.get::<_, Option<String>>(2).unwrap_or_default(),
                flush_lsn: r.get::<_, Option<i64>>(3).map(|v| v as u64),
                replay_lsn: r.get::<_, Option<i64>>(4).map(|v| v as u64),
                replay_lag_seconds: r.get(5),
            })
            .collect();
    }
    Ok(state)
}

/// Formats a WAL position the way PostgreSQL prints it, e.g. `0/3000060`.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// The first column (text) of every row `sql` returns.
pub(crate) async fn first_column(client: &Client, member: &str, sql: &str) -> Result<Vec<String>> {
    let rows = client.query(sql, &[]).await.map_err(PgError::sql(member))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Parameters whose changed value waits for a restart (`pg_settings.pending_restart`).
pub async fn pending_restart(client: &Client, member: &str) -> Result<Vec<String>> {
    first_column(
        client,
        member,
        "SELECT name::text FROM pg_settings WHERE pending_restart ORDER BY 1",
    )
    .await
}

/// Ends the WAL receiver (the startup process starts a new one after
/// `wal_retrieve_retry_interval`): one stuck in TCP connection retries from a cut link.
pub async fn restart_wal_receiver(client: &Client, member: &str) -> Result<()> {
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_wal_receiver WHERE pid IS NOT NULL",
            &[],
        )
        .await
        .map_err(PgError::sql(member))?;
    Ok(())
}

/// Whether a WAL receiver process runs (`pg_stat_wal_receiver` has a row).
pub async fn wal_receiver_runs(client: &Client, member: &str) -> Result<bool> {
    let row = client
        .query_one(
            "SELECT count(*) > 0 FROM pg_stat_wal_receiver WHERE pid IS NOT NULL",
            &[],
        )
        .await
        .map_err(PgError::sql(member))?;
    Ok(row.get(0))
}

/// Creates or updates the replication role: REPLICATION LOGIN only, its password sent as a
/// SCRAM verifier computed here so the clear text never reaches the server or its logs.
pub async fn ensure_replication_role(
    client: &Client,
    member: &str,
    role: &str,
    password: &str,
) -> Result<()> {
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    let ident = quote_ident(role);
    let literal = quote_literal(&verifier);
    let exists = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
        .await
        .map_err(PgError::sql(member))?
        .is_some();
    let statement = if exists {
        format!("ALTER ROLE {ident} WITH NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT REPLICATION LOGIN PASSWORD {literal}")
    } else {
        format!("CREATE ROLE {ident} WITH NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT REPLICATION LOGIN PASSWORD {literal}")
    };
    client
        .batch_execute(&statement)
        .await
        .map_err(PgError::sql(member))
}

/// Quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
#[path = "probe_tests.rs"]
mod tests;
