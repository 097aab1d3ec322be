//! The steps jobs share: a peer's address, this member's configuration, its slot, start and stop.

use std::time::{Duration, Instant};

use pgha_core::MemberName;
use pgha_pg::conf::{slot_name, Upstream};
use pgha_pg::probe::{drop_stale_failover_slots, ensure_replication_role, ensure_slot};
use pgha_pg::source::SourceServer;
use pgha_pg::StopMode;

use super::reaping::wait_reaped;
use super::{JobContext, JobError, JobResult, SQL_TIMEOUT, START_TIMEOUT};

const STOP_TIMEOUT: Duration = Duration::from_secs(60);

impl JobContext {
    /// Starts PostgreSQL under its supervisor, unless this job was cancelled: a job cancelled
    /// while it was blocked (a write on a stalled disk) goes on once the call returns, and
    /// must not bring up a postmaster its successor does not expect.
    pub(super) async fn start_postgres(&self) -> JobResult {
        if self.cancelled.is_set() {
            return Err(JobError::Cancelled);
        }
        release_placeholders(&self.spec).await?;
        self.spec.instance.start(START_TIMEOUT).await?;
        Ok(())
    }

    pub(super) fn peer(&self, name: &MemberName) -> Result<Upstream, JobError> {
        self.peers.get(name).cloned().ok_or_else(|| {
            JobError::Refused(format!("{name} has not published its PostgreSQL address"))
        })
    }

    /// `up` as the source of a clone or a rewind, logged in to as `user` with this member's
    /// password file, its certificate checked against the cluster CA.
    pub(super) fn source<'a>(&'a self, up: &'a Upstream, user: &'a str) -> SourceServer<'a> {
        SourceServer {
            name: &up.name,
            host: &up.host,
            port: up.port,
            user,
            passfile: &self.spec.passfile,
            ca_cert: self.spec.tls.as_ref().map(|t| t.files.ca_cert.as_path()),
        }
    }

    pub(super) async fn write_config(
        &self,
        data: &std::path::Path,
        standby: bool,
        upstream: Option<Upstream>,
    ) -> JobResult {
        let spec = &self.spec;
        let conf = spec.conf(standby, upstream, &self.dynamic);
        spec.instance.write_config(data, &conf, &spec.hba).await?;
        Ok(())
    }

    /// Creates this member's slot on `upstream` so it can stream at once (best effort: the
    /// leader also maintains slots for every member). Given [`SQL_TIMEOUT`]: an upstream
    /// whose disk stalled answers a slot's creation (a file written there) only once it thaws,
    /// and the job must go on meanwhile.
    pub(super) async fn ensure_own_slot_on(&self, upstream: &Upstream) {
        let spec = &self.spec;
        match spec.connect(upstream, SQL_TIMEOUT).await {
            Ok(client) => {
                let slot = slot_name(spec.name.as_str());
                let made = tokio::time::timeout(
                    SQL_TIMEOUT,
                    ensure_slot(&client, spec.name.as_str(), &slot),
                );
                match made.await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::debug!("{}: could not create its slot upstream: {e}", spec.name)
                    }
                    Err(_) => tracing::info!(
                        "{}: {} did not create this member's slot within {} s: going on \
                         without it",
                        spec.name,
                        upstream.name,
                        SQL_TIMEOUT.as_secs()
                    ),
                }
            }
            Err(e) => tracing::debug!(
                "{}: could not reach upstream to create its slot: {e}",
                spec.name
            ),
        }
    }

    /// Starts PostgreSQL, or waits for an already running postmaster to accept connections.
    /// A postmaster that died (killed, crashed) is started again rather than waited for, also
    /// while it is an unreaped zombie, which still answers `kill(pid, 0)`.
    pub(super) async fn start_or_wait(&self) -> JobResult {
        let spec = &self.spec;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if !spec.instance.is_running() {
                wait_reaped(&spec.instance).await;
                self.start_postgres().await?;
                return Ok(());
            }
            match spec.connect_local(SQL_TIMEOUT).await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e.into()),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Starts PostgreSQL as a standby ([`Self::start_or_wait`]); on 17+ then drops the
    /// logical failover slots left from a time this member was primary, which would keep
    /// the primary's from being synchronized here (best effort, said in the log).
    pub(super) async fn start_standby(&self) -> JobResult {
        self.start_or_wait().await?;
        let spec = &self.spec;
        if spec.instance.bins.major < 17 {
            return Ok(());
        }
        let name = spec.name.as_str();
        let dropped = match spec.connect_local(SQL_TIMEOUT).await {
            Ok(client) => drop_stale_failover_slots(&client, name).await,
            Err(e) => Err(e),
        };
        match dropped {
            Ok(slots) if slots.is_empty() => {}
            Ok(slots) => tracing::info!(
                "{name}: dropped its own logical slot(s) {} from when it was primary: the \
                 primary's are synchronized here instead",
                slots.join(", ")
            ),
            Err(e) => tracing::warn!(
                "{name}: could not drop stale logical failover slots ({e}); the primary's \
                 slots of the same name will not be synchronized here"
            ),
        }
        Ok(())
    }

    /// Creates (or re-keys) the replication role on the local primary: idempotent, and run on
    /// every start as primary, so a bootstrap interrupted after initdb still gets it.
    pub(super) async fn ensure_replication_role(&self) -> JobResult {
        let client = self.spec.connect_local(SQL_TIMEOUT).await?;
        self.ensure_replication_role_on(&client).await
    }

    /// [`Self::ensure_replication_role`] over a connection the caller already has.
    pub(super) async fn ensure_replication_role_on(
        &self,
        client: &tokio_postgres::Client,
    ) -> JobResult {
        let spec = &self.spec;
        ensure_replication_role(
            client,
            spec.name.as_str(),
            &spec.replication_user,
            &spec.replication_password,
        )
        .await?;
        Ok(())
    }

    pub(super) async fn stop_any(&self, mode: StopMode) -> JobResult {
        let inst = &self.spec.instance;
        if let Err(e) = inst.stop(mode, STOP_TIMEOUT).await {
            if mode == StopMode::Immediate {
                return Err(e.into());
            }
            tracing::warn!(
                "{}: fast stop failed ({e}); stopping immediately",
                self.spec.name
            );
            inst.stop(StopMode::Immediate, STOP_TIMEOUT).await?;
        }
        Ok(())
    }
}

/// Removes the placeholder history files a promotion that did not happen left above every
/// real timeline (`pgha_pg::timelines::release_unused`), saying so.
pub(super) async fn release_placeholders(spec: &crate::spec::NodeSpec) -> JobResult {
    // A directory a rewind left unfinished is never started: nothing to release there.
    if !spec.instance.is_initialized() || spec.instance.rewind_maybe_incomplete() {
        return Ok(());
    }
    let released = pgha_pg::timelines::release_unused(&spec.instance).await?;
    if !released.is_empty() {
        tracing::info!(
            "{}: removed the placeholders of timelines {released:?} laid for a promotion that \
             did not happen: this member is on none of them",
            spec.name
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that completes PostgreSQL's startup (no TLS, no password) and then never
    /// answers a query, as a server whose disk stalled answers a slot's creation.
    async fn silent_server() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    loop {
                        let len = conn.read_u32().await.unwrap_or(0) as usize;
                        let mut body = vec![0u8; len.saturating_sub(4)];
                        if len < 8 || conn.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        if body[..4] == 80877103u32.to_be_bytes() {
                            let _ = conn.write_all(b"N").await; // no TLS here
                            continue;
                        }
                        // AuthenticationOk, then ReadyForQuery (idle); then silence
                        let _ = conn.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 0]).await;
                        let _ = conn.write_all(&[b'Z', 0, 0, 0, 5, b'I']).await;
                        let mut rest = Vec::new();
                        let _ = conn.read_to_end(&mut rest).await;
                        return;
                    }
                });
            }
        });
        port
    }

    /// Found by `faults::disk_stalls::a_winner_whose_disk_freezes_as_it_promotes_gives_way`:
    /// a standby told to follow a winner whose disk had frozen asked it for its slot, waited
    /// for the answer until the thaw (40 s), and ran for nothing meanwhile: the election that
    /// followed the winner giving up waited on that job. The slot is best effort: the job
    /// goes on after `SQL_TIMEOUT`.
    #[tokio::test]
    async fn a_slot_an_upstream_does_not_answer_for_holds_the_job_no_longer_than_the_sql_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let spec = std::sync::Arc::new(crate::test_spec::spec(dir.path()));
        let port = silent_server().await;
        let upstream = pgha_pg::conf::Upstream {
            name: "n2".into(),
            host: "127.0.0.1".into(),
            port,
        };
        let ctx = crate::jobs::JobContext {
            spec,
            peers: Default::default(),
            dynamic: Default::default(),
            cancelled: Default::default(),
        };
        let began = Instant::now();
        let bounded = tokio::time::timeout(
            super::SQL_TIMEOUT + Duration::from_secs(5),
            ctx.ensure_own_slot_on(&upstream),
        );
        assert!(
            bounded.await.is_ok(),
            "still waiting for the slot {:?} after it was asked for",
            began.elapsed()
        );
    }
}
