//! A reload asked for from outside the loop (`pgha reload`, POST /members/NAME/reload):
//! pgha.conf rendered again the way every configuration change renders it, then PostgreSQL
//! re-reads its configuration files (its own includes too).

use pgha_core::{JobKind, MemberName};

use super::handle::Requests;
use super::{Agent, Request};

/// Why a member did not reload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadRefused {
    #[error("{member} has no data directory yet: nothing to reload")]
    NoData { member: MemberName },
    #[error(
        "{member}'s PostgreSQL is not running: it reads its configuration when it starts \
         (`pgha start {member}`)"
    )]
    NotRunning { member: MemberName },
    #[error(
        "{member} is running {job:?}, which writes the configuration itself: reload once it is \
         done (see `pgha status`)"
    )]
    JobRunning { member: MemberName, job: JobKind },
    #[error("{member}: the reload failed: {error}")]
    Failed { member: MemberName, error: String },
    #[error("{member}'s agent stopped before it reloaded")]
    AgentGone { member: MemberName },
}

/// Asks a running agent to reload between two steps of its loop.
#[derive(Clone)]
pub struct Reloader(pub(crate) Requests);

impl Reloader {
    /// Reloads now (after the step in progress, if any) and answers whether it did.
    pub async fn reload(&self) -> Result<(), ReloadRefused> {
        (self.0)
            .ask(Request::Reload, |member| ReloadRefused::AgentGone {
                member,
            })
            .await
    }
}

impl Agent {
    /// Renders this member's pgha.conf as the loop last decided it (role, upstream,
    /// synchronous standbys, the cluster's parameters) and reloads PostgreSQL.
    pub(crate) async fn reload_now(&mut self) -> Result<(), ReloadRefused> {
        let member = self.spec.name.clone();
        if let Some(job) = self.jobs.current() {
            return Err(ReloadRefused::JobRunning { member, job });
        }
        let inst = &self.spec.instance;
        if !inst.is_initialized() {
            return Err(ReloadRefused::NoData { member });
        }
        if !inst.is_running() {
            return Err(ReloadRefused::NotRunning { member });
        }
        let failed = |error: String| ReloadRefused::Failed {
            member: member.clone(),
            error,
        };
        let rendered = self
            .render_config(false)
            .await
            .map_err(|e| failed(e.to_string()))?;
        if !rendered {
            return Err(failed(
                "its configuration was not rewritten (its upstream is not known yet, or \
                 standby.signal could not be looked at): try again"
                    .into(),
            ));
        }
        inst.reload().await.map_err(|e| failed(e.to_string()))?;
        tracing::info!("{member}: configuration rendered and reloaded (asked through the API)");
        Ok(())
    }
}
