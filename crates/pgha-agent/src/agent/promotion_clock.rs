//! The clock of one promotion: from the step that first saw the cluster without a leader to
//! the promotion's success (`pgha_failover_seconds`).

use pgha_core::{EventKind, Reason, StoreView};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Default)]
pub(crate) struct PromotionClock {
    /// When this agent first saw no leader (kept while it takes the lease and promotes).
    leaderless_since: Option<Instant>,
    /// The kind of the promotion it is running, once it decided one.
    promoting: Option<EventKind>,
}

impl PromotionClock {
    /// After each step: starts on a store without a leader, stops once another member leads,
    /// and notes the kind of a promotion this member starts.
    pub(crate) fn step(&mut self, cluster: &StoreView, me: &str, reason: &Reason) {
        if let StoreView::Up(view) = cluster {
            match &view.leader {
                None => {
                    self.leaderless_since.get_or_insert_with(Instant::now);
                }
                Some(l) if l.holder.as_str() != me => {
                    self.leaderless_since = None;
                    self.promoting = None;
                }
                Some(_) => {}
            }
        }
        if let Reason::Promoting { kind } = reason {
            self.promoting = Some(*kind);
        }
    }

    /// The promotion succeeded: its kind and how long it took since the leader was gone.
    pub(crate) fn promoted(&mut self) -> Option<(EventKind, Duration)> {
        let since = self.leaderless_since.take()?;
        Some((self.promoting.take()?, since.elapsed()))
    }
}
