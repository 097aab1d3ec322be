//! What the prober says of its decisions (I6), once per change: where writes go, failing checks.

use std::collections::HashMap;

use super::{Candidates, Member};
use crate::error::ProbeError;
use crate::targets::Targets;

/// Where new read-write sessions go, as the published targets say, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WriteRoute {
    /// To the lease holder, which answered as the primary.
    To { name: String, addr: String },
    /// The store names no lease holder.
    NoHolder,
    /// The lease holder answered that it is in recovery (not promoted yet, or demoted).
    HolderInRecovery { name: String },
    /// The lease holder's last check got no answer.
    HolderUnanswered { name: String },
}

impl WriteRoute {
    /// The route `targets` give under `candidates`, once the holder they name was checked (a
    /// holder with neither `rw` nor `unanswered` then answered in recovery).
    pub(crate) fn of(candidates: &Candidates, targets: &Targets) -> WriteRoute {
        let Some(holder) = &candidates.leader else {
            return WriteRoute::NoHolder;
        };
        let name = holder.name.clone();
        match (&targets.rw, &targets.unanswered) {
            (Some(rw), _) => WriteRoute::To {
                name: rw.name.clone(),
                addr: rw.addr.clone(),
            },
            (None, Some(_)) => WriteRoute::HolderUnanswered { name },
            (None, None) => WriteRoute::HolderInRecovery { name },
        }
    }

    /// Logs this route when it differs from `said` (and keeps it there), as the targets of
    /// `generation` (the number the lines on sessions closed for a change name).
    pub(crate) fn say_once(self, said: &mut Option<WriteRoute>, generation: u64) {
        if said.as_ref() == Some(&self) {
            return;
        }
        match &self {
            WriteRoute::To { name, addr } => tracing::info!(
                generation,
                "proxy: read-write sessions go to {name} ({addr}): it holds the leader lease \
                 and answered as the primary"
            ),
            WriteRoute::NoHolder => tracing::info!(
                generation,
                "proxy: no member holds the leader lease: new read-write sessions wait for one"
            ),
            WriteRoute::HolderInRecovery { name } => tracing::info!(
                generation,
                "proxy: the lease holder {name} answers that it is in recovery (not the \
                 primary yet): new read-write sessions wait"
            ),
            WriteRoute::HolderUnanswered { name } => tracing::info!(
                generation,
                "proxy: the lease holder {name} did not answer its check: new read-write \
                 sessions wait for its next answer, the open ones stay"
            ),
        }
        *said = Some(self);
    }
}

/// The members whose last check failed, to say when that begins and ends.
#[derive(Debug, Default)]
pub(crate) struct FailingChecks(HashMap<String, String>);

impl FailingChecks {
    /// Says each of `members` whose check failed in this round and had not (with the error),
    /// and each that answers again; forgets members no longer checked.
    pub(crate) fn note(
        &mut self,
        members: &[&Member],
        results: &HashMap<String, Result<super::ProbeResult, ProbeError>>,
    ) {
        self.0
            .retain(|addr, _| members.iter().any(|m| &m.addr == addr));
        for m in members {
            match results.get(&m.addr) {
                Some(Err(e)) => {
                    if self.0.insert(m.addr.clone(), m.name.clone()).is_none() {
                        tracing::warn!(
                            "proxy: cannot check {} ({e}): no new session goes to it until a \
                             check answers",
                            m.name
                        );
                    } else {
                        tracing::debug!("proxy: {} still does not answer its check: {e}", m.name);
                    }
                }
                Some(Ok(_)) if self.0.remove(&m.addr).is_some() => {
                    tracing::info!("proxy: {} answers its checks again", m.name);
                }
                Some(Ok(_)) | None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::Backend;

    #[test]
    fn the_route_says_why_no_read_write_session_goes_anywhere() {
        let holder = Candidates {
            leader: Some(Member::new("n2", "10.0.0.2:5432")),
            standbys: vec![],
        };
        let none = Targets::none();
        assert_eq!(
            WriteRoute::of(&Candidates::default(), &none),
            WriteRoute::NoHolder
        );
        assert_eq!(
            WriteRoute::of(&holder, &none),
            WriteRoute::HolderInRecovery { name: "n2".into() }
        );
        let silent = Targets {
            unanswered: Some(Backend::new("n2", "10.0.0.2:5432")),
            ..Targets::none()
        };
        assert_eq!(
            WriteRoute::of(&holder, &silent),
            WriteRoute::HolderUnanswered { name: "n2".into() }
        );
        let confirmed = Targets {
            rw: Some(Backend::new("n2", "10.0.0.2:5432")),
            ..Targets::none()
        };
        assert_eq!(
            WriteRoute::of(&holder, &confirmed),
            WriteRoute::To {
                name: "n2".into(),
                addr: "10.0.0.2:5432".into()
            }
        );
    }
}
