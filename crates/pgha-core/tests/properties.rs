//! Property tests: over random observation sequences, every decision keeps the contract
//! (one job, last; promotion only under a trusted lease; demotion when writable without it;
//! wake-ups never later than the lease deadline).

use pgha_core::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
struct Tick {
    advance: u64,
    running: bool,
    in_recovery: bool,
    timeline: u32,
    lsn: u64,
    store_up: bool,
    leader: u8,
    revision: u64,
    others: Vec<(bool, u64, bool)>,
    outcome: u8,
    sent_back: u64,
    paused: bool,
}

fn tick() -> impl Strategy<Value = Tick> {
    (
        (
            0u64..4_000,
            any::<bool>(),
            any::<bool>(),
            1u32..4,
            0u64..10_000,
        ),
        (prop::bool::weighted(0.8), 0u8..3, 1u64..4),
        prop::collection::vec((any::<bool>(), 0u64..10_000, any::<bool>()), 0..3),
        (0u8..8, 0u64..3_000, prop::bool::weighted(0.1)),
    )
        .prop_map(
            |(
                (advance, running, in_recovery, timeline, lsn),
                (store_up, leader, revision),
                others,
                (outcome, sent_back, paused),
            )| Tick {
                advance,
                running,
                in_recovery,
                timeline,
                lsn,
                store_up,
                leader,
                revision,
                others,
                outcome,
                sent_back,
                paused,
            },
        )
}

fn observation(now: u64, t: &Tick, member: &Member) -> Observation {
    let local = LocalPg {
        data: DataDir::Present {
            system_id: SystemId(1),
        },
        running: t.running,
        in_recovery: t.in_recovery,
        timeline: Timeline(t.timeline),
        lsn: Lsn(t.lsn),
        replay_lsn: Lsn(t.lsn),
        ..LocalPg::default()
    };
    let mut members = BTreeMap::new();
    for (i, (standby, lsn, fresh)) in t.others.iter().enumerate() {
        members.insert(
            MemberName::new(format!("o{i}")),
            MemberRecord {
                running: true,
                in_recovery: *standby,
                timeline: Timeline(t.timeline),
                lsn: Lsn(*lsn),
                replay_lsn: Lsn(*lsn),
                streaming_from: None,
                tags: Tags::default(),
                leader_seen: (!fresh).then(|| MemberName::new("o0")),
                ..MemberRecord::default()
            },
        );
    }
    let holder = match t.leader {
        0 => None,
        1 => Some(member.name().clone()),
        _ => Some(MemberName::new("o0")),
    };
    let cluster = if t.store_up {
        StoreView::Up(Box::new(ClusterView {
            initialize: Some(SystemId(1)),
            leader: holder.map(|holder| LeaderKey {
                holder,
                revision: t.revision,
            }),
            members,
            config: ClusterConfig {
                paused: t.paused,
                ..ClusterConfig::default()
            },
            ..ClusterView::default()
        }))
    } else {
        StoreView::Down {
            error: "down".into(),
        }
    };
    let sent = Millis(now.saturating_sub(t.sent_back));
    let job = |kind, ok: bool| Outcome::Job {
        kind,
        result: if ok { Ok(()) } else { Err("failed".into()) },
    };
    let outcomes = match t.outcome {
        0 => vec![Outcome::LeaderAcquired {
            requested_at: sent,
            revision: t.revision,
            ttl: ClusterConfig::default().ttl(),
        }],
        1 => vec![Outcome::LeaderRenewed {
            requested_at: sent,
            revision: t.revision,
            ttl: ClusterConfig::default().ttl(),
        }],
        2 => vec![Outcome::LeaderRefused],
        3 => member
            .running_job()
            .map(|k| vec![job(k, true)])
            .unwrap_or_default(),
        4 => member
            .running_job()
            .map(|k| vec![job(k, false)])
            .unwrap_or_default(),
        _ => vec![],
    };
    Observation::new(Millis(now), local, cluster, outcomes)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decisions_keep_the_contract(ticks in prop::collection::vec(tick(), 1..40)) {
        let mut member = Member::new(MemberSettings {
            name: MemberName::new("me"),
            tags: Tags::default(),
            addresses: BTreeMap::new(),
            config: ClusterConfig::default(),
        });
        let mut now = 10_000;
        for t in &ticks {
            now += t.advance;
            let obs = observation(now, t, &member);
            let decision = member.step(&obs);
            let jobs: Vec<usize> = decision.actions.iter().enumerate()
                .filter(|(_, a)| a.job().is_some()).map(|(i, _)| i).collect();
            prop_assert!(jobs.len() <= 1, "two jobs: {:?}", decision.actions);
            if let Some(&i) = jobs.first() {
                prop_assert_eq!(i, decision.actions.len() - 1, "job not last");
            }
            let makes_writable = decision.actions.iter().any(|a| matches!(
                a, Action::Promote { .. } | Action::StartPostgres(StartRole::Primary) | Action::Bootstrap));
            prop_assert!(!makes_writable || member.holds_lease(obs.now),
                "writable without lease: {:?} ({})", decision.actions, decision.reason);
            prop_assert!(decision.wake_at > obs.now || member.lease_deadline() == Some(obs.now));
            if let Some(deadline) = member.lease_deadline() {
                prop_assert!(decision.wake_at <= deadline, "wakes after the lease deadline");
            }
            let view_says_mine = t.store_up && t.leader == 1;
            if obs.local.is_writable() && !member.holds_lease(obs.now) && !view_says_mine {
                let demoting = decision.actions.iter().any(|a| matches!(a, Action::Demote { .. }))
                    || member.running_job() == Some(JobKind::Demote);
                prop_assert!(demoting, "writable without lease and not demoting: {}", decision.reason);
            }
        }
    }
}
