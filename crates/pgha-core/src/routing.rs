//! Routing policy (I2), pure: which members the proxy may send sessions to, as the store's
//! view says. The proxy's prober then confirms each by asking PostgreSQL itself before any
//! session goes there (read-write only to a holder answering `pg_is_in_recovery() = false`).

use crate::observe::ClusterView;
use crate::types::MemberName;

/// Who may take read-write sessions: the lease holder, and only once its own record says its
/// PostgreSQL runs writable (a holder still promoting, or demoting, is offered to nobody).
pub fn write_candidate(view: &ClusterView) -> Option<&MemberName> {
    let holder = &view.leader.as_ref()?.holder;
    let record = view.members.get(holder)?;
    (record.running && !record.in_recovery).then_some(holder)
}

/// Who may take read-only sessions: every other member whose record says it runs in
/// recovery, unless tagged `noloadbalance` (the prober measures their lag; the proxy applies
/// its bound).
pub fn read_candidates(view: &ClusterView) -> Vec<&MemberName> {
    let holder = view.leader.as_ref().map(|l| &l.holder);
    view.members
        .iter()
        .filter(|(name, record)| {
            Some(*name) != holder
                && record.running
                && record.in_recovery
                && !record.tags.noloadbalance
        })
        .map(|(name, _)| name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{LeaderKey, MemberRecord};
    use crate::types::Timeline;

    fn record(running: bool, in_recovery: bool) -> MemberRecord {
        MemberRecord {
            running,
            in_recovery,
            timeline: Timeline(1),
            ..MemberRecord::default()
        }
    }

    fn view(holder: Option<&str>, members: &[(&str, bool, bool)]) -> ClusterView {
        ClusterView {
            leader: holder.map(|h| LeaderKey {
                holder: h.into(),
                revision: 1,
            }),
            members: members
                .iter()
                .map(|(n, running, rec)| (MemberName::from(*n), record(*running, *rec)))
                .collect(),
            ..ClusterView::default()
        }
    }

    #[test]
    fn writes_go_to_the_holder_only_once_it_runs_writable() {
        let promoting = view(Some("n2"), &[("n1", false, false), ("n2", true, true)]);
        assert_eq!(write_candidate(&promoting), None);
        let promoted = view(Some("n2"), &[("n1", false, false), ("n2", true, false)]);
        assert_eq!(write_candidate(&promoted), Some(&"n2".into()));
        // A writable member without the lease (an old primary not yet fenced) gets nothing.
        let leaderless = view(None, &[("n1", true, false), ("n2", true, true)]);
        assert_eq!(write_candidate(&leaderless), None);
    }

    #[test]
    fn a_noloadbalance_standby_takes_no_reads() {
        let mut v = view(
            Some("n1"),
            &[("n1", true, false), ("n2", true, true), ("n3", true, true)],
        );
        v.members
            .get_mut(&MemberName::from("n3"))
            .unwrap()
            .tags
            .noloadbalance = true;
        assert_eq!(read_candidates(&v), vec![&MemberName::from("n2")]);
    }

    #[test]
    fn reads_go_to_running_standbys_other_than_the_holder() {
        let v = view(
            Some("n1"),
            &[("n1", true, true), ("n2", true, true), ("n3", false, true)],
        );
        assert_eq!(read_candidates(&v), vec![&MemberName::from("n2")]);
    }
}
