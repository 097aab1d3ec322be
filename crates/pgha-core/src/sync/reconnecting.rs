//! Mode `on` just after a promotion (or a lease adopted by a restarted agent): the standbys
//! PostgreSQL counts get a replication timeout to connect before commits stop waiting for them.

use crate::config::{ClusterConfig, SyncMode};
use crate::observe::ReplicaState;
use crate::types::Millis;

use super::SyncApplied;

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
/// counted while none streams; after it `on` goes asynchronous as ever. Once one of them
/// streams they have connected: from then on the ordinary rules hold. An agent restarted in the
/// window would otherwise end it at once: adopting the lease starts one too (its standbys,
/// still streaming, end it at its first step).
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

    /// Ends the wait once a standby PostgreSQL counts (`applied`) streams from the primary.
    pub fn end_once_connected(
        this: &mut Option<Reconnecting>,
        applied: &SyncApplied,
        replicas: &[ReplicaState],
    ) {
        if replicas
            .iter()
            .any(|r| r.streaming && applied.names.contains(&r.name))
        {
            *this = None;
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
        let n2 = crate::types::MemberName::new("n2");
        let applied = SyncApplied {
            count: 1,
            names: vec![n2.clone()],
            ..SyncApplied::default()
        };
        let mut slot = Some(r);
        let replica = |streaming| ReplicaState {
            name: n2.clone(),
            streaming,
            flush_lsn: crate::types::Lsn(0),
            replay_lsn: crate::types::Lsn(0),
        };
        Reconnecting::end_once_connected(&mut slot, &applied, &[replica(false)]);
        assert_eq!(slot, Some(r));
        Reconnecting::end_once_connected(&mut slot, &SyncApplied::default(), &[replica(true)]);
        assert_eq!(slot, Some(r), "a standby PostgreSQL does not count");
        Reconnecting::end_once_connected(&mut slot, &applied, &[replica(true)]);
        assert_eq!(slot, None);
        for mode in [SyncMode::Off, SyncMode::Strict] {
            config.synchronous_mode = mode;
            assert!(!Reconnecting::holds(Some(&r), &config, 7, Millis(2_000)));
        }
    }
}
