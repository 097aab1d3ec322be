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
    /// leader also maintains slots for every member).
    pub(super) async fn ensure_own_slot_on(&self, upstream: &Upstream) {
        let spec = &self.spec;
        match spec.connect(upstream, SQL_TIMEOUT).await {
            Ok(client) => {
                if let Err(e) =
                    ensure_slot(&client, spec.name.as_str(), &slot_name(spec.name.as_str())).await
                {
                    tracing::debug!("{}: could not create its slot upstream: {e}", spec.name);
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
    if !spec.instance.is_initialized() || spec.instance.rewind_incomplete() {
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
