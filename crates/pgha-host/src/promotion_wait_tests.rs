//! The end of a promotion's wait, read from `/cluster` answers built here.

use std::collections::BTreeMap;

use pgha_core::{EventKind, HistoryEvent, Lsn, MemberName, MemberRecord, Timeline};
use pgha_store::HistoryEntry;

use super::{settled, Awaited, Settled};
use crate::api::read::ClusterRecord;

fn member(primary: bool) -> MemberRecord {
    MemberRecord {
        running: true,
        in_recovery: !primary,
        ..Default::default()
    }
}

/// n1, n2 and n3 with `leader` holding the lease; `writable` says whether its record already
/// says it runs as a primary.
fn cluster(leader: &str, writable: bool, history: Vec<HistoryEntry>) -> ClusterRecord {
    let members: BTreeMap<String, MemberRecord> = ["n1", "n2", "n3"]
        .into_iter()
        .map(|n| (n.to_string(), member(n == leader && writable)))
        .collect();
    ClusterRecord {
        leader: Some(leader.into()),
        members,
        config: Default::default(),
        sync: Default::default(),
        history,
    }
}

fn refused(to: Option<&str>, reason: &str) -> HistoryEntry {
    HistoryEntry {
        at: "2026-12-06T20:00:00Z".into(),
        event: HistoryEvent {
            kind: EventKind::RequestRefused,
            from: Some(MemberName::new("n1")),
            to: to.map(MemberName::new),
            timeline: Timeline(1),
            lsn: Lsn(0),
            reason: reason.into(),
        },
    }
}

/// Suspected in session 42's whole-suite run (`pgha switchover` without `--to` timing out
/// although the agents' logs showed it done): the API named n3 as the best standby when it
/// accepted the request, and the leader, handing over a moment later, found n2 best. The wait
/// was for n3, which never led; it ended in a failure after 120 s. A switchover naming none
/// waits for whoever succeeds the leader it was made to.
#[test]
fn a_switchover_naming_none_ends_when_any_member_succeeds_the_leader() {
    let after = cluster("n2", true, vec![]);
    let succeeded = settled(&after, &Awaited::SuccessorOf("n1".into()), 0);
    assert_eq!(succeeded, Some(Settled::Promoted("n2".into())));
    // what was waited for before: the member named when the request was accepted
    assert_eq!(settled(&after, &Awaited::Member("n3".into()), 0), None);
}

/// The leader it was made to still leading, or a successor not yet writable: no end.
#[test]
fn the_wait_goes_on_until_the_successor_runs_writable() {
    let awaited = Awaited::SuccessorOf("n1".into());
    assert_eq!(settled(&cluster("n1", true, vec![]), &awaited, 0), None);
    assert_eq!(settled(&cluster("n2", false, vec![]), &awaited, 0), None);
    let named = Awaited::Member("n2".into());
    assert_eq!(settled(&cluster("n2", false, vec![]), &named, 0), None);
    let done = settled(&cluster("n2", true, vec![]), &named, 0);
    assert_eq!(done, Some(Settled::Promoted("n2".into())));
}

/// A switchover naming none is refused in an entry naming no target; a refusal of a request
/// that named one, or one recorded before the request, is another request's.
#[test]
fn only_this_requests_refusal_ends_the_wait() {
    let awaited = Awaited::SuccessorOf("n1".into());
    let history = vec![
        refused(None, "an earlier refusal"),
        refused(Some("n3"), "a switchover to n3 refused"),
    ];
    assert_eq!(
        settled(&cluster("n1", true, history.clone()), &awaited, 1),
        None
    );
    let mut history = history;
    history.push(refused(None, "switchover refused by n1: no candidate"));
    let ended = settled(&cluster("n1", true, history), &awaited, 1);
    let reason = "switchover refused by n1: no candidate";
    assert_eq!(ended, Some(Settled::Refused(reason.into())));
}

/// How the wait's failure names what never happened.
#[test]
fn a_wait_that_outlived_its_patience_says_what_never_happened() {
    assert_eq!(
        Awaited::Member("n3".into()).to_string(),
        "n3 is not the primary"
    );
    assert_eq!(
        Awaited::SuccessorOf("n1".into()).to_string(),
        "no member took over from n1"
    );
}
