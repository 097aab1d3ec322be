//! Mode `on` just after a promotion (or a lease adopted by a restarted agent): the standbys
//! PostgreSQL counts get a replication timeout to connect before commits stop waiting for them.

use crate::config::{ClusterConfig, SyncMode};
use crate::types::Millis;

/// When this leader's PostgreSQL came out of recovery (or its restarted agent adopted the
/// lease of a writable one), and in which term (leader key revision).
///
/// A new primary has no standby streaming yet: they connect once their agents have read who
/// leads and pointed PostgreSQL at it, a loop or two later. Mode `on` counting nobody as soon
/// as none streams would start every term asynchronous, while the store's set says its
/// commits are on the standbys it names; a failover inside that set (the new leader's lease
/// lapsing in the same store trouble that made it leader) then loses what it acknowledged
/// alone. So for a replication timeout after the promotion (what a standby already counted is
/// given to answer before `on` stops waiting for it) the standbys counted at promotion stay
/// counted while none streams; after it `on` goes asynchronous as ever. Not only until the
/// first of them streams: a standby that followed the winner before it promoted (told who
/// leads a moment earlier) has its stream ended by the timeline switch and connects again at
/// once (a campaign saw `on` go asynchronous for 0.1 s that way). An agent restarted in the
/// window would otherwise end it: adopting the lease of a writable primary none of whose
/// counted standbys streams starts one too (one whose standbys stream has none: they have
/// connected).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reconnecting {
    pub term: u64,
    pub since: Millis,
}

impl Reconnecting {
    /// Starts the wait in `term` at `now`, unless one of that term is under way.
    pub fn start(this: &mut Option<Reconnecting>, term: u64, now: Millis) {
        if this.is_none_or(|r| r.term != term) {
            *this = Some(Reconnecting { term, since: now });
        }
    }

    /// Whether, in `term` at `now`, mode `on` still waits for the standbys counted at
    /// promotion although none streams.
    pub fn holds(
        this: Option<&Reconnecting>,
        config: &ClusterConfig,
        term: u64,
        now: Millis,
    ) -> bool {
        let timeout_ms = config.replication_timeout().as_millis() as u64;
        config.synchronous_mode == SyncMode::On
            && this.is_some_and(|r| r.term == term && now < r.since.plus(timeout_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_mode_on_only_this_term_only_for_a_replication_timeout() {
        let mut config = ClusterConfig {
            synchronous_mode: SyncMode::On,
            ttl_ms: 3_000,
            ..ClusterConfig::default()
        };
        let r = Reconnecting {
            term: 7,
            since: Millis(1_000),
        };
        // The replication timeout is a ttl, 5 s at least.
        assert!(Reconnecting::holds(Some(&r), &config, 7, Millis(5_999)));
        assert!(!Reconnecting::holds(Some(&r), &config, 7, Millis(6_000)));
        assert!(!Reconnecting::holds(Some(&r), &config, 8, Millis(2_000)));
        assert!(!Reconnecting::holds(None, &config, 7, Millis(2_000)));
        config.ttl_ms = 10_000;
        assert!(Reconnecting::holds(Some(&r), &config, 7, Millis(10_999)));
        for mode in [SyncMode::Off, SyncMode::Strict] {
            config.synchronous_mode = mode;
            assert!(!Reconnecting::holds(Some(&r), &config, 7, Millis(2_000)));
        }
    }
}
