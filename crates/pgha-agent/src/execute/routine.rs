//! The store writes a decision makes every loop, none depending on another (the leader's
//! renewal, a member's own record, the leader's position): sent together, so that a slow
//! store costs one round trip a loop, not one per write.

use std::future::Future;
use std::pin::Pin;

use pgha_core::{Action, Outcome};
use pgha_store::{Guard, Key, StoreError};
use tokio::task::JoinSet;

use super::{lease_outcome, timed};
use crate::action_error::ActionError;
use crate::agent::Agent;

/// What a routine write leaves to record.
pub(super) enum Written {
    /// A renewal's answer, for the next step.
    Lease(Outcome),
    /// Any other write: its action's name, and whether it went through.
    Plain(&'static str, Result<(), ActionError>),
}

pub(super) type RoutineWrite = Pin<Box<dyn Future<Output = Written> + Send>>;

impl Agent {
    /// `action` as a write that can go with the others, or `None` if it is not a routine one.
    /// A renewal's send time is taken here, before anything is sent.
    pub(super) fn routine_write(&self, action: &Action) -> Option<RoutineWrite> {
        let store = self.store.clone();
        let name = self.spec.name.to_string();
        let limit = self.store_limit();
        match action {
            Action::RenewLeader { revision, ttl } => {
                let (revision, ttl, sent) = (*revision, *ttl, self.now());
                let limit = self.lease_taking_limit();
                Some(Box::pin(async move {
                    let result = timed(limit, store.renew_leader(&name, revision, ttl))
                        .await
                        .map(|granted| (revision, granted));
                    Written::Lease(lease_outcome(result, sent, false))
                }))
            }
            Action::PublishMember(record) => {
                let json = serde_json::to_string(record);
                let ttl = self.ttl();
                Some(Box::pin(async move {
                    let put = async {
                        timed(limit, store.put_member(&name, &json?, ttl)).await?;
                        Ok(())
                    };
                    Written::Plain("PublishMember", put.await)
                }))
            }
            Action::PublishPosition {
                position,
                leader_revision,
                key_revision,
            } => {
                let json = serde_json::to_string(position);
                let guard = Guard::LeaderAndKey {
                    holder: name,
                    revision: *leader_revision,
                    key_revision: *key_revision,
                };
                Some(Box::pin(async move {
                    let put = async {
                        timed(limit, store.put(Key::Position, &json?, guard)).await?;
                        Ok(())
                    };
                    Written::Plain("PublishPosition", put.await)
                }))
            }
            _ => None,
        }
    }

    /// Runs `writes` at once and records what they left: renewal answers for the next step,
    /// failures in the log.
    pub(super) async fn write_together(&mut self, writes: Vec<RoutineWrite>) {
        let mut running = JoinSet::new();
        for write in writes {
            running.spawn(write);
        }
        while let Some(joined) = running.join_next().await {
            match joined {
                Ok(Written::Lease(outcome)) => self.lease_answered(outcome),
                Ok(Written::Plain(_, Ok(()))) => {
                    if std::mem::take(&mut self.writes_refused) {
                        tracing::info!("{}: etcd takes writes again", self.spec.name);
                    }
                }
                Ok(Written::Plain(what, Err(ActionError::Store(e @ StoreError::Exhausted(_))))) => {
                    if !std::mem::replace(&mut self.writes_refused, true) {
                        tracing::warn!(
                            "{}: {what} failed: {e}. Until etcd takes writes again this member \
                             publishes nothing and no member can take the lease; a leader \
                             keeps it (its renewal needs no write). Said once",
                            self.spec.name
                        );
                    }
                }
                Ok(Written::Plain(what, Err(e))) => {
                    tracing::warn!("{}: {what} failed: {e}", self.spec.name);
                }
                Err(e) => tracing::error!("{}: a store write panicked: {e}", self.spec.name),
            }
        }
    }
}
