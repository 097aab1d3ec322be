//! Unit tests of candidate judgement in quorum mode.

use super::*;

fn mode_on() -> ClusterConfig {
    ClusterConfig {
        synchronous_mode: SyncMode::On,
        ..ClusterConfig::default()
    }
}

/// ANY 1 of `members`, published by `leader`.
fn quorum_set(leader: &str, members: &[&str]) -> SyncSet {
    SyncSet {
        leader: Some(leader.into()),
        members: members.iter().map(|m| MemberName::from(*m)).collect(),
        count: 1,
        method: SyncMethod::Quorum,
    }
}

fn standby(lsn: u64) -> MemberRecord {
    MemberRecord {
        running: true,
        in_recovery: true,
        timeline: Timeline(1),
        lsn: Lsn(lsn),
        replay_lsn: Lsn(lsn),
        ..MemberRecord::default()
    }
}

/// Found by `pgha chaos` in quorum mode: a set carried over from an earlier leader still named
/// the leader that published it. When that leader left, the two standbys waited for it to
/// confirm its position as a third set member, and nobody took over until it came back. A
/// primary never acknowledged as its own standby: the other two suffice (ANY 1 of 2 needs 2).
#[test]
fn the_set_leader_is_not_waited_for_as_one_of_its_standbys() {
    let config = mode_on();
    let sync = quorum_set("n1", &["n1", "n2", "n3"]);
    let rules = Rules {
        config: &config,
        sync: &sync,
        last_primary_lsn: None,
    };
    let others: BTreeMap<MemberName, MemberRecord> = [(MemberName::from("n3"), standby(900))]
        .into_iter()
        .collect();
    assert_eq!(
        judge(&rules, &"n2".into(), &standby(1000), &others, false),
        Verdict::Best
    );
    // With one of the two standbys silent, one confirmation is not enough.
    assert_eq!(
        judge(
            &rules,
            &"n2".into(),
            &standby(1000),
            &BTreeMap::new(),
            false
        ),
        Verdict::QuorumIncomplete {
            confirmed: 1,
            needed: 2
        }
    );
}

/// The leader that published a quorum set, demoted and still ahead, with one of its two
/// standbys gone (its data moved aside for a re-clone): it wrote every commit it acknowledged,
/// so it needs no quorum of standbys to vouch for them. Without this it waited for the missing
/// standby for good (found by the simulation, seed 11 with a shifted schedule).
#[test]
fn the_set_leader_needs_no_quorum_of_its_standbys() {
    let config = mode_on();
    let sync = quorum_set("n3", &["n1", "n2"]);
    let rules = Rules {
        config: &config,
        sync: &sync,
        last_primary_lsn: None,
    };
    let others: BTreeMap<MemberName, MemberRecord> = [(MemberName::from("n2"), standby(900))]
        .into_iter()
        .collect();
    assert_eq!(
        judge(&rules, &"n3".into(), &standby(1000), &others, false),
        Verdict::Best
    );
    // n2 itself still needs n1's word: n1 may hold a commit n2 lacks
    let n3: BTreeMap<MemberName, MemberRecord> = [(MemberName::from("n3"), standby(800))]
        .into_iter()
        .collect();
    assert_eq!(
        judge(&rules, &"n2".into(), &standby(900), &n3, false),
        Verdict::QuorumIncomplete {
            confirmed: 1,
            needed: 2
        }
    );
}

/// A record counts as read in this vacancy when it saw no leader and its term is not older
/// than the newest the judge knows; one without a term (an older pgha, mid-upgrade) is judged
/// by `leader_seen` alone.
#[test]
fn a_record_is_current_only_after_the_newest_known_term() {
    let with = |leader_seen: Option<&str>, term_seen| MemberRecord {
        leader_seen: leader_seen.map(MemberName::new),
        term_seen,
        ..standby(100)
    };
    assert!(with(None, Some(5)).read_after(Some(5)));
    assert!(with(None, Some(6)).read_after(Some(5)));
    assert!(!with(None, Some(4)).read_after(Some(5)));
    assert!(!with(Some("n1"), Some(5)).read_after(Some(5)));
    assert!(with(None, None).read_after(Some(5)));
    assert!(with(None, None).read_after(None));
}
