//! Unit tests of candidate judgement in the synchronous modes.

use super::*;
use crate::config::SyncMethod;

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
        mode: None,
    }
}

/// The verdict on `candidate` (name, position) in mode `on` under `sync`, with `others`
/// (name, position) the standbys whose records it reads; no last primary position known.
fn judge_on(sync: &SyncSet, candidate: (&str, u64), others: &[(&str, u64)]) -> Verdict {
    let config = mode_on();
    let rules = Rules {
        config: &config,
        sync,
        last_primary_lsn: None,
    };
    let others: BTreeMap<MemberName, MemberRecord> = others
        .iter()
        .map(|(name, lsn)| (MemberName::from(*name), standby(*lsn)))
        .collect();
    judge(
        &rules,
        &candidate.0.into(),
        &standby(candidate.1),
        &others,
        false,
        true,
    )
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
    let sync = quorum_set("n1", &["n1", "n2", "n3"]);
    assert_eq!(judge_on(&sync, ("n2", 1000), &[("n3", 900)]), Verdict::Best);
    // With one of the two standbys silent, one confirmation is not enough.
    assert_eq!(
        judge_on(&sync, ("n2", 1000), &[]),
        Verdict::QuorumIncomplete {
            confirmed: 1,
            needed: 2,
            replaying: vec![],
        }
    );
}

/// The leader that published a quorum set, demoted and still ahead, with one of its two
/// standbys gone (its data moved aside for a re-clone): it wrote every commit it acknowledged,
/// so it needs no quorum of standbys to vouch for them. Without this it waited for the missing
/// standby for good (found by the simulation, seed 11 with a shifted schedule).
#[test]
fn the_set_leader_needs_no_quorum_of_its_standbys() {
    let sync = quorum_set("n3", &["n1", "n2"]);
    assert_eq!(judge_on(&sync, ("n3", 1000), &[("n2", 900)]), Verdict::Best);
    // Without n3's word, n2 still needs n1's: n1 may hold a commit n2 lacks ...
    assert_eq!(
        judge_on(&sync, ("n2", 900), &[]),
        Verdict::QuorumIncomplete {
            confirmed: 1,
            needed: 2,
            replaying: vec![],
        }
    );
    // ... but n3, which wrote every commit it acknowledged, stepped down no further than n2:
    // n2 holds them all (the fault test `etcd_data_lost` found nobody leading without this).
    assert_eq!(judge_on(&sync, ("n2", 900), &[("n3", 800)]), Verdict::Best);
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

/// The set's old leader, demoted but unable to read the store (its link to etcd slow, its
/// records still landing, late: none read after the vacancy), is not waited for while the set
/// is complete: it steps aside for the set whatever its position, so its fresh word could
/// change nothing. Found by the distributed campaign's `etcd-slow`: the standbys waited a ttl
/// for it. With a set member missing it competes on its position, and is waited for.
#[test]
fn the_old_set_leader_is_not_waited_for_while_the_set_is_complete() {
    let sync = SyncSet {
        method: SyncMethod::Priority,
        ..quorum_set("n1", &["n2", "n3"])
    };
    let config = mode_on();
    let rules = Rules {
        config: &config,
        sync: &sync,
        last_primary_lsn: None,
    };
    let unread = MemberRecord {
        leader_seen: Some("n1".into()),
        ..standby(1100)
    };
    let judge_n2 = |others: &[(&str, MemberRecord)]| {
        let others = others
            .iter()
            .map(|(name, record)| (MemberName::from(*name), record.clone()))
            .collect();
        judge(&rules, &"n2".into(), &standby(1000), &others, false, true)
    };
    assert_eq!(
        judge_n2(&[("n1", unread.clone()), ("n3", standby(900))]),
        Verdict::Best
    );
    assert_eq!(
        judge_n2(&[("n1", unread)]),
        Verdict::Waiting {
            unconfirmed: vec!["n1".into()],
            replaying: vec![],
        }
    );
}

/// A synchronous standby whose data directory takes no write, further ahead: it may hold
/// commits acknowledged through it, so the other standby waits rather than lose them.
#[test]
fn a_synchronous_standby_whose_data_directory_stalled_still_holds_its_commits() {
    let config = mode_on();
    let sync = quorum_set("n1", &["n2", "n3"]);
    let rules = Rules {
        config: &config,
        sync: &sync,
        last_primary_lsn: None,
    };
    let stalled = MemberRecord {
        data_dir_stalled: true,
        ..standby(1000)
    };
    let others = BTreeMap::from([(MemberName::from("n2"), stalled)]);
    assert_eq!(
        judge(&rules, &"n3".into(), &standby(900), &others, false, true),
        Verdict::IneligibleAhead {
            member: "n2".into(),
            why: Ineligible::DataDirStalled,
        }
    );
}
