//! A restart in place asked for from outside the loop (`pgha restart --in-place`, POST
//! /members/NAME/restart): the core decides it in the next step (a leader keeps its lease
//! throughout) or says why not now; the answer comes when the restart job has ended.

use pgha_core::{Action, JobFailure, MemberName, Reason};

use super::handle::{Reply, Requests};
use super::{Agent, Request};

/// Why a member was not restarted in place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestartRefused {
    #[error("{member} is not restarted now: {reason}")]
    NotNow { member: MemberName, reason: Reason },
    #[error("{member}: the restart failed: {failure}")]
    Failed {
        member: MemberName,
        failure: JobFailure,
    },
    #[error("{member} is already being restarted")]
    AlreadyAsked { member: MemberName },
    #[error("{member}'s agent stopped before it restarted PostgreSQL")]
    AgentGone { member: MemberName },
}

/// Asks a running agent to restart its PostgreSQL in place.
#[derive(Clone)]
pub struct Restarter(pub(crate) Requests);

impl Restarter {
    /// The member it restarts.
    pub fn member(&self) -> &MemberName {
        &self.0.member
    }

    /// Restarts PostgreSQL in place (decided in the agent's next step); answers once it runs
    /// again, or why it was not restarted.
    pub async fn restart(&self) -> Result<(), RestartRefused> {
        (self.0)
            .ask(Request::Restart, |member| RestartRefused::AgentGone {
                member,
            })
            .await
    }
}

/// Where this agent's restart request is: asked (for the next step) or running (a job).
#[derive(Default)]
pub(crate) struct RestartRequest {
    asked: Option<Reply<RestartRefused>>,
    running: Option<Reply<RestartRefused>>,
}

impl RestartRequest {
    /// Whether the next observation carries a restart request to the core.
    pub(crate) fn asked(&self) -> bool {
        self.asked.is_some()
    }
}

impl Agent {
    /// Takes a restart request in, for the next step; one at a time.
    pub(crate) fn ask_restart(&mut self, reply: Reply<RestartRefused>) {
        let request = &mut self.restart;
        if request.asked.is_some() || request.running.is_some() {
            let member = self.spec.name.clone();
            let _ = reply.send(Err(RestartRefused::AlreadyAsked { member }));
            return;
        }
        request.asked = Some(reply);
    }

    /// After the step that saw the request: the restart job started (answered when it ends),
    /// or the answer is why not now (the step's reason).
    pub(crate) fn restart_decided(&mut self, actions: &[Action], reason: &Reason) {
        let Some(reply) = self.restart.asked.take() else {
            return;
        };
        if actions
            .iter()
            .any(|a| matches!(a, Action::RestartPostgres(_)))
        {
            self.restart.running = Some(reply);
        } else {
            let _ = reply.send(Err(RestartRefused::NotNow {
                member: self.spec.name.clone(),
                reason: reason.clone(),
            }));
        }
    }

    /// The restart job ended.
    pub(crate) fn restart_done(&mut self, result: &Result<(), JobFailure>) {
        if let Some(reply) = self.restart.running.take() {
            let _ = reply.send(result.clone().map_err(|failure| RestartRefused::Failed {
                member: self.spec.name.clone(),
                failure,
            }));
        }
    }
}
