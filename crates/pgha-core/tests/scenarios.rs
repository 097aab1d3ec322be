//! Scenario tests of `Member::step`: readable builders, then (actions, reason) assertions.

use pgha_core::*;
use std::collections::BTreeMap;

fn name(n: &str) -> MemberName {
    MemberName::new(n)
}

fn member(n: &str) -> Member {
    member_with(n, Tags::default())
}

fn member_with(n: &str, tags: Tags) -> Member {
    Member::new(MemberSettings {
        name: name(n),
        tags,
        addresses: BTreeMap::new(),
        config: ClusterConfig::default(),
    })
}

fn primary(tl: u32, lsn: u64) -> LocalPg {
    LocalPg {
        data: DataDir::Present {
            system_id: SystemId(1),
        },
        running: true,
        in_recovery: false,
        timeline: Timeline(tl),
        lsn: Lsn(lsn),
        replay_lsn: Lsn(lsn),
        ..LocalPg::default()
    }
}

fn standby(tl: u32, lsn: u64, upstream: Option<&str>) -> LocalPg {
    LocalPg {
        in_recovery: true,
        upstream: upstream.map(name),
        streaming: upstream.is_some(),
        ..primary(tl, lsn)
    }
}

fn stopped(pg: LocalPg) -> LocalPg {
    LocalPg {
        running: false,
        streaming: false,
        ..pg
    }
}

fn record(pg: &LocalPg, leader_seen: Option<&str>) -> MemberRecord {
    MemberRecord {
        running: pg.running,
        in_recovery: pg.in_recovery,
        timeline: pg.timeline,
        lsn: pg.lsn,
        replay_lsn: pg.replay_lsn,
        streaming_from: pg.upstream.clone().filter(|_| pg.streaming),
        tags: Tags::default(),
        leader_seen: leader_seen.map(name),
        synced_slots: pg.synced_slots,
        ..MemberRecord::default()
    }
}

/// `pg`'s record once its `pre_promote` callback vetoed its promotion.
fn vetoed_record(pg: &LocalPg) -> MemberRecord {
    MemberRecord {
        promotion_vetoed: true,
        ..record(pg, None)
    }
}

/// A cluster view builder.
#[derive(Clone, Default)]
struct View(ClusterView);

impl View {
    fn new() -> Self {
        View(ClusterView {
            initialize: Some(SystemId(1)),
            ..ClusterView::default()
        })
    }
    /// `holder` holds the leader key (`revision`) and publishes `pg` as the leader it sees.
    fn led_by(holder: &str, revision: u64, pg: &LocalPg) -> Self {
        View::new()
            .leader(holder, revision)
            .with(holder, record(pg, Some(holder)))
    }
    fn leader(mut self, holder: &str, revision: u64) -> Self {
        self.0.leader = Some(LeaderKey {
            holder: name(holder),
            revision,
        });
        self
    }
    fn with(mut self, n: &str, record: MemberRecord) -> Self {
        self.0.members.insert(name(n), record);
        self
    }
    fn config(mut self, f: impl FnOnce(&mut ClusterConfig)) -> Self {
        f(&mut self.0.config);
        self
    }
    fn ttl(self, ttl_ms: u64, safety_margin_ms: u64) -> Self {
        self.config(|c| {
            c.ttl_ms = ttl_ms;
            c.safety_margin_ms = safety_margin_ms;
        })
    }
    /// Synchronous mode `on`, `leader` having published the set `members` (count 1, priority).
    fn sync_set(mut self, leader: &str, members: &[&str]) -> Self {
        self.0.config.synchronous_mode = SyncMode::On;
        self.0.sync = SyncSet {
            leader: Some(name(leader)),
            members: members.iter().map(|m| name(m)).collect(),
            count: 1,
            method: SyncMethod::Priority,
        };
        self
    }
    /// A history entry: `kind` from `from` to `to`, at (`tl`, `lsn`).
    fn event(mut self, kind: EventKind, from: &str, to: &str, tl: u32, lsn: u64) -> Self {
        self.0.history.push(HistoryEvent {
            kind,
            from: Some(name(from)),
            to: Some(name(to)),
            timeline: Timeline(tl),
            lsn: Lsn(lsn),
            reason: "test".into(),
        });
        self
    }
    /// `pgha failover --to NAME` pending (revision 30).
    fn failover_to(mut self, to: &str) -> Self {
        self.0.switchover = Some(PendingSwitchover {
            request: SwitchoverRequest {
                from: None,
                to: Some(name(to)),
                kind: RequestKind::Failover {
                    force: false,
                    allow_data_loss: false,
                },
                at: None,
            },
            revision: 30,
        });
        self
    }
    fn switchover(mut self, from: &str, to: Option<&str>, revision: u64) -> Self {
        self.0.switchover = Some(PendingSwitchover {
            request: SwitchoverRequest {
                from: Some(name(from)),
                to: to.map(name),
                kind: RequestKind::Switchover,
                at: None,
            },
            revision,
        });
        self
    }
}

fn obs(now: u64, local: LocalPg, view: &View, outcomes: Vec<Outcome>) -> Observation {
    let cluster = StoreView::Up(Box::new(view.0.clone()));
    Observation::new(Millis(now), local, cluster, outcomes)
}

fn store_down(now: u64, local: LocalPg) -> Observation {
    let cluster = StoreView::Down {
        error: "timeout".into(),
    };
    Observation::new(Millis(now), local, cluster, vec![])
}

fn acquired(at: u64, revision: u64) -> Outcome {
    Outcome::LeaderAcquired {
        requested_at: Millis(at),
        revision,
        ttl: ClusterConfig::default().ttl(),
    }
}

/// A job of `kind` that finished well.
fn job_done(kind: JobKind) -> Outcome {
    Outcome::Job {
        kind,
        result: Ok(()),
    }
}

fn has(decision: &Decision, pred: impl Fn(&Action) -> bool) -> bool {
    decision.actions.iter().any(pred)
}

/// Asserts that `decision`'s reason matches `pattern`, showing the reason otherwise.
macro_rules! assert_reason {
    ($decision:expr, $pattern:pat) => {
        assert!(
            matches!($decision.reason, $pattern),
            "{:?}",
            $decision.reason
        )
    };
}

/// Asserts that `decision`'s reason does not match `pattern`, showing the reason otherwise.
macro_rules! assert_not_reason {
    ($decision:expr, $pattern:pat) => {
        assert!(
            !matches!($decision.reason, $pattern),
            "{:?}",
            $decision.reason
        )
    };
}

/// Whether `decision` rewinds, re-clones or stops PostgreSQL.
fn touches_data(decision: &Decision) -> bool {
    has(decision, |a| {
        matches!(
            a,
            Action::Rewind { .. } | Action::Reclone { .. } | Action::StopPostgres(_)
        )
    })
}

/// Whether `decision` runs for leader.
fn acquires(decision: &Decision) -> bool {
    has(decision, |a| matches!(a, Action::AcquireLeader { .. }))
}

/// The answer to a renewal of the leader key (revision 7) sent at `at` with the default ttl.
fn renewed(at: u64) -> Outcome {
    renewed_for(at, ClusterConfig::default().ttl_ms)
}

/// The answer to a renewal of the leader key (revision 7) sent at `at` for `ttl_ms`.
fn renewed_for(at: u64, ttl_ms: u64) -> Outcome {
    Outcome::LeaderRenewed {
        requested_at: Millis(at),
        revision: 7,
        ttl: Ttl::from_millis(ttl_ms),
    }
}

/// A leader n1 on timeline 1 with its lease acquired at t=0.
fn established_leader() -> (Member, View) {
    let mut n1 = member("n1");
    let view = View::led_by("n1", 7, &primary(1, 1000));
    n1.step(&obs(0, primary(1, 1000), &view, vec![acquired(0, 7)]));
    (n1, view)
}

#[test]
fn leader_renews_then_demotes_before_the_lease_can_expire_when_the_store_is_down() {
    let (mut n1, view) = established_leader();
    let d = n1.step(&obs(1000, primary(1, 1100), &view, vec![]));
    assert!(has(&d, |a| matches!(
        a,
        Action::RenewLeader { revision: 7, .. }
    )));
    assert_eq!(d.reason, Reason::Leading { standbys: 0 });

    let d = n1.step(&store_down(2000, primary(1, 1200)));
    assert_eq!(
        d.reason,
        Reason::StoreDownLeaseTrusted { remaining_ms: 5500 }
    );
    assert!(d.wake_at <= Millis(7500), "must wake by ttl - margin");

    let d = n1.step(&store_down(7500, primary(1, 1300)));
    assert_eq!(d.reason, Reason::LeaseExpiredDemoting);
    // fast: nobody else may lead yet, and the standbys still connected receive every commit
    // acknowledged before the demotion (the supervisor kills at the fencing deadline)
    assert_eq!(
        d.actions,
        vec![Action::Demote {
            mode: StopMode::Fast,
            fencing: true
        }]
    );
    assert!(!n1.holds_lease(Millis(7500)));
}

/// A renewal answered after the step that sent it counts in what the member reports at once
/// (`/primary` between steps), exactly as the next step will count it; a refusal ends the
/// trust at once; nothing else in the answers changes it.
#[test]
fn a_renewal_answered_between_steps_shows_in_the_reported_deadline() {
    let (mut n1, view) = established_leader();
    n1.step(&obs(1000, primary(1, 1100), &view, vec![]));
    let before = n1.lease_deadline();
    assert_eq!(
        before,
        Some(Millis(7500)),
        "acquired at 0: ttl 10 s - margin 2.5 s"
    );
    let answers = vec![renewed(1000)];
    let reported = n1.lease_deadline_after(&answers, Millis(1000));
    assert_eq!(reported, Some(Millis(8500)));
    assert_eq!(
        n1.lease_deadline(),
        before,
        "the member itself is not changed"
    );
    assert_eq!(
        n1.lease_deadline_after(&[Outcome::LeaderRefused], Millis(1000)),
        None
    );
    assert_eq!(n1.lease_deadline_after(&[], Millis(1000)), before);
    assert_eq!(n1.lease_deadline_after(&[], Millis(7500)), None, "past it");
    n1.step(&obs(2000, primary(1, 1200), &view, answers));
    assert_eq!(
        n1.lease_deadline(),
        reported,
        "the next step counts it the same"
    );
}

/// Issue 14: `pgha restart --in-place` on the leader restarts its PostgreSQL in one job and
/// keeps renewing the lease while it is down: no release, no restart of its own, no failover.
#[test]
fn a_leader_restarted_in_place_keeps_renewing_its_lease() {
    let (mut n1, view) = established_leader();
    let asked = Observation {
        restart_requested: true,
        ..obs(1000, primary(1, 1100), &view, vec![])
    };
    let d = n1.step(&asked);
    assert_eq!(
        d.reason,
        Reason::RestartingInPlace {
            role: StartRole::Primary
        }
    );
    assert!(has(&d, |a| *a == Action::RestartPostgres(StartRole::Primary)));
    // Down while the job runs, past two renewal intervals: renewed, nothing else.
    for now in [2_000, 4_000, 6_000] {
        let d = n1.step(&obs(
            now,
            stopped(primary(1, 1100)),
            &view,
            vec![renewed(now - 1000)],
        ));
        assert!(
            matches!(d.reason, Reason::JobRunning { .. }),
            "{}",
            d.reason
        );
        assert!(
            has(&d, |a| matches!(a, Action::RenewLeader { .. })),
            "{now}: {:?}",
            d.actions
        );
        assert!(
            !has(&d, |a| matches!(
                a,
                Action::ReleaseLeader { .. } | Action::StartPostgres(_) | Action::Demote { .. }
            )),
            "{now}: {:?}",
            d.actions
        );
        assert!(n1.holds_lease(Millis(now)));
    }
    let done = job_done(JobKind::Restart);
    let d = n1.step(&obs(6_500, primary(1, 1200), &view, vec![done]));
    assert_eq!(d.reason, Reason::Leading { standbys: 0 });
}

/// ... and on a streaming standby it restarts it as a standby of the same leader.
#[test]
fn a_streaming_standby_restarted_in_place_follows_the_same_leader() {
    let mut n2 = member("n2");
    let view = View::led_by("n1", 7, &primary(1, 1000));
    let asked = Observation {
        restart_requested: true,
        ..obs(0, standby(1, 1000, Some("n1")), &view, vec![])
    };
    let d = n2.step(&asked);
    let role = StartRole::Standby {
        upstream: Some(name("n1")),
    };
    assert_eq!(d.reason, Reason::RestartingInPlace { role: role.clone() });
    assert!(has(&d, |a| *a == Action::RestartPostgres(role.clone())));
}

/// A standby whose replay PostgreSQL paused because the primary now runs with a higher
/// `max_connections` (raised, and the primary restarted first) replays nothing, and would shut
/// down if promoted: it is restarted, as a standby of the same leader, and says why. Once it
/// replays again it is left alone.
#[test]
fn a_standby_whose_replay_waits_for_the_primarys_settings_is_restarted() {
    let mut n2 = member("n2");
    let view = View::led_by("n1", 7, &primary(1, 1000));
    let mut held = standby(1, 1000, Some("n1"));
    held.replay_held_by = vec!["max_connections".into()];
    let d = n2.step(&obs(0, held, &view, vec![]));
    assert_eq!(
        d.reason,
        Reason::RestartingForPrimarySettings {
            settings: vec!["max_connections".into()]
        }
    );
    let role = StartRole::Standby {
        upstream: Some(name("n1")),
    };
    assert!(has(&d, |a| *a == Action::RestartPostgres(role.clone())));
    assert!(
        d.reason.to_string().contains("max_connections"),
        "{}",
        d.reason
    );
    let done = job_done(JobKind::Restart);
    let d = n2.step(&obs(2000, standby(1, 1000, Some("n1")), &view, vec![done]));
    assert_eq!(d.reason, Reason::Streaming { leader: name("n1") });
    assert!(!has(&d, |a| matches!(a, Action::RestartPostgres(_))));
}

#[test]
fn a_successful_renewal_extends_trust_from_its_send_time() {
    let (mut n1, view) = established_leader();
    let renewed = renewed(5000);
    n1.step(&obs(5100, primary(1, 1100), &view, vec![renewed]));
    let d = n1.step(&store_down(12_000, primary(1, 1200)));
    assert_eq!(
        d.reason,
        Reason::StoreDownLeaseTrusted { remaining_ms: 500 }
    );
}

/// Issue 9, item 2: `ttl_ms` raised live. The renewal asks the store for the new TTL and the
/// leader trusts what the store reports the lease runs with, never the configured value.
#[test]
fn a_raised_ttl_is_trusted_only_once_the_store_granted_it() {
    let (mut n1, view) = established_leader();
    let raised = view.ttl(30_000, 7_500);
    let d = n1.step(&obs(1000, primary(1, 1100), &raised, vec![]));
    assert!(
        has(&d, |a| matches!(
            a,
            Action::RenewLeader {
                revision: 7,
                ttl
            } if *ttl == Ttl::from_millis(30_000)
        )),
        "the renewal carries the new ttl: {:?}",
        d.actions
    );
    // The store has not re-granted yet (the renewal kept the old 10 s lease).
    let old = renewed_for(1000, 10_000);
    n1.step(&obs(1100, primary(1, 1100), &raised, vec![old]));
    assert_eq!(n1.lease_deadline(), Some(Millis(1000 + 10_000 - 7_500)));
    let d = n1.step(&store_down(3_500, primary(1, 1200)));
    assert_eq!(d.reason, Reason::LeaseExpiredDemoting);
    // Re-granted: now the new TTL counts.
    let (mut n1, view) = established_leader();
    let raised = view.ttl(30_000, 7_500);
    let new = renewed_for(1000, 30_000);
    n1.step(&obs(1100, primary(1, 1100), &raised, vec![new]));
    assert_eq!(n1.lease_deadline(), Some(Millis(1000 + 30_000 - 7_500)));
}

#[test]
fn another_member_holding_the_key_makes_a_writable_member_demote() {
    let mut n1 = member("n1");
    let view = View::new()
        .leader("n2", 9)
        .with("n2", record(&primary(2, 50), None));
    let d = n1.step(&obs(0, primary(1, 80), &view, vec![]));
    assert_eq!(d.reason, Reason::DemotingForLeader { leader: name("n2") });
    // another member may take writes already: what this one commits from now on is thrown
    // away anyway, so it stops at once (a lapsed lease of its own stops fast instead, see
    // `leader_renews_then_demotes_before_the_lease_can_expire_when_the_store_is_down`)
    assert!(has(&d, |a| *a
        == Action::Demote {
            mode: StopMode::Immediate,
            fencing: true
        }));
}

fn leaderless(n2: &LocalPg, n3: &LocalPg, seen: Option<&str>) -> View {
    View::new()
        .with("n2", record(n2, seen))
        .with("n3", record(n3, seen))
}

#[test]
fn the_most_advanced_standby_acquires_and_the_other_defers() {
    let (a, b) = (standby(1, 5000, None), standby(1, 4000, None));
    let view = leaderless(&a, &b, None);
    let d2 = member("n2").step(&obs(0, a.clone(), &view, vec![]));
    assert!(acquires(&d2));
    assert_eq!(
        d2.reason,
        Reason::Acquiring {
            kind: EventKind::Failover
        }
    );
    let d3 = member("n3").step(&obs(0, b, &view, vec![]));
    assert_eq!(d3.reason, Reason::Behind { best: name("n2") });
    assert!(!acquires(&d3));
}

#[test]
fn failsafe_confirmation_keeps_the_leader_while_the_store_is_down() {
    let (mut n1, _view) = established_leader();
    // Trusted until 7500 from the acquisition at 0; everyone confirmed it at 6000.
    let confirmed = Outcome::FailsafeConfirmed {
        requested_at: Millis(6000),
        promised_ms: ClusterConfig::default().ttl_ms,
    };
    let mut down = store_down(6100, primary(1, 1200));
    down.outcomes = vec![confirmed];
    let d = n1.step(&down);
    assert_eq!(
        d.reason,
        Reason::StoreDownLeaseTrusted { remaining_ms: 7400 }
    );
    // Past the original deadline, still trusted thanks to the confirmation.
    let d = n1.step(&store_down(9000, primary(1, 1300)));
    assert!(matches!(d.reason, Reason::StoreDownLeaseTrusted { .. }));
    assert!(n1.holds_lease(Millis(9000)));
    // Without a further confirmation it demotes at 6000 + ttl - margin.
    let d = n1.step(&store_down(13_500, primary(1, 1400)));
    assert_eq!(d.reason, Reason::LeaseExpiredDemoting);
}

#[test]
fn a_member_that_confirmed_the_old_leader_does_not_take_the_lease() {
    let (a, b) = (standby(1, 5000, None), standby(1, 4000, None));
    let view = leaderless(&a, &b, None);
    let mut o = obs(1000, a.clone(), &view, vec![]);
    o.failsafe_promised_until = Some(Millis(4000));
    let d = member("n2").step(&o);
    assert_eq!(d.reason, Reason::FailsafePromise { remaining_ms: 3000 });
    assert!(!acquires(&d));
    assert!(d.wake_at <= Millis(4000));
}

#[test]
fn ties_break_by_name() {
    let (a, b) = (standby(1, 5000, None), standby(1, 5000, None));
    let view = leaderless(&a, &b, None);
    let d3 = member("n3").step(&obs(0, b, &view, vec![]));
    assert_eq!(d3.reason, Reason::Behind { best: name("n2") });
}

/// Issue 12: at the same position, the standby whose synchronized logical slots a promotion
/// would find usable wins over a better name (the slots' consumers carry on), and a further
/// position still wins over slots.
#[test]
fn at_the_same_position_synchronized_logical_slots_win() {
    let a = standby(1, 5000, None);
    let b = LocalPg {
        synced_slots: 1,
        ..standby(1, 5000, None)
    };
    let view = leaderless(&a, &b, None);
    let d2 = member("n2").step(&obs(0, a, &view, vec![]));
    assert_eq!(d2.reason, Reason::Behind { best: name("n3") });
    let d3 = member("n3").step(&obs(0, b.clone(), &view, vec![]));
    assert!(acquires(&d3), "{:?}", d3.reason);

    let further = standby(1, 5001, None);
    let view = leaderless(&further, &b, None);
    let d3 = member("n3").step(&obs(0, b, &view, vec![]));
    assert_eq!(d3.reason, Reason::Behind { best: name("n2") });
}

#[test]
fn positions_read_before_the_leader_vanished_are_waited_for() {
    let (a, b) = (standby(1, 5000, None), standby(1, 4000, None));
    let view = leaderless(&a, &b, Some("n1"));
    let d = member("n2").step(&obs(0, a, &view, vec![]));
    assert_eq!(
        d.reason,
        Reason::WaitingForPositions {
            unconfirmed: vec![name("n3")]
        }
    );
}

#[test]
fn nofailover_and_lagging_members_never_acquire() {
    let (a, b) = (standby(1, 5000, None), standby(1, 100, None));
    let view = leaderless(&a, &b, None);
    let tagged = Tags {
        nofailover: true,
        ..Tags::default()
    };
    let d = member_with("n2", tagged).step(&obs(0, a.clone(), &view, vec![]));
    assert_eq!(
        d.reason,
        Reason::NotEligible(election::Ineligible::NoFailoverTag)
    );

    // n3 saw the primary at 10 MiB before it vanished; n3 itself is far behind.
    let mut n3 = member("n3");
    let before = View::led_by("n1", 3, &primary(1, 10 << 20));
    n3.step(&obs(0, standby(1, 100, Some("n1")), &before, vec![]));
    let d = n3.step(&obs(
        100,
        b,
        &leaderless(&standby(1, 50, None), &standby(1, 100, None), None),
        vec![],
    ));
    assert!(matches!(
        d.reason,
        Reason::NotEligible(election::Ineligible::Lagging { .. })
    ));
}

#[test]
fn synchronous_mode_promotes_only_inside_the_published_set() {
    let (a, b) = (standby(1, 5000, None), standby(1, 4000, None));
    let mut view = leaderless(&a, &b, None).config(|c| c.synchronous_mode = SyncMode::On);
    view.0.sync.members.insert(name("n3"));
    view.0.sync.count = 1;
    let d2 = member("n2").step(&obs(0, a, &view, vec![]));
    assert_eq!(
        d2.reason,
        Reason::NotEligible(election::Ineligible::OutsideSyncSet)
    );
    let d3 = member("n3").step(&obs(0, b, &view, vec![]));
    assert!(acquires(&d3));
}

/// The winner's failover as its history records it, the last leader n1 shown in the
/// leaderless view as `n1_record` says (absent: gone altogether).
fn failover_event(n1_record: Option<MemberRecord>) -> HistoryEvent {
    let (_, _, d) = n2_took_over_from_n1(n1_record);
    recorded(&d).expect("history event")
}

/// n2, streaming from n1, takes over once n1 is gone (shown as `n1_record`, or not at all):
/// n2, its view as leader, and the decision after its promotion.
fn n2_took_over_from_n1(n1_record: Option<MemberRecord>) -> (Member, View, Decision) {
    let mut n2 = member("n2");
    let before = View::led_by("n1", 3, &primary(1, 5000));
    n2.step(&obs(0, standby(1, 5000, Some("n1")), &before, vec![]));
    let local = standby(1, 5000, None);
    let mut gone = leaderless(&local, &standby(1, 10, None), None);
    if let Some(r) = n1_record {
        gone = gone.with("n1", r);
    }
    n2.step(&obs(100, local.clone(), &gone, vec![]));
    let mine = gone.leader("n2", 11).with("n2", record(&local, Some("n2")));
    n2.step(&obs(200, local, &mine, vec![acquired(100, 11)]));
    let promoted = job_done(JobKind::Promote);
    let d = n2.step(&obs(900, primary(2, 5100), &mine, vec![promoted]));
    (n2, mine, d)
}

/// The history event `decision` records, if any.
fn recorded(decision: &Decision) -> Option<HistoryEvent> {
    decision.actions.iter().find_map(|a| match a {
        Action::RecordHistory(e) => Some(e.clone()),
        _ => None,
    })
}

/// Issue 14: the history says why in words a DBA reads, from what the store shows of the
/// last leader: gone, down, or silent while still claiming to be writable.
#[test]
fn the_failover_says_why_the_leader_was_lost() {
    let gone = failover_event(None);
    assert!(
        gone.reason.starts_with("n2 took over: n1 is gone"),
        "{}",
        gone.reason
    );
    let down = failover_event(Some(record(&stopped(primary(1, 5000)), Some("n1"))));
    assert!(
        down.reason.contains("with its PostgreSQL down"),
        "{}",
        down.reason
    );
    let silent = failover_event(Some(record(&primary(1, 5000), Some("n1"))));
    assert!(
        silent.reason.contains("still said it was writable"),
        "{}",
        silent.reason
    );
}

#[test]
fn the_winner_promotes_then_records_the_failover() {
    let mut n2 = member("n2");
    let before = View::led_by("n1", 3, &primary(1, 5000));
    n2.step(&obs(0, standby(1, 5000, Some("n1")), &before, vec![]));
    let local = standby(1, 5000, None);
    let gone = leaderless(&local, &standby(1, 10, None), None);
    n2.step(&obs(100, local.clone(), &gone, vec![]));
    let mine = View::new()
        .leader("n2", 11)
        .with("n2", record(&local, Some("n2")));
    let d = n2.step(&obs(200, local, &mine, vec![acquired(100, 11)]));
    assert_eq!(d.actions.last(), Some(&Action::Promote));
    let d = n2.step(&obs(
        900,
        primary(2, 5100),
        &mine,
        vec![job_done(JobKind::Promote)],
    ));
    let event = recorded(&d).expect("history event");
    assert_eq!(event.kind, EventKind::Failover);
    assert_eq!(event.from, Some(name("n1")));
    assert_eq!((event.timeline, event.lsn), (Timeline(2), Lsn(5000)));
}

/// Found by `faults::etcd_host_lossy`: n2 took over from n1, lost its own lease (the store
/// out of reach), stepped down, and won the lease back. The history said "from n1 ... n1
/// stepped down": the leader it had followed last, not itself. The member that led last was
/// n2: the entry says so, and why.
#[test]
fn a_leader_that_wins_its_lapsed_lease_back_says_it_led_last() {
    let (mut n2, mine, _) = n2_took_over_from_n1(None);
    n2.step(&obs(1000, primary(2, 5200), &mine, vec![]));
    let d = n2.step(&store_down(9000, primary(2, 5300)));
    assert_eq!(d.reason, Reason::LeaseExpiredDemoting);
    let demoted = standby(2, 5300, None);
    let again =
        leaderless(&demoted, &standby(1, 10, None), None).with("n2", record(&demoted, Some("n2")));
    let mut at = 9500;
    let mut outcomes = vec![job_done(JobKind::Demote)];
    loop {
        let d = n2.step(&obs(
            at,
            demoted.clone(),
            &again,
            std::mem::take(&mut outcomes),
        ));
        if acquires(&d) {
            break;
        }
        at += 500;
        assert!(at < 30_000, "n2 never ran for leader again: {}", d.reason);
    }
    let mine = again.leader("n2", 20);
    n2.step(&obs(at + 100, demoted, &mine, vec![acquired(at, 20)]));
    let d = n2.step(&obs(
        at + 900,
        primary(3, 5400),
        &mine,
        vec![job_done(JobKind::Promote)],
    ));
    let event = recorded(&d).expect("history event");
    assert_eq!(event.from, Some(name("n2")), "{event}");
    assert!(event.reason.contains("n2 led last"), "{}", event.reason);
}

/// n2 won the lease (revision 11) from n1 and started its promotion (at 200): n2, and its view
/// as leader.
fn n2_promoting_after_n1() -> (Member, View) {
    let mut n2 = member("n2");
    let before = View::led_by("n1", 3, &primary(1, 5000));
    n2.step(&obs(0, standby(1, 5000, Some("n1")), &before, vec![]));
    let local = standby(1, 5000, None);
    let gone = leaderless(&local, &standby(1, 10, None), None);
    n2.step(&obs(100, local.clone(), &gone, vec![]));
    let mine = View::new()
        .leader("n2", 11)
        .with("n2", record(&local, Some("n2")));
    let d = n2.step(&obs(200, local, &mine, vec![acquired(100, 11)]));
    assert_eq!(d.actions.last(), Some(&Action::Promote));
    (n2, mine)
}

/// The promotion event among `decisions`, checked to be recorded once.
fn the_one_promotion(decisions: &[Decision]) -> HistoryEvent {
    let events: Vec<HistoryEvent> = decisions.iter().filter_map(recorded).collect();
    assert_eq!(events.len(), 1, "{events:?}");
    let event = events[0].clone();
    assert_eq!(event.kind, EventKind::Failover);
    assert_eq!(
        (&event.from, &event.to),
        (&Some(name("n1")), &Some(name("n2")))
    );
    assert_eq!((event.timeline, event.lsn), (Timeline(2), Lsn(5000)));
    event
}

/// Found by `faults::etcd_host_lossy` (CI, on a store dropping 30 % of its packets): n3 won the
/// lease and promoted, served writes for 2.5 s, and lost its lease before any step saw the
/// store answer (only a leader's step with the store up recorded a promotion). Its demotion
/// forgot the promotion: the history never said n3 had led, though clients wrote to it. A
/// promotion that took effect is recorded the first step PostgreSQL shows it, whatever the
/// store and the lease do next (an append that fails is appended again later).
#[test]
fn a_promotion_is_recorded_even_when_the_lease_lapses_with_the_store_out_of_reach() {
    let (mut n2, _) = n2_promoting_after_n1();
    let promoted = Observation::new(
        Millis(900),
        primary(2, 5100),
        StoreView::Down {
            error: "timeout".into(),
        },
        vec![job_done(JobKind::Promote)],
    );
    let mut decisions = vec![n2.step(&promoted)];
    decisions.push(n2.step(&store_down(9000, primary(2, 5300))));
    assert_reason!(decisions[1], Reason::LeaseExpiredDemoting);
    the_one_promotion(&decisions);
    // The step after the demotion does not record it again.
    let demoted = standby(2, 5300, None);
    let vacant = leaderless(&demoted, &standby(2, 5300, None), None);
    decisions.push(n2.step(&obs(
        9500,
        demoted,
        &vacant,
        vec![job_done(JobKind::Demote)],
    )));
    the_one_promotion(&decisions);
}

/// The same when the store refuses the renewal (the key gone) in the step that first sees
/// PostgreSQL promoted, or shows another member holding the key.
#[test]
fn a_promotion_is_recorded_when_the_renewal_is_refused_or_another_leads() {
    let (mut n2, _) = n2_promoting_after_n1();
    let key_gone = leaderless(&primary(2, 5100), &standby(1, 10, None), None);
    let d = n2.step(&obs(
        900,
        primary(2, 5100),
        &key_gone,
        vec![job_done(JobKind::Promote), Outcome::LeaderRefused],
    ));
    assert!(has(&d, |a| matches!(a, Action::Demote { .. })), "{d:?}");
    the_one_promotion(&[d]);

    let (mut n2, _) = n2_promoting_after_n1();
    let theirs = View::led_by("n3", 12, &primary(2, 5000));
    let d = n2.step(&obs(
        900,
        primary(2, 5100),
        &theirs,
        vec![job_done(JobKind::Promote)],
    ));
    assert!(has(&d, |a| matches!(a, Action::Demote { .. })), "{d:?}");
    the_one_promotion(&[d]);
}

/// A leader whose renewals go unanswered steps down on its own clock; what the others see of it
/// then is a standby, so the member taking over could only say "it runs read-only". The leader
/// publishes why (its lease lapsed, in which term) until it leads again, and the history entry
/// of the failover that ends that term says so.
#[test]
fn a_leader_that_stepped_down_says_why_and_the_failover_records_it() {
    let (mut n2, mine, _) = n2_took_over_from_n1(None);
    n2.step(&obs(1000, primary(2, 5200), &mine, vec![]));
    let d = n2.step(&store_down(9000, primary(2, 5300)));
    assert_eq!(d.reason, Reason::LeaseExpiredDemoting);
    let demoted = standby(2, 5300, None);
    let vacant = leaderless(&demoted, &standby(2, 5300, None), None);
    let d = n2.step(&obs(
        9500,
        demoted,
        &vacant,
        vec![job_done(JobKind::Demote)],
    ));
    let published = d.actions.iter().find_map(|a| match a {
        Action::PublishMember(r) => Some(r.clone()),
        _ => None,
    });
    let published = published.expect("the demoted leader publishes its record");
    let stepped = SteppedDown {
        term: 11,
        cause: StepDown::LeaseLapsed,
    };
    assert_eq!(published.stepped_down, Some(stepped));
    // That record, read by the member taking over from it (shown as n1's, behind n2, in n1's
    // term 3, the newest n2 knows).
    let old_leader = |stepped_down| MemberRecord {
        timeline: Timeline(1),
        lsn: Lsn(4000),
        replay_lsn: Lsn(4000),
        term_seen: Some(3),
        stepped_down,
        ..published.clone()
    };
    let event = failover_event(Some(old_leader(Some(SteppedDown { term: 3, ..stepped }))));
    assert!(
        event.reason.contains(
            "n1 stepped down: its lease renewals went unanswered until it could no longer \
             trust its lease"
        ),
        "{}",
        event.reason
    );
    // A cause from another term than the one that ended, or none (an agent of an older
    // version), is not quoted.
    for stepped_down in [Some(stepped), None] {
        let event = failover_event(Some(old_leader(stepped_down)));
        assert!(
            event.reason.contains("n1 stepped down: it runs read-only"),
            "{}",
            event.reason
        );
    }
}

/// n2, ahead of n3, wins the lease and its promotion ends with `failure`: n2, what it decides
/// then, its state and n3's.
fn winner_whose_promotion_failed(failure: JobFailure) -> (Member, Decision, LocalPg, LocalPg) {
    winner_whose_promotion_failed_leaving(failure, |a| a)
}

/// [`winner_whose_promotion_failed`], its PostgreSQL then as `after` makes it of n2's.
fn winner_whose_promotion_failed_leaving(
    failure: JobFailure,
    after: impl Fn(LocalPg) -> LocalPg,
) -> (Member, Decision, LocalPg, LocalPg) {
    let mut n2 = member("n2");
    let (a, b) = (standby(1, 5000, None), standby(1, 4000, None));
    let mine = View::new()
        .leader("n2", 11)
        .with("n2", record(&a, Some("n2")))
        .with("n3", record(&b, None));
    let d = n2.step(&obs(0, a.clone(), &mine, vec![acquired(0, 11)]));
    assert_eq!(d.actions.last(), Some(&Action::Promote));
    let failed = Outcome::Job {
        kind: JobKind::Promote,
        result: Err(failure),
    };
    let d = n2.step(&obs(500, after(a.clone()), &mine, vec![failed]));
    (n2, d, a, b)
}

/// `pg_ctl promote` gave up (its wait timed out: a stalled disk, a paused startup process)
/// while PostgreSQL still runs in recovery: the promotion may yet complete. The winner stops
/// PostgreSQL before it lets go of the lease, renewing it meanwhile (asking again if the stop
/// fails), and releases it once PostgreSQL is down: never a member writable beside the next
/// leader. A server that shut down by itself lets go at once.
#[test]
fn a_promotion_that_failed_with_postgresql_running_stops_it_before_the_lease_goes() {
    let failed = JobFailure::Failed("pg_ctl promote failed: server did not promote in time".into());
    let (mut n2, d, a, _) = winner_whose_promotion_failed(failed.clone());
    assert!(
        matches!(d.reason, Reason::PromoteFailedStopping { .. }),
        "{}",
        d.reason
    );
    assert!(has(&d, |a| *a == Action::StopPostgres(StopMode::Immediate)));
    assert!(!has(&d, |a| matches!(a, Action::ReleaseLeader { .. })));
    let mine = View::new()
        .leader("n2", 11)
        .with("n2", record(&a, Some("n2")));
    // The stop failed: still running, the lease renewed, the stop asked for again.
    let stop_failed = Outcome::Job {
        kind: JobKind::Stop,
        result: Err(JobFailure::Failed("pg_ctl stop timed out".into())),
    };
    let d = n2.step(&obs(4000, a.clone(), &mine, vec![stop_failed]));
    assert!(
        has(&d, |a| *a == Action::StopPostgres(StopMode::Immediate)),
        "{:?}",
        d.actions
    );
    assert!(
        has(&d, |a| matches!(a, Action::RenewLeader { .. })),
        "{:?}",
        d.actions
    );
    assert!(!has(&d, |a| matches!(a, Action::ReleaseLeader { .. })));
    // Down: the lease goes, saying why; nothing restarts it as a primary.
    let d = n2.step(&obs(
        4500,
        stopped(a.clone()),
        &mine,
        vec![job_done(JobKind::Stop)],
    ));
    assert_released_after_failed_promotion(&d);
    assert!(!has(&d, |a| matches!(
        a,
        Action::StartPostgres(_) | Action::Promote
    )));

    // PostgreSQL that shut down by itself (a promotion it could not carry out): at once.
    let (_, d, _, _) = winner_whose_promotion_failed_leaving(failed, stopped);
    assert_released_after_failed_promotion(&d);
}

/// `d` lets go of the lease of term 11, saying the promotion failed.
fn assert_released_after_failed_promotion(d: &Decision) {
    assert!(
        matches!(d.reason, Reason::PromoteFailed { .. }),
        "{}",
        d.reason
    );
    assert!(has(d, |a| matches!(
        a,
        Action::ReleaseLeader { revision: 11 }
    )));
}

/// Issue 14: a `pre_promote` callback that refuses makes the winner let go of the lease and
/// publish itself vetoed; the next candidate, behind it, then runs (asynchronous mode), and
/// the veto ends once another member leads.
#[test]
fn a_vetoed_promotion_releases_the_lease_and_the_next_candidate_runs() {
    let vetoed = JobFailure::Vetoed("exit status: 1 (VIP still held)".into());
    let (mut n2, d, a, b) = winner_whose_promotion_failed(vetoed);
    assert!(
        matches!(d.reason, Reason::PromotionVetoed { .. }),
        "{}",
        d.reason
    );
    assert!(has(&d, |a| matches!(
        a,
        Action::ReleaseLeader { revision: 11 }
    )));
    assert!(!has(&d, |a| matches!(a, Action::Promote)));
    // Without a leader it publishes itself vetoed and stays out.
    let gone = leaderless(&a, &b, None);
    let d = n2.step(&obs(600, a.clone(), &gone, vec![]));
    assert!(!acquires(&d));
    assert_eq!(
        d.reason,
        Reason::NotEligible(election::Ineligible::PromotionVetoed)
    );
    let published = d.actions.iter().find_map(|a| match a {
        Action::PublishMember(r) => Some(r.clone()),
        _ => None,
    });
    let published = published.expect("a vetoed member publishes its record");
    assert!(published.promotion_vetoed);
    // n3, behind it, is the best eligible candidate now.
    let seen = View::new()
        .with("n2", published)
        .with("n3", record(&b, None));
    let d3 = member("n3").step(&obs(600, b.clone(), &seen, vec![]));
    assert!(acquires(&d3), "{}", d3.reason);
    // n3 holding the key, not promoted yet (it may veto too), does not end n2's veto.
    let holding = View::new()
        .leader("n3", 12)
        .with("n3", record(&b, Some("n3")))
        .with("n2", record(&a, Some("n3")));
    n2.step(&obs(700, a.clone(), &holding, vec![]));
    let followed = job_done(JobKind::Follow);
    let gone = leaderless(&a, &b, None);
    let d = n2.step(&obs(800, a.clone(), &gone, vec![followed]));
    assert_eq!(
        d.reason,
        Reason::NotEligible(election::Ineligible::PromotionVetoed)
    );
    // Once n3 leads, n2's veto is over: its next record is not vetoed.
    let led = View::led_by("n3", 12, &primary(2, 4100)).with("n2", record(&a, Some("n3")));
    let d = n2.step(&obs(1200, a, &led, vec![]));
    let published = d.actions.iter().find_map(|a| match a {
        Action::PublishMember(r) => Some(r.clone()),
        _ => None,
    });
    assert!(published.is_some_and(|r| !r.promotion_vetoed));
}

/// A winner whose agent could not write its fencing deadline (a full or read-only file
/// system) is not promoted: it lets go of the lease and is held out like a vetoed member, so
/// the next candidate runs instead of it winning and failing again.
#[test]
fn a_winner_that_cannot_arm_its_fence_lets_go_and_is_held_out() {
    let unfenced = JobFailure::Unfenced("No space left on device".into());
    let (mut n2, d, a, b) = winner_whose_promotion_failed(unfenced);
    assert!(
        matches!(&d.reason, Reason::PromotionVetoed { why, .. } if why.contains("fencing deadline")),
        "{}",
        d.reason
    );
    assert!(has(&d, |a| matches!(
        a,
        Action::ReleaseLeader { revision: 11 }
    )));
    let gone = leaderless(&a, &b, None);
    let d = n2.step(&obs(600, a, &gone, vec![]));
    assert!(!acquires(&d));
    let published = d.actions.iter().find_map(|a| match a {
        Action::PublishMember(r) => Some(r.clone()),
        _ => None,
    });
    assert!(published.expect("its record").promotion_vetoed);
}

/// ... but in a synchronous mode a vetoed synchronous standby that is further ahead may hold
/// commits it acknowledged: nobody behind it runs (found by the simulation, seed 62, before
/// the rule: "n3 became writable at 2/78284 without the commit acknowledged at 1/78318").
#[test]
fn a_vetoed_synchronous_standby_ahead_keeps_the_others_from_running() {
    let (a, b) = (standby(1, 5000, None), standby(1, 4000, None));
    let vetoed = vetoed_record(&a);
    let base = View::new().with("n2", vetoed).with("n3", record(&b, None));
    // Quorum commit, one of n2 and n3 acknowledging each commit: n2 may hold some n3 lacks.
    let mut view = base.clone().sync_set("n1", &["n2", "n3"]);
    view.0.sync.method = SyncMethod::Quorum;
    let d3 = member("n3").step(&obs(0, b.clone(), &view, vec![]));
    assert!(!acquires(&d3));
    assert!(
        matches!(&d3.reason, Reason::IneligibleAhead { member, why: election::Ineligible::PromotionVetoed } if member.as_str() == "n2"),
        "{}",
        d3.reason
    );
    // An operator who would rather lose those commits than wait names n3 by hand (the
    // reason says how): `pgha failover --to n3`.
    let by_hand = view.clone().failover_to("n3");
    assert!(d3.reason.to_string().contains("`pgha failover --to`"));
    let d3 = member("n3").step(&obs(0, b.clone(), &by_hand, vec![]));
    assert!(acquires(&d3), "{}", d3.reason);
    // Asynchronous: the next candidate runs (nothing was acknowledged synchronously).
    let d3 = member("n3").step(&obs(0, b, &base, vec![]));
    assert!(acquires(&d3), "{}", d3.reason);
}

/// ... even when it is no longer in the set. Found by the 50,000-seed run with vetoes (seed
/// 16273, the same at d537a57): in mode `on` the leader had emptied the set (no healthy
/// standby) after n3 acknowledged commits as its member; the leader died, n3 won, vetoed,
/// and n2, far behind, was promoted without them.
#[test]
fn a_vetoed_standby_ahead_blocks_even_after_the_set_emptied() {
    let (ahead, behind) = (standby(1, 9000, None), standby(1, 4000, None));
    let vetoed = vetoed_record(&ahead);
    let view = View::new()
        .with("n3", vetoed.clone())
        .with("n2", record(&behind, None))
        .sync_set("n1", &[]);
    let d = member("n2").step(&obs(0, behind.clone(), &view, vec![]));
    assert!(!acquires(&d), "n2 took over: {:?}", d.reason);
    assert!(
        matches!(&d.reason, Reason::IneligibleAhead { member, why: election::Ineligible::PromotionVetoed } if member == &name("n3")),
        "{:?}",
        d.reason
    );
    // Asynchronous mode promises nothing: n2 runs.
    let asynchronous = View::new()
        .with("n3", vetoed)
        .with("n2", record(&behind, None));
    let d = member("n2").step(&obs(0, behind, &asynchronous, vec![]));
    assert!(acquires(&d), "{:?}", d.reason);
}

/// ... and so does the vetoed leader that published the set (found by the simulation with
/// vetoes, seed 2366: the old primary, now a standby holding a commit it had acknowledged as
/// a synchronous standby on the timeline before, vetoed; n3, behind it, was promoted). Also:
/// a member that only took the lease and vetoed too does not end n2's veto.
#[test]
fn a_vetoed_set_leader_ahead_keeps_the_others_from_running() {
    let (a, b) = (standby(2, 5000, None), standby(2, 4000, None));
    let vetoed = vetoed_record(&a);
    let mut view = View::new()
        .with("n2", vetoed)
        .with("n3", record(&b, None))
        .sync_set("n2", &[]);
    view.0.sync.count = 0;
    let d3 = member("n3").step(&obs(0, b, &view, vec![]));
    assert!(!acquires(&d3), "{}", d3.reason);
    assert!(
        matches!(&d3.reason, Reason::IneligibleAhead { member, .. } if member.as_str() == "n2"),
        "{}",
        d3.reason
    );
}

/// n2 leading (revision 20) on timeline 2, which it started at 5000 by `kind` from n1.
fn n2_leads_after(kind: EventKind) -> View {
    View::led_by("n2", 20, &primary(2, 9000)).event(kind, "n1", "n2", 2, 5000)
}

/// Issue 14: a member without data clones from the furthest standby tagged `clonefrom` that
/// streams from the leader, not from the primary; without one (or once it no longer streams),
/// from the leader.
#[test]
fn a_new_member_clones_from_a_streaming_clonefrom_standby() {
    let clonefrom = Tags {
        clonefrom: true,
        ..Tags::default()
    };
    let tagged = |pg: &LocalPg| MemberRecord {
        tags: clonefrom.clone(),
        ..record(pg, Some("n1"))
    };
    let streaming = standby(1, 900, Some("n1"));
    let behind = standby(1, 800, Some("n1"));
    let view = View::led_by("n1", 7, &primary(1, 1000))
        .with("n2", tagged(&streaming))
        .with("n4", tagged(&behind));
    let empty = LocalPg {
        data: DataDir::Missing,
        ..stopped(standby(0, 0, None))
    };
    let d = member("n3").step(&obs(0, empty.clone(), &view, vec![]));
    assert_eq!(d.reason, Reason::CloningFrom { source: name("n2") });
    assert!(has(&d, |a| *a
        == Action::Reclone {
            from: name("n2"),
            move_aside: false
        }));
    // n2 stopped streaming: the leader.
    let view = View::led_by("n1", 7, &primary(1, 1000)).with("n2", tagged(&standby(1, 900, None)));
    let d = member("n3").step(&obs(0, empty, &view, vec![]));
    assert_eq!(d.reason, Reason::CloningFrom { source: name("n1") });
}

#[test]
fn a_diverged_former_primary_rewinds_and_recloning_moves_data_aside() {
    let mut n1 = member("n1");
    let view = n2_leads_after(EventKind::Failover);
    // n1 wrote past 5000 on timeline 1 before it died.
    let old = stopped(primary(1, 6000));
    let d = n1.step(&obs(0, old.clone(), &view, vec![]));
    assert_eq!(d.reason, Reason::Rewinding { leader: name("n2") });
    let failed = Outcome::Job {
        kind: JobKind::Rewind,
        result: Err("no common ancestor".into()),
    };
    let d = n1.step(&obs(1000, old, &view, vec![failed]));
    assert_eq!(
        d.actions.last(),
        Some(&Action::Reclone {
            from: name("n2"),
            move_aside: true
        })
    );
}

/// n3, a standby of n1 (timeline 1), promoted by hand behind pgha's back (timeline 2 from
/// 5000) and demoted by its agent: it runs as a standby of n1 again, on timeline 2, and cannot
/// stream. It stops and rewinds; `rewound` is what it looks like once the rewind succeeded.
/// The member, and its decision then (at 1000 ms).
fn promoted_by_hand_then_rewound(rewound: LocalPg) -> (Member, Decision) {
    let mut n3 = member("n3");
    let view = View::led_by("n1", 7, &primary(1, 6000));
    let diverged = LocalPg {
        streaming: false,
        ..standby(2, 5000, Some("n1"))
    };
    let d = n3.step(&obs(0, diverged, &view, vec![]));
    assert_eq!(d.reason, Reason::StoppingForRewind { leader: name("n1") });
    let d = n3.step(&obs(
        500,
        stopped(standby(1, 4000, None)),
        &view,
        vec![job_done(JobKind::Stop)],
    ));
    assert_eq!(d.reason, Reason::Rewinding { leader: name("n1") });
    let d = n3.step(&obs(1000, rewound, &view, vec![job_done(JobKind::Rewind)]));
    (n3, d)
}

/// Found by `faults::a_standby_promoted_by_hand_takes_no_write_and_rejoins`: pg_rewind of
/// PostgreSQL 15 and older takes the target's timeline from its last checkpoint; a promotion
/// not yet checkpointed (made by hand, then demoted by pgha) reads as "same timeline, no rewind
/// required", and the member came back diverged. It rewound again, and again, twice a second,
/// each time recording "rejoined" in the history, and never streamed. A rewind that brings the
/// member back on the timeline it diverged on, where it cannot stream for the stream timeout,
/// changed nothing: it re-clones (the data moved aside), and records no rejoin until it has one.
#[test]
fn a_rewind_that_changed_nothing_is_followed_by_a_reclone_not_another_rewind() {
    let unchanged = LocalPg {
        streaming: false,
        ..standby(2, 5000, Some("n1"))
    };
    let (mut n3, d) = promoted_by_hand_then_rewound(unchanged.clone());
    assert!(!touches_data(&d), "{d:?}");
    assert_eq!(recorded(&d), None, "a rejoin recorded");
    let view = View::led_by("n1", 7, &primary(1, 6000));
    let timeout = ClusterConfig::default().stream_timeout_ms;
    let d = n3.step(&obs(1000 + timeout, unchanged.clone(), &view, vec![]));
    assert!(!touches_data(&d), "{d:?}");
    let d = n3.step(&obs(1001 + timeout, unchanged, &view, vec![]));
    assert_eq!(
        d.reason,
        Reason::RecloningAfterIneffectiveRewind {
            source: name("n1"),
            timeline: Timeline(2)
        }
    );
    assert!(has(&d, |a| *a
        == Action::Reclone {
            from: name("n1"),
            move_aside: true
        }));
    assert_eq!(recorded(&d), None, "a rejoin recorded");
    // A rewind that worked brings it onto the leader's timeline: it follows, and says so.
    let (_, d) = promoted_by_hand_then_rewound(standby(1, 6000, Some("n1")));
    assert!(!touches_data(&d), "{d:?}");
    let event = recorded(&d).expect("the rejoin in the history");
    assert_eq!(event.kind, EventKind::RejoinRewind);
}

/// Found by `pgha chaos` (seed 1203): a primary crashed on timeline 36, another took over on
/// 37. Rewound, it started and replayed its timeline 36 up to the point where 37 forked, its
/// WAL receiver still on 36 (not streaming yet); the first look after the start took that for
/// a rewind that changed nothing, and it re-cloned at once, its data moved aside. The second
/// time it happened it kept two moved-aside directories and refused to re-clone again: out of
/// the cluster for good. A rewind is judged ineffective only once the member could not stream
/// for the stream timeout; one that streams the leader's timeline soon after rejoined.
#[test]
fn a_rewound_member_replaying_its_old_timeline_to_the_fork_is_not_recloned() {
    let mut n1 = member("n1");
    // n2 took over on timeline 2 from 5000; n1, the old primary, wrote on to 6000 before it
    // crashed, and was started again as a standby of n2.
    let view = n2_leads_after(EventKind::Failover);
    let diverged = LocalPg {
        streaming: false,
        ..standby(1, 6000, Some("n2"))
    };
    let d = n1.step(&obs(0, diverged, &view, vec![]));
    assert_eq!(d.reason, Reason::StoppingForRewind { leader: name("n2") });
    let stopped_n1 = stopped(standby(1, 6000, None));
    let d = n1.step(&obs(500, stopped_n1, &view, vec![job_done(JobKind::Stop)]));
    assert_eq!(d.reason, Reason::Rewinding { leader: name("n2") });
    // Rewound and started: it replays timeline 1 up to the fork, its receiver on timeline 1.
    let replaying = LocalPg {
        streaming: false,
        ..standby(1, 4000, Some("n2"))
    };
    let rewound = vec![job_done(JobKind::Rewind)];
    let d = n1.step(&obs(1000, replaying.clone(), &view, rewound));
    assert!(
        !touches_data(&d),
        "re-cloned while replaying to the fork: {d:?}"
    );
    assert_eq!(recorded(&d), None, "a rejoin recorded before it streams");
    let d = n1.step(&obs(2000, replaying, &view, vec![]));
    assert!(
        !touches_data(&d),
        "re-cloned while replaying to the fork: {d:?}"
    );
    // Past the fork it streams n2's timeline: rejoined.
    let d = n1.step(&obs(2500, standby(2, 9000, Some("n2")), &view, vec![]));
    assert!(!touches_data(&d), "{d:?}");
    let event = recorded(&d).expect("the rejoin in the history");
    assert_eq!(event.kind, EventKind::RejoinRewind);
}

fn at_host(n: &str, ip: &str) -> Member {
    Member::new(MemberSettings {
        name: name(n),
        tags: Tags::default(),
        addresses: [("api".to_string(), format!("{ip}:8008"))].into(),
        config: ClusterConfig::default(),
    })
}

/// Found by `faults::a_second_agent_under_the_leaders_name_takes_nothing`: a second agent
/// started under the leader's name on another host (a configuration copied without changing
/// `member.name`) found the leader key naming it, renewed the leader's lease as its own and,
/// having no data, let it go; it also rewrote the leader's record with its own addresses. The
/// store's record of a member that names other addresses than this member's is another
/// agent's: this member takes nothing under that name (no lease, no record, no candidacy),
/// demotes what it may have made writable, and says why.
#[test]
fn a_member_whose_name_the_store_gives_other_addresses_takes_nothing() {
    let leader = primary(1, 5000);
    let mut theirs = record(&leader, Some("n1"));
    theirs.addresses = [("api".to_string(), "10.0.0.1:8008".to_string())].into();
    let view = View::new().leader("n1", 7).with("n1", theirs.clone());
    let mut copy = at_host("n1", "10.0.0.9");
    let empty = LocalPg {
        data: DataDir::Missing,
        ..LocalPg::default()
    };
    for at in [0, 1000, 20_000] {
        let d = copy.step(&obs(at, empty.clone(), &view, vec![]));
        assert!(
            matches!(&d.reason, Reason::NameTaken { theirs, .. } if theirs.contains("10.0.0.1:8008")),
            "{:?}",
            d.reason
        );
        assert!(d.reason.to_string().contains("is taken"), "{}", d.reason);
        assert!(d.actions.is_empty(), "{:?}", d.actions);
    }
    // A copy that runs a writable PostgreSQL demotes it.
    let mut writable = at_host("n1", "10.0.0.9");
    let d = writable.step(&obs(0, primary(1, 5000), &view, vec![]));
    assert!(has(&d, |a| matches!(a, Action::Demote { .. })), "{d:?}");
    // The member whose addresses the record names is at home; so is one whose record names
    // none (an agent of an older version).
    let mut own = at_host("n1", "10.0.0.1");
    let d = own.step(&obs(0, leader.clone(), &view, vec![]));
    assert_not_reason!(d, Reason::NameTaken { .. });
    let unaddressed = View::new()
        .leader("n1", 7)
        .with("n1", record(&leader, Some("n1")));
    let d = at_host("n1", "10.0.0.9").step(&obs(0, empty, &unaddressed, vec![]));
    assert_not_reason!(d, Reason::NameTaken { .. });
}

/// Found by `faults::a_standby_pointed_at_an_empty_etcd_does_not_promote`: a standby whose
/// agent was restarted pointed at another etcd, an empty one, saw no leader, no member and no
/// cluster, and promoted itself in its first step beside the primary that lived on (3 writes
/// acknowledged by it, then lost). A store without the cluster's identifier is led again only
/// once a majority of the members this one formed the cluster with publish data there; after
/// etcd's data is lost they all do.
#[test]
fn a_store_without_the_cluster_is_led_only_by_a_majority_of_its_members() {
    let local = standby(1, 5000, Some("n2"));
    // n3 learns who formed the cluster from a store that holds it.
    let mut n3 = member("n3");
    let whole = View::led_by("n2", 7, &primary(1, 5000))
        .with("n1", record(&standby(1, 5000, Some("n2")), Some("n2")));
    n3.step(&obs(0, local.clone(), &whole, vec![]));
    assert_eq!(n3.peers(), vec![name("n1"), name("n2"), name("n3")]);
    // Restarted (its agent reads the peers back) and pointed at an empty store.
    let mut restarted = member("n3");
    restarted.knows_peers(n3.peers());
    let empty = View(ClusterView::default());
    for at in [0, 5_000, 60_000] {
        let d = restarted.step(&obs(at, local.clone(), &empty, vec![]));
        assert_eq!(
            d.reason,
            Reason::StoreWithoutItsPeers {
                present: 1,
                known: vec![name("n1"), name("n2"), name("n3")]
            }
        );
        assert!(!acquires(&d), "{d:?}");
    }
    // The store wiped under the whole cluster: the others publish again, and the election
    // goes on.
    let wiped = View(ClusterView::default())
        .with("n1", record(&standby(1, 4000, None), None))
        .with("n2", record(&standby(1, 4500, None), None));
    let mut at = 61_000;
    loop {
        let d = restarted.step(&obs(at, local.clone(), &wiped, vec![]));
        assert_not_reason!(d, Reason::StoreWithoutItsPeers { .. });
        if acquires(&d) {
            break;
        }
        at += 1000;
        assert!(at < 120_000, "never ran: {}", d.reason);
    }
    // A member that never formed a cluster with others is not held back.
    let d = member("n3").step(&obs(0, local.clone(), &empty, vec![]));
    assert_not_reason!(d, Reason::StoreWithoutItsPeers { .. });
    // Nor does it learn peers from another cluster's store.
    let mut foreign = whole.clone();
    foreign.0.initialize = Some(SystemId(2));
    let mut n3 = member("n3");
    let d = n3.step(&obs(0, local, &foreign, vec![]));
    assert!(matches!(d.reason, Reason::SystemIdMismatch { .. }), "{d:?}");
    assert!(n3.peers().is_empty(), "{:?}", n3.peers());
}

/// Found by `faults::leader_data_disk_full`: a clone that fails was begun again every loop,
/// each attempt a base backup on the leader (a checkpoint there, a slot, perhaps gigabytes
/// copied again). After a failure the next waits twice the loop, doubling per failure in a
/// row up to a ttl; a success ends the backoff.
#[test]
fn a_failing_clone_backs_off() {
    let mut n3 = member("n3");
    let view = View::led_by("n1", 7, &primary(1, 1000));
    let empty = LocalPg {
        data: DataDir::Missing,
        ..stopped(standby(0, 0, None))
    };
    let clones = |d: &Decision| has(d, |a| matches!(a, Action::Reclone { .. }));
    let failed = || Outcome::Job {
        kind: JobKind::Reclone,
        result: Err("pg_basebackup failed".into()),
    };
    let config = ClusterConfig::default();
    let (loop_ms, ttl) = (config.loop_wait_ms, config.ttl_ms);
    assert!(clones(&n3.step(&obs(0, empty.clone(), &view, vec![]))));
    let d = n3.step(&obs(100, empty.clone(), &view, vec![failed()]));
    assert_eq!(
        d.reason,
        Reason::CloneFailing {
            failures: 1,
            retry_in_ms: 2 * loop_ms
        }
    );
    assert!(!clones(&d));
    assert!(d.wake_at <= Millis(100 + 2 * loop_ms));
    assert!(clones(&n3.step(&obs(
        100 + 2 * loop_ms,
        empty.clone(),
        &view,
        vec![]
    ))));
    let at = 200 + 2 * loop_ms;
    let d = n3.step(&obs(at, empty.clone(), &view, vec![failed()]));
    assert!(!clones(&d));
    assert!(matches!(d.reason, Reason::CloneFailing { failures: 2, .. }));
    assert!(!clones(&n3.step(&obs(
        at + 4 * loop_ms - 1,
        empty.clone(),
        &view,
        vec![]
    ))));
    assert!(clones(&n3.step(&obs(
        at + 4 * loop_ms,
        empty.clone(),
        &view,
        vec![]
    ))));
    // many failures: a ttl at most
    let mut now = at + 4 * loop_ms;
    for _ in 0..6 {
        now += 1;
        n3.step(&obs(now, empty.clone(), &view, vec![failed()]));
        now += ttl;
        assert!(clones(&n3.step(&obs(now, empty.clone(), &view, vec![]))));
    }
    // once one succeeded, the next failure waits twice the loop again
    n3.step(&obs(
        now + 1,
        empty.clone(),
        &view,
        vec![job_done(JobKind::Reclone)],
    ));
    n3.step(&obs(now + 2, empty.clone(), &view, vec![]));
    let d = n3.step(&obs(now + 3, empty, &view, vec![failed()]));
    assert!(
        matches!(d.reason, Reason::CloneFailing { failures: 1, .. }),
        "{}",
        d.reason
    );
}

/// Found by `faults::leader_data_disk_full`: the old primary's disk is full, so its rewind
/// fails and the re-clone that follows finds no room for a copy beside the data it would move
/// aside. A full disk is no divergence: the data stays in place, the member says why and waits
/// a ttl, then tries the rewind again, not a re-clone.
#[test]
fn a_reclone_without_room_keeps_the_data_in_place_and_rewinds_later() {
    let mut n1 = member("n1");
    let view = n2_leads_after(EventKind::Failover);
    let old = stopped(primary(1, 6000));
    n1.step(&obs(0, old.clone(), &view, vec![]));
    let failed = Outcome::Job {
        kind: JobKind::Rewind,
        result: Err("could not write lock file: No space left on device".into()),
    };
    let d = n1.step(&obs(1000, old.clone(), &view, vec![failed]));
    assert!(has(&d, |a| matches!(
        a,
        Action::Reclone {
            move_aside: true,
            ..
        }
    )));
    let why = "not re-cloning: no room".to_string();
    let no_room = Outcome::Job {
        kind: JobKind::Reclone,
        result: Err(JobFailure::NoRoom(why.clone())),
    };
    let d = n1.step(&obs(2000, old.clone(), &view, vec![no_room]));
    assert_eq!(d.reason, Reason::WaitingForRoom { why: why.clone() });
    assert!(
        d.actions.iter().all(|a| a.job().is_none()),
        "{:?}",
        d.actions
    );
    let ttl = ClusterConfig::default().ttl_ms;
    assert!(d.wake_at <= Millis(2000 + ttl));
    let d = n1.step(&obs(2000 + ttl - 1, old.clone(), &view, vec![]));
    assert_eq!(d.reason, Reason::WaitingForRoom { why });
    let d = n1.step(&obs(2000 + ttl, old, &view, vec![]));
    assert_eq!(d.reason, Reason::Rewinding { leader: name("n2") });
}

/// A rewind that failed because the member's disk is full (found by the whole suite: the disk
/// was freed between that failure and the re-clone it led to, which then found room and moved
/// the intact data aside) is no divergence either: no re-clone, wait a ttl, rewind again.
#[test]
fn a_rewind_that_failed_on_a_full_disk_is_tried_again_not_replaced_by_a_reclone() {
    let mut n1 = member("n1");
    let view = n2_leads_after(EventKind::Failover);
    let old = stopped(primary(1, 6000));
    let d = n1.step(&obs(0, old.clone(), &view, vec![]));
    assert_eq!(d.reason, Reason::Rewinding { leader: name("n2") });
    let why = "pg_rewind could not run with /m full".to_string();
    let full = Outcome::Job {
        kind: JobKind::Rewind,
        result: Err(JobFailure::NoRoom(why.clone())),
    };
    let d = n1.step(&obs(1000, old.clone(), &view, vec![full]));
    assert_eq!(d.reason, Reason::WaitingForRoom { why });
    assert!(
        d.actions.iter().all(|a| a.job().is_none()),
        "{:?}",
        d.actions
    );
    let ttl = ClusterConfig::default().ttl_ms;
    let d = n1.step(&obs(1000 + ttl, old, &view, vec![]));
    assert_eq!(d.reason, Reason::Rewinding { leader: name("n2") });
    assert!(!has(&d, |a| matches!(a, Action::Reclone { .. })));
}

/// Found by `faults::leader_host_lossy`: the old primary, on a host losing 30 % of its
/// packets, could not connect to its rewind source within 5 s; that rewind failure led to a
/// re-clone (over the same lossy link), the intact data moved aside. A source that cannot be
/// reached says nothing of this member's data: no re-clone, the rewind is tried again.
#[test]
fn a_rewind_whose_source_could_not_be_reached_is_tried_again_not_replaced_by_a_reclone() {
    let mut n1 = member("n1");
    let view = n2_leads_after(EventKind::Failover);
    let old = stopped(primary(1, 6000));
    let d = n1.step(&obs(0, old.clone(), &view, vec![]));
    assert_eq!(d.reason, Reason::Rewinding { leader: name("n2") });
    for at in [1000, 7000] {
        let unreachable = Outcome::Job {
            kind: JobKind::Rewind,
            result: Err(JobFailure::SourceUnreachable(
                "connect to n2 timed out after 5 s".into(),
            )),
        };
        let d = n1.step(&obs(at, old.clone(), &view, vec![unreachable]));
        assert_eq!(d.reason, Reason::Rewinding { leader: name("n2") });
        assert!(
            has(&d, |a| matches!(a, Action::Rewind { .. })),
            "{:?}",
            d.actions
        );
        assert!(!has(&d, |a| matches!(a, Action::Reclone { .. })));
    }
    // a rewind that ran and failed is another matter: the data may be half rewound
    let failed = Outcome::Job {
        kind: JobKind::Rewind,
        result: Err("pg_rewind exited with 1".into()),
    };
    let d = n1.step(&obs(13000, old, &view, vec![failed]));
    assert!(has(&d, |a| matches!(
        a,
        Action::Reclone {
            move_aside: true,
            ..
        }
    )));
}

/// Found by `pgha chaos` (kill -9 of a primary in a synchronous mode): the old primary, back
/// as a standby past the switch point, is stopped to rewind; stopped, it reports its last
/// restartpoint, before the switch point. It must rewind anyway, not follow (and fail to
/// stream for stream_timeout_ms).
#[test]
fn a_member_stopped_for_a_rewind_rewinds_whatever_its_stopped_position_says() {
    let mut n1 = member("n1");
    let view = n2_leads_after(EventKind::Failover);
    let running = standby(1, 6000, None);
    let d = n1.step(&obs(0, running, &view, vec![]));
    assert_eq!(d.reason, Reason::StoppingForRewind { leader: name("n2") });
    let stopped_early = stopped(standby(1, 4500, None));
    let d = n1.step(&obs(
        500,
        stopped_early,
        &view,
        vec![job_done(JobKind::Stop)],
    ));
    assert_eq!(d.reason, Reason::Rewinding { leader: name("n2") });
}

/// Found by `pgha chaos` (a leader's agent paused, asynchronous mode): its supervisor killed
/// PostgreSQL at the lease deadline, after WAL the new leader never received; stopped so, it
/// reports its last checkpoint, before the switch point. It must rewind (which finishes crash
/// recovery first), not follow and fail to stream for stream_timeout_ms.
#[test]
fn a_crashed_former_primary_rewinds_whatever_its_last_checkpoint_says() {
    let mut n1 = member("n1");
    let view = n2_leads_after(EventKind::Failover);
    let killed = LocalPg {
        crashed: true,
        ..stopped(primary(1, 4000))
    };
    let d = n1.step(&obs(0, killed, &view, vec![]));
    assert_eq!(d.reason, Reason::Rewinding { leader: name("n2") });
    // Shut down cleanly at the same position, it just follows.
    let mut n1 = member("n1");
    let d = n1.step(&obs(0, stopped(primary(1, 4000)), &view, vec![]));
    assert_eq!(
        d.actions.last(),
        Some(&Action::Follow { leader: name("n2") })
    );
}

/// Found by `pgha chaos` (distributed, synchronous mode on, kill -9 of the primary): the
/// crashed primary handed the lease over, started as a standby to take part in the election
/// and, probed while it still replayed its own WAL, looked behind the switch point: it
/// followed, and its WAL receiver flapped between streaming and failing without ever reaching
/// stream_timeout_ms. Started from a crash, it must rewind once a leader exists.
#[test]
fn a_crashed_primary_started_to_elect_rewinds_once_a_leader_exists() {
    let mut n1 = member("n1");
    let killed = LocalPg {
        crashed: true,
        ..stopped(primary(1, 4000))
    };
    let d = n1.step(&obs(0, killed, &View::new(), vec![]));
    assert_eq!(d.reason, Reason::StartingToElect);
    let view = n2_leads_after(EventKind::Failover);
    let replaying = LocalPg {
        streaming: false,
        ..standby(1, 4500, None)
    };
    let d = n1.step(&obs(1000, replaying, &view, vec![job_done(JobKind::Start)]));
    assert_eq!(d.reason, Reason::StoppingForRewind { leader: name("n2") });
}

/// Found by `faults::every_host_loses_power`: a standby that received more of the old
/// primary's WAL than the member promoted (from the old primary, started as a standby to
/// compare after the power came back) is configured for the new leader; its WAL receiver asks,
/// again and again, for the old timeline's WAL past the switch point. That is divergence
/// already: it must rewind now, not wait out stream_timeout_ms (30 s) not streaming.
#[test]
fn a_standby_configured_for_the_leader_past_its_switch_point_rewinds_at_once() {
    let mut n3 = member("n3");
    let view = n2_leads_after(EventKind::Failover);
    let past = LocalPg {
        streaming: false,
        ..standby(1, 6000, Some("n2"))
    };
    let d = n3.step(&obs(0, past, &view, vec![]));
    assert_eq!(d.reason, Reason::StoppingForRewind { leader: name("n2") });
    // Behind the switch point, the same standby waits for its stream as before.
    let mut n3 = member("n3");
    let behind = LocalPg {
        streaming: false,
        ..standby(1, 4000, Some("n2"))
    };
    let d = n3.step(&obs(0, behind, &view, vec![]));
    assert_reason!(d, Reason::NotStreaming { .. });
    assert!(!touches_data(&d));
}

#[test]
fn a_former_primary_behind_the_switch_point_just_follows() {
    let mut n1 = member("n1");
    let view = n2_leads_after(EventKind::Switchover);
    let d = n1.step(&obs(0, stopped(standby(1, 5000, None)), &view, vec![]));
    assert_eq!(
        d.actions.last(),
        Some(&Action::Follow { leader: name("n2") })
    );
}

#[test]
fn a_standby_does_not_rewind_from_a_leader_that_is_merely_down() {
    let mut n2 = member("n2");
    let mut leader = record(&primary(1, 9000), Some("n1"));
    leader.running = false;
    let view = View::new().leader("n1", 5).with("n1", leader);
    let not_streaming = LocalPg {
        streaming: false,
        ..standby(1, 9000, Some("n1"))
    };
    n2.step(&obs(0, not_streaming.clone(), &view, vec![]));
    let d = n2.step(&obs(120_000, not_streaming, &view, vec![]));
    assert_reason!(d, Reason::NotStreaming { .. });
    assert!(!touches_data(&d));
}

/// Issue 9, item 6: a standby whose link to a healthy primary is cut (the store still
/// answers) waits however long the cut lasts; only a leader it can reach and that still
/// refuses its stream makes it rewind.
#[test]
fn a_standby_that_cannot_reach_a_healthy_leader_waits_instead_of_rewinding() {
    let leader = record(&primary(1, 9000), Some("n1"));
    let view = View::new().leader("n1", 5).with("n1", leader);
    let not_streaming = LocalPg {
        streaming: false,
        ..standby(1, 9000, Some("n1"))
    };
    let at = |now: u64, reachable: Option<bool>| Observation {
        leader_reachable: reachable,
        ..obs(now, not_streaming.clone(), &view, vec![])
    };
    let mut n2 = member("n2");
    n2.step(&at(0, Some(false)));
    for now in [1_000, 31_000, 120_000, 600_000] {
        let d = n2.step(&at(now, Some(false)));
        assert_reason!(d, Reason::LeaderUnreachable { .. });
        assert!(!touches_data(&d));
    }
    // The link is back: a fresh WAL receiver now (the old one may sit in TCP retries for
    // minutes), and a whole stream timeout for it (found by the standby-link fault test: it
    // rewound right after the heal).
    let d = n2.step(&at(601_000, Some(true)));
    assert_reason!(d, Reason::NotStreaming { .. });
    assert!(has(&d, |a| *a == Action::RestartWalReceiver));
    let d = n2.step(&at(620_000, Some(true)));
    assert!(!has(&d, |a| matches!(
        a,
        Action::StopPostgres(_) | Action::Rewind { .. } | Action::RestartWalReceiver
    )));
    // Reachable and still refused past the stream timeout: treated as diverged.
    let d = n2.step(&at(632_000, Some(true)));
    assert_eq!(d.reason, Reason::StoppingForRewind { leader: name("n1") });
}

#[test]
fn no_rewind_is_decided_against_a_leader_still_promoting() {
    let mut n1 = member("n1");
    // The new leader n3 still reports a stale, older timeline while it promotes.
    let promoting = record(&standby(2, 9000, None), None);
    let view = View::new().leader("n3", 30).with("n3", promoting);
    let d = n1.step(&obs(0, stopped(standby(3, 9500, None)), &view, vec![]));
    assert_eq!(
        d.reason,
        Reason::WaitingForLeaderToPromote { leader: name("n3") }
    );
    assert!(!has(&d, |a| matches!(
        a,
        Action::Rewind { .. } | Action::StopPostgres(_)
    )));
}

#[test]
fn a_manual_failover_target_acquires_once_the_named_leader_let_go() {
    let demoted = standby(1, 5000, None);
    let target = standby(1, 5000, None);
    let mut view = leaderless(&demoted, &target, None);
    // n2 here plays the demoted former leader "n1"'s role under the name n2; n3 is the target.
    view.0.switchover = Some(PendingSwitchover {
        request: SwitchoverRequest {
            from: Some(name("n2")),
            to: Some(name("n3")),
            kind: RequestKind::Failover {
                force: false,
                allow_data_loss: false,
            },
            at: None,
        },
        revision: 9,
    });
    let d = member("n3").step(&obs(0, target, &view, vec![]));
    assert!(acquires(&d), "{:?}", d.reason);
}

#[test]
fn a_restarted_former_primary_that_follows_records_its_rejoin() {
    let mut n1 = member("n1");
    let view = n2_leads_after(EventKind::Failover);
    // A fresh agent finds a stopped primary's data directory (no standby.signal).
    let d = n1.step(&obs(0, stopped(primary(1, 5000)), &view, vec![]));
    assert_eq!(
        d.actions.last(),
        Some(&Action::Follow { leader: name("n2") })
    );
    let done = job_done(JobKind::Follow);
    let d = n1.step(&obs(500, standby(2, 9000, Some("n2")), &view, vec![done]));
    assert!(
        has(
            &d,
            |a| matches!(a, Action::RecordHistory(e) if e.kind == EventKind::RejoinFollow)
        ),
        "{:?}",
        d.actions
    );
}

#[test]
fn switchover_demotes_the_leader_first_and_the_target_waits_for_replay() {
    let (mut n1, _) = established_leader();
    let n2_pg = standby(1, 1000, Some("n1"));
    let view = View::led_by("n1", 7, &primary(1, 1000))
        .with("n2", record(&n2_pg, Some("n1")))
        .switchover("n1", Some("n2"), 30);
    let d = n1.step(&obs(100, primary(1, 1000), &view, vec![]));
    assert_eq!(
        d.actions.last(),
        Some(&Action::Demote {
            mode: StopMode::Fast,
            fencing: false
        })
    );
    assert_eq!(
        d.reason,
        Reason::SwitchoverDemoting {
            target: Some(name("n2"))
        }
    );
    let demoted = job_done(JobKind::Demote);
    let d = n1.step(&obs(600, standby(1, 1200, None), &view, vec![demoted]));
    assert!(has(&d, |a| matches!(
        a,
        Action::ReleaseLeader { revision: 7 }
    )));

    let after = View::new()
        .with("n1", record(&standby(1, 1200, None), None))
        .with("n2", record(&n2_pg, None))
        .switchover("n1", Some("n2"), 30);
    let mut n2 = member("n2");
    let d = n2.step(&obs(700, standby(1, 1100, None), &after, vec![]));
    assert_eq!(
        d.reason,
        Reason::CatchingUpForSwitchover {
            replayed: Lsn(1100),
            needed: Lsn(1200)
        }
    );
    let d = n2.step(&obs(800, standby(1, 1200, None), &after, vec![]));
    assert!(acquires(&d));
}

#[test]
fn switchover_to_a_member_not_streaming_is_refused_and_cleared() {
    let (mut n1, _) = established_leader();
    let view = View::led_by("n1", 7, &primary(1, 1000))
        .with("n2", record(&standby(1, 1000, None), Some("n1")))
        .switchover("n1", Some("n2"), 30);
    let d = n1.step(&obs(100, primary(1, 1000), &view, vec![]));
    assert!(matches!(d.reason, Reason::SwitchoverRefused(_)));
    assert!(has(&d, |a| matches!(
        a,
        Action::ClearSwitchover { revision: 30 }
    )));
    assert!(!has(&d, |a| matches!(a, Action::Demote { .. })));
}

#[test]
fn paused_cluster_takes_no_automatic_action() {
    let (a, b) = (standby(1, 5000, None), standby(1, 4000, None));
    let view = leaderless(&a, &b, None).config(|c| c.paused = true);
    let d = member("n2").step(&obs(0, a, &view, vec![]));
    assert_eq!(d.reason, Reason::PausedWithoutLeader);
    assert!(d
        .actions
        .iter()
        .all(|a| matches!(a, Action::PublishMember(_))));
}

#[test]
fn a_new_cluster_races_for_the_key_then_bootstraps() {
    let mut n1 = member("n1");
    let empty = View(ClusterView::default());
    let d = n1.step(&obs(0, LocalPg::default(), &empty, vec![]));
    assert_eq!(d.reason, Reason::RacingToBootstrap);
    let mine = View(ClusterView::default()).leader("n1", 1);
    let d = n1.step(&obs(10, LocalPg::default(), &mine, vec![acquired(0, 1)]));
    assert_eq!(d.actions.last(), Some(&Action::Bootstrap));
}

/// etcd lost its data while the cluster ran: no leader, no system identifier in the store.
/// A member without data (a new one, or one re-cloning) must not initialise another cluster,
/// which would take the clients with an empty database: neither while a member publishes
/// data, nor, when none does, once it has seen the cluster's identifier itself.
#[test]
fn a_store_that_lost_its_keys_gets_no_new_cluster() {
    let with_data = standby(2, 9_000, None);
    let wiped = View(ClusterView::default()).with("n1", record(&with_data, None));
    let mut n3 = member("n3");
    for now in (0..=20_000).step_by(1_000) {
        let d = n3.step(&obs(now, LocalPg::default(), &wiped, vec![]));
        assert_reason!(d, Reason::StoreLostItsCluster { .. });
        assert!(!acquires(&d), "{:?}", d.actions);
    }
    // n3 saw the cluster before the store lost it, and nobody has published since
    let mut n3 = member("n3");
    let before = View::new().with("n1", record(&with_data, None));
    n3.step(&obs(0, LocalPg::default(), &before, vec![]));
    let empty = View(ClusterView::default());
    for now in (1_000..=20_000).step_by(1_000) {
        let d = n3.step(&obs(now, LocalPg::default(), &empty, vec![]));
        assert_reason!(d, Reason::StoreLostItsCluster { with_data: None });
        assert!(!acquires(&d), "{:?}", d.actions);
    }
    // n3's agent restarted since, its data gone: it remembers the cluster beside its data
    let mut n3 = member("n3");
    n3.knows_cluster(SystemId(1));
    let d = n3.step(&obs(0, LocalPg::default(), &empty, vec![]));
    assert_reason!(d, Reason::StoreLostItsCluster { with_data: None });
    assert!(!acquires(&d), "{:?}", d.actions);
    // Given the key all the same (seeded by `pgha up`), it lets go of it instead of
    // initialising (before: it bootstrapped an empty cluster in its place)
    let seeded = View(ClusterView::default()).leader("n3", 1);
    n3.step(&obs(10, LocalPg::default(), &seeded, vec![]));
    let renewal = Outcome::LeaderRenewed {
        requested_at: Millis(10),
        revision: 1,
        ttl: ClusterConfig::default().ttl(),
    };
    let d = n3.step(&obs(20, LocalPg::default(), &seeded, vec![renewal]));
    assert_reason!(d, Reason::StoreLostItsCluster { with_data: None });
    assert!(
        !has(&d, |a| matches!(a, Action::Bootstrap)),
        "{:?}",
        d.actions
    );
    assert!(has(&d, |a| matches!(a, Action::ReleaseLeader { .. })));
}

#[test]
fn a_crashed_primary_is_restarted_then_given_up() {
    let (mut n1, view) = established_leader();
    let down = stopped(primary(1, 1000));
    let d = n1.step(&obs(100, down.clone(), &view, vec![]));
    assert_eq!(
        d.actions.last(),
        Some(&Action::StartPostgres(StartRole::Primary))
    );
    let failed = Outcome::Job {
        kind: JobKind::Start,
        result: Err("boom".into()),
    };
    let renewed = renewed(5000);
    let d = n1.step(&obs(5200, down, &view, vec![failed, renewed]));
    assert!(has(&d, |a| matches!(a, Action::ReleaseLeader { .. })));
    assert!(matches!(d.reason, Reason::PrimaryNotRestartable { .. }));
}

#[test]
fn a_crashed_synchronous_primary_hands_over_instead_of_restarting() {
    let mut n1 = member("n1");
    let n2 = standby(1, 1000, Some("n1"));
    let view = View::led_by("n1", 7, &primary(1, 1000))
        .with("n2", record(&n2, Some("n1")))
        .sync_set("n1", &["n2"]);
    n1.step(&obs(0, primary(1, 1000), &view, vec![acquired(0, 7)]));
    let d = n1.step(&obs(100, stopped(primary(1, 1000)), &view, vec![]));
    assert_eq!(d.reason, Reason::SyncPrimaryDownHandingOver);
    assert!(has(&d, |a| matches!(a, Action::ReleaseLeader { .. })));
    assert!(!has(&d, |a| matches!(a, Action::StartPostgres(_))));

    // With no synchronous standby alive there is nobody to hand over to: restart.
    let mut n1 = member("n1");
    let lonely = View(ClusterView {
        members: BTreeMap::new(),
        ..view.0.clone()
    })
    .with("n1", record(&primary(1, 1000), Some("n1")));
    n1.step(&obs(0, primary(1, 1000), &lonely, vec![acquired(0, 7)]));
    let d = n1.step(&obs(100, stopped(primary(1, 1000)), &lonely, vec![]));
    assert_eq!(
        d.actions.last(),
        Some(&Action::StartPostgres(StartRole::Primary))
    );
}

#[test]
fn reasons_read_as_log_lines() {
    let line = Reason::Behind { best: name("n2") }.to_string();
    assert_eq!(line, "no leader; n2 is the better candidate");
    let line = Reason::StoreDownLeaseTrusted { remaining_ms: 1200 }.to_string();
    assert!(line.contains("1200 ms"));
}

fn unresponsive(pg: LocalPg) -> LocalPg {
    LocalPg {
        unresponsive: true,
        ..pg
    }
}

/// Issue 9, item 4: a primary whose postmaster lives but does not answer the probe (slots
/// exhausted, I/O stall) is neither restarted, nor reconfigured as a standby, nor given up at
/// once: the leader keeps its lease, then after `primary_start_timeout_ms` demotes and lets go
/// only once its PostgreSQL is not writable.
#[test]
fn an_unresponsive_primary_keeps_its_lease_then_demotes_before_letting_go() {
    let (mut n1, view) = established_leader();
    let silent = unresponsive(primary(1, 1000));
    let d = n1.step(&obs(1000, silent.clone(), &view, vec![]));
    assert_eq!(d.reason, Reason::PostgresUnresponsive { for_ms: 0 });
    assert!(has(&d, |a| matches!(a, Action::RenewLeader { .. })));
    assert!(!has(&d, |a| matches!(
        a,
        Action::StartPostgres(_) | Action::ReleaseLeader { .. } | Action::Demote { .. }
    )));
    let timeout = ClusterConfig::default().primary_start_timeout_ms;
    let d = n1.step(&obs(1000 + timeout + 1, silent.clone(), &view, vec![]));
    assert!(
        has(&d, |a| *a
            == Action::Demote {
                mode: StopMode::Immediate,
                fencing: true
            }),
        "{:?}",
        d.reason
    );
    assert!(!has(&d, |a| matches!(
        a,
        Action::ReleaseLeader { .. } | Action::RenewLeader { .. }
    )));
    let done = job_done(JobKind::Demote);
    let d = n1.step(&obs(
        1000 + timeout + 500,
        standby(1, 1000, None),
        &view,
        vec![done],
    ));
    assert_eq!(d.reason, Reason::UnresponsivePrimaryDemoted);
    assert!(has(&d, |a| matches!(a, Action::ReleaseLeader { .. })));
    assert!(!has(&d, |a| matches!(a, Action::Promote)));
}

/// The leader's agent cannot write a later fencing deadline (the file system holding its
/// lease file is full): its supervisor kills PostgreSQL at the deadline it still holds, however
/// long the store's lease is renewed. The leader serves on while that deadline is more than a
/// safety margin away (a write that fails once and then succeeds changes nothing), then stops
/// PostgreSQL cleanly, lets go once it is not writable, and stays out of failovers.
#[test]
fn a_leader_whose_fence_cannot_be_moved_hands_over_before_its_supervisor_fences() {
    let (mut n1, view) = established_leader();
    let margin = ClusterConfig::default().safety_margin_ms;
    let armed = 8_750;
    let stuck = |now: u64, local: LocalPg, outcomes: Vec<Outcome>| Observation {
        fence_stuck_at: Some(Millis(armed)),
        ..obs(now, local, &view, outcomes)
    };
    let d = n1.step(&stuck(1000, primary(1, 1100), vec![]));
    assert_eq!(d.reason, Reason::Leading { standbys: 0 });
    assert!(has(&d, |a| matches!(a, Action::RenewLeader { .. })));
    assert!(d.wake_at <= Millis(armed - margin), "{:?}", d.wake_at);
    // the next write succeeded: nothing to do
    let d = n1.step(&obs(2000, primary(1, 1200), &view, vec![]));
    assert_eq!(d.reason, Reason::Leading { standbys: 0 });
    // failing again, a margin before the deadline the supervisor holds
    let d = n1.step(&stuck(armed - margin - 1, primary(1, 1300), vec![]));
    assert!(!has(&d, |a| matches!(a, Action::Demote { .. })));
    let d = n1.step(&stuck(armed - margin, primary(1, 1300), vec![]));
    assert_eq!(
        d.reason,
        Reason::FenceStuckDemoting {
            fenced_in_ms: margin
        }
    );
    assert!(has(&d, |a| *a
        == Action::Demote {
            mode: StopMode::Fast,
            fencing: false
        }));
    assert!(!has(&d, |a| matches!(a, Action::ReleaseLeader { .. })));
    // still demoting: the lease is renewed, not released
    let d = n1.step(&stuck(armed - margin + 300, primary(1, 1300), vec![]));
    assert!(!has(&d, |a| matches!(
        a,
        Action::ReleaseLeader { .. } | Action::Demote { .. }
    )));
    let done = job_done(JobKind::Demote);
    let d = n1.step(&stuck(
        armed - margin + 600,
        standby(1, 1300, None),
        vec![done],
    ));
    assert_eq!(d.reason, Reason::FenceStuckHandedOver);
    assert!(has(&d, |a| matches!(
        a,
        Action::ReleaseLeader { revision: 7 }
    )));
    // no leader now, and n1 the only candidate: it stays out
    let gone = View::new().with("n1", record(&standby(1, 1300, None), None));
    stays_out_then_a_later_term_is_not_let_go(n1, gone, armed);
}

/// The member that handed over (above) stays out while its fence is stuck; if it lost its term
/// while the demotion was under way, what it meant to do in that term does not carry over.
fn stays_out_then_a_later_term_is_not_let_go(mut n1: Member, gone: View, armed: u64) {
    let d = n1.step(&Observation {
        fence_stuck_at: Some(Millis(armed)),
        ..obs(armed, standby(1, 1300, None), &gone, vec![])
    });
    assert!(!acquires(&d), "{}", d.reason);
    assert_eq!(
        d.reason,
        Reason::NotEligible(election::Ineligible::PromotionVetoed)
    );
}

/// A leader whose fence is stuck starts its clean demotion, and loses its term meanwhile (the
/// store expired the key: another member led). Later it wins a new term: the release it had
/// planned for the old one must not end the new one.
#[test]
fn a_release_planned_in_one_term_does_not_end_the_next() {
    let (mut n1, view) = established_leader();
    let margin = ClusterConfig::default().safety_margin_ms;
    let armed = 8_750;
    let d = n1.step(&Observation {
        fence_stuck_at: Some(Millis(armed)),
        ..obs(armed - margin, primary(1, 1300), &view, vec![])
    });
    assert!(has(&d, |a| *a
        == Action::Demote {
            mode: StopMode::Fast,
            fencing: false
        }));
    let other =
        View::led_by("n2", 8, &primary(2, 1400)).with("n1", record(&standby(1, 1300, None), None));
    // it follows n2 (its demotion done, streaming)
    let d = n1.step(&obs(
        8_000,
        standby(2, 1400, Some("n2")),
        &other,
        vec![job_done(JobKind::Demote)],
    ));
    assert_eq!(d.reason, Reason::Streaming { leader: name("n2") });
    // n1 wins term 9, its fence writable again; it must promote, not let go
    let mine = View::new()
        .leader("n1", 9)
        .with("n1", record(&standby(2, 1400, Some("n2")), Some("n1")));
    let d = n1.step(&obs(
        40_000,
        standby(2, 1400, None),
        &mine,
        vec![acquired(40_000, 9)],
    ));
    assert!(
        !has(&d, |a| matches!(a, Action::ReleaseLeader { .. })),
        "{}",
        d.reason
    );
    assert_eq!(d.actions.last(), Some(&Action::Promote), "{}", d.reason);
}

/// Issue 9 (connection slots exhausted on the leader): a primary that answers "too many
/// clients" is alive and busy; its leader keeps the lease however long that lasts.
#[test]
fn a_primary_refusing_connections_for_want_of_slots_keeps_its_lease() {
    let (mut n1, view) = established_leader();
    let busy = LocalPg {
        refusing_connections: true,
        ..unresponsive(primary(1, 1000))
    };
    let mut now = 1000;
    while now < 60_000 {
        let renewed = renewed(now);
        let d = n1.step(&obs(now, busy.clone(), &view, vec![renewed]));
        assert!(
            !has(&d, |a| matches!(
                a,
                Action::Demote { .. } | Action::ReleaseLeader { .. } | Action::StartPostgres(_)
            )),
            "at {now} ms: {:?}",
            d.reason
        );
        now += 1000;
    }
}

#[test]
fn an_unresponsive_standby_neither_restarts_nor_runs_for_leader() {
    let mut n2 = member("n2");
    let view = View::new().with("n2", record(&standby(1, 900, None), None));
    let silent = unresponsive(stopped(standby(1, 900, None)));
    for now in [0, 20_000, 40_000] {
        let d = n2.step(&obs(now, silent.clone(), &view, vec![]));
        assert_reason!(d, Reason::PostgresUnresponsive { .. });
        assert!(!has(&d, |a| matches!(
            a,
            Action::StartPostgres(_) | Action::AcquireLeader { .. } | Action::Follow { .. }
        )));
    }
}

/// Issue 9, item 6: the slot of a member whose key expired (its host rebooting for longer than
/// a ttl) is kept for `member_slots_ttl_ms`, so it resumes from its WAL instead of rewinding.
#[test]
fn the_leader_keeps_an_absent_members_slot_for_member_slots_ttl() {
    let (mut n1, view) = established_leader();
    let with_slot = LocalPg {
        slots: vec![name("n2")],
        ..primary(1, 1000)
    };
    let ttl = ClusterConfig::default().member_slots_ttl_ms;
    let mut now = 1000;
    while now < 1000 + ttl {
        let d = n1.step(&obs(now, with_slot.clone(), &view, vec![renewed(now)]));
        assert!(
            !has(&d, |a| matches!(a, Action::DropSlots { .. })),
            "dropped at {now} ms"
        );
        now += 60_000;
    }
    let d = n1.step(&obs(
        1000 + ttl,
        with_slot,
        &view,
        vec![renewed(1000 + ttl)],
    ));
    assert!(has(&d, |a| *a
        == Action::DropSlots {
            names: vec![name("n2")]
        }));
}

/// Found by `faults::leader_disk_stalled`: a primary whose disk stalls still answers the
/// agent's probes (they read), so the leader kept its lease while every commit waited for as
/// long as the disk did. WAL that waits at the same flush position for a loop is a stalled
/// disk: the leader says so, keeps its lease up to `primary_start_timeout_ms` (a short stall
/// passes), then demotes and lets the lease run out, as for an unresponsive primary.
#[test]
fn a_primary_whose_wal_stops_reaching_its_disk_is_demoted_after_the_timeout() {
    let (mut n1, view) = established_leader();
    let stalled = LocalPg {
        wal_waiting_at: Some(Lsn(900)),
        ..primary(1, 1000)
    };
    let config = ClusterConfig::default();
    let demotes = |d: &Decision| has(d, |a| matches!(a, Action::Demote { .. }));
    // WAL waiting that gets flushed (another position each loop) is only a busy disk.
    for (t, flushed) in [(500, 600), (1500, 700), (2500, 800)] {
        let busy = LocalPg {
            wal_waiting_at: Some(Lsn(flushed)),
            ..primary(1, 1000)
        };
        let d = n1.step(&obs(t, busy, &view, vec![renewed(t)]));
        assert!(matches!(d.reason, Reason::Leading { .. }), "{:?}", d.reason);
    }
    let mut t = 3000;
    let d = n1.step(&obs(t, stalled.clone(), &view, vec![renewed(t)]));
    assert!(matches!(d.reason, Reason::Leading { .. }), "{:?}", d.reason);
    // Stuck for a loop: stalled, and the clock towards the demotion runs.
    t += config.loop_wait_ms;
    let d = n1.step(&obs(t, stalled.clone(), &view, vec![renewed(t)]));
    assert!(
        matches!(
            d.reason,
            Reason::WalFlushStalled {
                flushed: Lsn(900),
                ..
            }
        ),
        "{:?}",
        d.reason
    );
    assert!(
        d.reason.to_string().contains("disk stalled?"),
        "{}",
        d.reason
    );
    let stalled_at = t;
    while t < stalled_at + config.primary_start_timeout_ms {
        t += 500;
        let d = n1.step(&obs(t, stalled.clone(), &view, vec![renewed(t)]));
        if t <= stalled_at + config.primary_start_timeout_ms {
            assert!(!demotes(&d), "demoted after {} ms of stall", t - stalled_at);
        }
    }
    t += 500;
    let d = n1.step(&obs(t, stalled, &view, vec![renewed(t)]));
    assert!(demotes(&d), "{:?}: {:?}", d.reason, d.actions);
    assert_eq!(
        d.reason,
        Reason::PrimaryUnresponsiveDemoting {
            for_ms: t - stalled_at
        }
    );
}

/// A former primary streaming from the new leader drops the slots it made while it led:
/// nobody streams from a standby, so they would hold its WAL until its disk is full.
#[test]
fn a_streaming_standby_drops_the_slots_it_made_as_leader() {
    let mut n1 = member("n1");
    let view = View::led_by("n2", 9, &primary(2, 2000));
    let demoted = LocalPg {
        slots: vec![name("n2"), name("n3")],
        ..standby(2, 2000, Some("n2"))
    };
    let d = n1.step(&obs(0, demoted.clone(), &view, vec![]));
    assert!(
        has(&d, |a| *a
            == Action::DropSlots {
                names: vec![name("n2"), name("n3")]
            }),
        "{:?}",
        d.actions
    );
    // Not yet streaming (it may still rewind or be promoted): nothing is dropped.
    let not_streaming = LocalPg {
        streaming: false,
        ..demoted
    };
    let d = member("n1").step(&obs(0, not_streaming, &view, vec![]));
    assert!(!has(&d, |a| matches!(a, Action::DropSlots { .. })));
}

/// Issue 9, item 8: an agent restarted after the primary vanished has no memory of its
/// position; the `position` key the leader kept writing still rules out a lagging standby.
#[test]
fn a_restarted_agent_checks_the_lag_against_the_stored_leader_position() {
    let (behind, peer) = (standby(1, 100, None), standby(1, 50, None));
    let mut view = leaderless(&behind, &peer, None);
    view.0.leader_position = Some(LeaderPosition {
        leader: name("n1"),
        timeline: Timeline(1),
        lsn: Lsn(10 << 30),
        term: None,
        unfenced: false,
    });
    let d = member("n3").step(&obs(100, behind.clone(), &view, vec![]));
    assert!(
        matches!(
            d.reason,
            Reason::NotEligible(election::Ineligible::Lagging { .. })
        ),
        "{:?}",
        d.reason
    );
    assert!(!acquires(&d));
    // Without the stored position the same member would run.
    view.0.leader_position = None;
    let d = member("n3").step(&obs(100, behind, &view, vec![]));
    assert!(
        !matches!(d.reason, Reason::NotEligible(_)),
        "{:?}",
        d.reason
    );
}

#[test]
fn the_leader_keeps_the_position_key_current() {
    let (mut n1, view) = established_leader();
    let d = n1.step(&obs(1000, primary(1, 5000), &view, vec![]));
    assert!(has(&d, |a| matches!(
        a,
        Action::PublishPosition {
            position: LeaderPosition {
                lsn: Lsn(5000),
                term: Some(7),
                ..
            },
            leader_revision: 7
        }
    )));
    // Not more than once per loop.
    let d = n1.step(&obs(1200, primary(1, 6000), &view, vec![]));
    assert!(!has(&d, |a| matches!(a, Action::PublishPosition { .. })));
}

fn failsafe_list(leader: &str, members: &[&str]) -> FailsafeList {
    FailsafeList {
        leader: name(leader),
        members: members.iter().map(|m| name(m)).collect(),
    }
}

/// Issue 9, item 3: the leader publishes whom it would ask in a store outage.
#[test]
fn the_leader_publishes_its_failsafe_list() {
    let (mut n1, view) = established_leader();
    let view = view.with("n2", record(&standby(1, 900, Some("n1")), Some("n1")));
    let d = n1.step(&obs(1000, primary(1, 1000), &view, vec![]));
    assert!(
        has(&d, |a| *a
            == Action::PublishFailsafe {
                list: failsafe_list("n1", &["n1", "n2"]),
                leader_revision: 7
            }),
        "{:?}",
        d.actions
    );
    let mut listed = view.clone();
    listed.0.failsafe = Some(failsafe_list("n1", &["n1", "n2"]));
    listed.0.failsafe_revision = 3; // written since it was sent
    let d = n1.step(&obs(2000, primary(1, 1000), &listed, vec![]));
    assert!(!has(&d, |a| matches!(a, Action::PublishFailsafe { .. })));
}

/// Issue 9, item 3: a member the old leader did not list (it was stopped, or is new) does not
/// run for leader while the listed members could still be confirming the old leader over REST;
/// it runs once one of them has been reading the store for a ttl (so refusing confirmations).
#[test]
fn a_member_outside_the_failsafe_list_waits_until_no_confirmation_can_be_in_force() {
    let (a, b) = (standby(1, 5000, None), standby(1, 4000, None));
    let ttl = ClusterConfig::default().ttl_ms;
    // n1 led with n1 and n3 listed; n3 is cut off with n1 (not in the store), n2 was absent.
    let mut view = View::new().with("n2", record(&a, None));
    view.0.failsafe = Some(failsafe_list("n1", &["n1", "n3"]));
    let mut n2 = member("n2");
    for now in [0, ttl, 3 * ttl] {
        let d = n2.step(&obs(now, a.clone(), &view, vec![]));
        assert_eq!(d.reason, Reason::OutsideFailsafeList { leader: name("n1") });
        assert!(!acquires(&d));
    }
    // n3 reaches the store again: after a ttl no promise of n3 can keep n1 writing.
    let with_n3 = view.clone().with("n3", record(&b, None));
    let start = 3 * ttl + 1000;
    let d = n2.step(&obs(start, a.clone(), &with_n3, vec![]));
    assert_eq!(d.reason, Reason::OutsideFailsafeList { leader: name("n1") });
    // Watched continuously (a step every loop), for a ttl.
    for now in (start + 1_000..start + ttl).step_by(1_000) {
        let d = n2.step(&obs(now, a.clone(), &with_n3, vec![]));
        assert_eq!(d.reason, Reason::OutsideFailsafeList { leader: name("n1") });
    }
    let d = n2.step(&obs(start + ttl, a.clone(), &with_n3, vec![]));
    assert!(acquires(&d), "{:?}", d.reason);
    // A list naming only its leader cannot hold anyone back (nobody could confirm it).
    let mut alone = View::new().with("n2", record(&a, None));
    alone.0.failsafe = Some(failsafe_list("n1", &["n1"]));
    let d = member("n2").step(&obs(0, a, &alone, vec![]));
    assert!(acquires(&d));
}

/// Found by the simulation (seed 728 with a live ttl change, a slow store and a paused
/// agent): a renewal with a shorter TTL can take effect in the store before its answer comes
/// back, so from the moment it is sent the leader trusts (and its supervisor fences) by the
/// shorter lease, and an older answer arriving late cannot lift that again.
#[test]
fn lowering_the_ttl_shortens_trust_as_soon_as_the_renewal_is_sent() {
    let (mut n1, view) = established_leader();
    assert_eq!(n1.lease_deadline(), Some(Millis(7_500)));
    let lowered = view.ttl(6_000, 1_500);
    let d = n1.step(&obs(1000, primary(1, 1100), &lowered, vec![]));
    assert!(has(&d, |a| matches!(
        a,
        Action::RenewLeader { ttl, .. } if *ttl == Ttl::from_millis(6_000)
    )));
    // The store may expire the lease at 1000 + 6000 = 7000 if it applied that renewal.
    assert!(n1.lease_deadline().unwrap() <= Millis(7_000 - 1_500));
    assert!(n1.fence_deadline().unwrap() < Millis(7_000));
    // An older renewal's answer (sent at 500, the old 10 s lease) arrives late.
    let late = renewed_for(500, 10_000);
    n1.step(&obs(1100, primary(1, 1100), &lowered, vec![late]));
    assert!(
        n1.fence_deadline().unwrap() < Millis(7_000),
        "{:?}",
        n1.fence_deadline()
    );
    // The shorter renewal's own answer restarts trust from its send time.
    let own = renewed_for(1000, 6_000);
    n1.step(&obs(1200, primary(1, 1100), &lowered, vec![own]));
    assert_eq!(n1.lease_deadline(), Some(Millis(1000 + 6_000 - 1_500)));
}

/// `me` (`behind`) and n3 (`ahead`, its record naming `n3_leader` as the leader it saw) in a
/// leaderless view: at 0 `me` does not run for leader yet, waiting for n3's fresh position.
fn behind_a_stale_record(
    me: &str,
    behind: &LocalPg,
    ahead: &LocalPg,
    n3_leader: &str,
) -> (Member, View) {
    let view = View::new()
        .with(me, record(behind, None))
        .with("n3", record(ahead, Some(n3_leader)));
    let mut m = member(me);
    assert_still_waits_for_n3(&m.step(&obs(0, behind.clone(), &view, vec![])));
    (m, view)
}

fn assert_still_waits_for_n3(d: &Decision) {
    assert!(
        !acquires(d),
        "acquired without waiting for n3: {:?}",
        d.reason
    );
}

/// The established leader n1, its PostgreSQL found stopped (crashed) right after a renewal:
/// the step that starts it again as the primary, and what n1 observed.
fn leader_restarting_its_crashed_primary() -> (Member, View, LocalPg, Decision) {
    let (mut n1, view) = established_leader();
    let down = stopped(primary(1, 1000));
    let d = n1.step(&obs(1000, down.clone(), &view, vec![renewed(1000)]));
    (n1, view, down, d)
}

/// Found by the simulation (seed 3608): a leader restarting its crashed PostgreSQL as a
/// primary when its lease lapses counts the start in flight as writable. It demotes (which
/// cancels the start) and keeps the key until that is done, instead of releasing the key while
/// a primary may still come up writable with no lease (two writers once another promotes).
#[test]
fn a_primary_start_in_flight_when_the_lease_lapses_is_demoted_before_the_key_goes() {
    let (mut n1, view, down, d) = leader_restarting_its_crashed_primary();
    assert!(
        has(&d, |a| *a == Action::StartPostgres(StartRole::Primary)),
        "{:?}",
        d.actions
    );
    assert!(n1.job_may_make_writable());
    // No renewal is answered any more: the lease lapses on n1's clock while the start runs.
    let lapsed = n1.lease_deadline().unwrap().0;
    let d = n1.step(&obs(lapsed, down.clone(), &view, vec![]));
    assert!(
        has(&d, |a| *a
            == Action::Demote {
                mode: StopMode::Fast,
                fencing: true
            }),
        "{:?}: {:?}",
        d.reason,
        d.actions
    );
    let releases = |d: &Decision| has(d, |a| matches!(a, Action::ReleaseLeader { .. }));
    assert!(!releases(&d));
    let d = n1.step(&obs(lapsed + 100, down.clone(), &view, vec![]));
    assert!(!releases(&d), "released while demoting: {:?}", d.reason);
    // Once the demotion is done (PostgreSQL stopped, a standby from now on), the key goes.
    let demoted = job_done(JobKind::Demote);
    let standby_down = stopped(standby(1, 1000, None));
    let d = n1.step(&obs(lapsed + 200, standby_down, &view, vec![demoted]));
    assert!(releases(&d), "{:?}: {:?}", d.reason, d.actions);
}

/// A pg_rewind of n2's data directory began and did not finish (the agent was killed
/// meanwhile; the restarted agent finds the marker): its files may mix two histories, and its
/// position means nothing. With a leader it re-clones, moving the directory aside (or stays
/// stopped when re-cloning is not allowed); it never starts that directory.
#[test]
fn an_incomplete_rewind_is_recloned_moved_aside_and_never_started() {
    let leader_pg = primary(2, 9_000);
    let mine = LocalPg {
        rewind_incomplete: true,
        ..stopped(standby(1, 8_000, None))
    };
    let view = View::led_by("n1", 7, &leader_pg);
    let d = member("n2").step(&obs(1_000, mine.clone(), &view, vec![]));
    assert!(
        has(&d, |a| *a
            == Action::Reclone {
                from: name("n1"),
                move_aside: true
            }),
        "{:?}: {:?}",
        d.reason,
        d.actions
    );
    let no_reclone = view.config(|c| c.allow_reclone = false);
    let d = member("n2").step(&obs(1_000, mine, &no_reclone, vec![]));
    assert_reason!(d, Reason::RewindFailedRecloneDisabled);
    assert!(
        d.actions.iter().all(|a| a.job().is_none()),
        "{:?}",
        d.actions
    );
}

/// The same directory without a leader: it is not started to compare positions (its position
/// means nothing), and it does not run for leader; it waits for a leader to re-clone from.
#[test]
fn without_a_leader_an_incomplete_rewind_neither_starts_nor_runs() {
    let mine = LocalPg {
        rewind_incomplete: true,
        ..stopped(standby(1, 8_000, None))
    };
    let other = standby(1, 7_000, None);
    let view = View::new()
        .with("n2", record(&mine, None))
        .with("n3", record(&other, None));
    let mut n2 = member("n2");
    for now in [1_000, 40_000] {
        let d = n2.step(&obs(now, mine.clone(), &view, vec![]));
        assert_reason!(d, Reason::RewindIncompleteWaitingForLeader);
        assert!(!acquires(&d), "{:?}", d.actions);
        assert!(
            d.actions.iter().all(|a| a.job().is_none()),
            "{:?}",
            d.actions
        );
    }
}

/// The same lapse with the store unreachable, as `faults::primary_restart_in_flight_when_the_lease_lapses`
/// injects it: while the demotion runs, each step says that it runs, not that PostgreSQL was
/// found writable without the lease (it was not: it never came up).
#[test]
fn a_demotion_running_with_the_store_down_is_reported_as_running() {
    let (mut n1, _view, down, _) = leader_restarting_its_crashed_primary();
    let lapsed = n1.lease_deadline().unwrap().0;
    let d = n1.step(&store_down(lapsed, down.clone()));
    assert!(
        has(&d, |a| matches!(a, Action::Demote { .. })),
        "{:?}: {:?}",
        d.reason,
        d.actions
    );
    let d = n1.step(&store_down(lapsed + 500, down));
    assert!(
        matches!(&d.reason, Reason::JobRunning { job, for_ms: 500 } if job.kind() == JobKind::Demote),
        "{:?}",
        d.reason
    );
    assert!(d.actions.is_empty(), "{:?}", d.actions);
}

/// Found by the simulation (seed 16744): a switchover to n3 was requested, and its leader n1
/// lost its lease before it could check the request. n3, tagged `nofailover`, took over for it
/// anyway; as the leader that published the synchronous set it later stood ahead of the set,
/// unpromotable, and no member could ever lead again. The target must still be one that may be
/// promoted; otherwise the election decides, without waiting for it.
#[test]
fn a_switchover_target_that_may_not_be_promoted_leaves_it_to_the_election() {
    let n1_pg = standby(1, 5_000, None);
    let (n2_pg, n3_pg) = (standby(1, 5_000, None), standby(1, 5_000, None));
    let nofailover = Tags {
        nofailover: true,
        ..Tags::default()
    };
    let n3_record = MemberRecord {
        tags: nofailover.clone(),
        ..record(&n3_pg, None)
    };
    let view = View::new()
        .with("n1", record(&n1_pg, None))
        .with("n2", record(&n2_pg, None))
        .with("n3", n3_record)
        .switchover("n1", Some("n3"), 40);
    let d = member_with("n3", nofailover).step(&obs(0, n3_pg, &view, vec![]));
    assert!(
        !acquires(&d),
        "n3 took over for the switchover: {:?}",
        d.reason
    );
    let mut n2 = member("n2");
    let d = n2.step(&obs(0, n2_pg, &view, vec![]));
    assert!(
        !matches!(d.reason, Reason::WaitingForSwitchoverTarget { .. }),
        "{:?}",
        d.reason
    );
}

/// Found by the 50,000-seed run with vetoes (seed 11606), after the fix above: a void
/// switchover must not drop its old leader from the election either. n2 led for a moment and
/// its `pre_promote` vetoed while a switchover from it to the dead n1 was pending; n3, behind
/// n2, ran as if n2 were not there and lost the commit n2 had acknowledged.
#[test]
fn a_void_switchover_leaves_its_old_leader_in_the_election() {
    let (ahead, behind) = (standby(1, 5000, None), standby(1, 4000, None));
    let vetoed = vetoed_record(&ahead);
    let view = View::new()
        .with("n2", vetoed)
        .with("n3", record(&behind, None))
        .sync_set("n1", &["n2", "n3"])
        .switchover("n2", Some("n1"), 50);
    let d = member("n3").step(&obs(0, behind, &view, vec![]));
    assert!(!acquires(&d), "n3 took over: {:?}", d.reason);
    assert!(
        matches!(&d.reason, Reason::IneligibleAhead { member, .. } if member == &name("n2")),
        "{:?}",
        d.reason
    );
}

/// Found by the simulation (seed 7758): a member cut off from the store for longer than a ttl
/// while leaderless must not count that time as waiting for the others' fresh positions; back
/// on the store it waits for them, and does not outrun a more advanced standby.
#[test]
fn time_cut_off_from_the_store_does_not_count_as_waiting_for_positions() {
    let (behind, ahead) = (standby(1, 5_000, None), standby(2, 9_000, None));
    // n3's record predates the leader's disappearance (it still names n2 as leader).
    let (mut n1, view) = behind_a_stale_record("n1", &behind, &ahead, "n2");
    // Cut off from the store for 20 s.
    for now in (1_000..21_000).step_by(1_000) {
        n1.step(&store_down(now, behind.clone()));
    }
    let d = n1.step(&obs(21_000, behind, &view, vec![]));
    assert_still_waits_for_n3(&d);
}

/// Found by the simulation (seed 8865): an agent paused while leaderless must not count the
/// pause as time spent waiting for the others' fresh positions.
#[test]
fn a_pause_does_not_count_as_waiting_for_positions() {
    let (behind, ahead) = (standby(2, 5_000, None), standby(2, 9_000, None));
    let (mut n2, view) = behind_a_stale_record("n2", &behind, &ahead, "n1");
    // Paused (SIGSTOP) for 15 s, then it steps again on the same view.
    let d = n2.step(&obs(15_000, behind, &view, vec![]));
    assert_still_waits_for_n3(&d);
}

/// Found by the simulation (seed 14064, slow store): a renewal sent before the answer to the
/// acquisition came back (adopting the key) caps the trust that answer brings.
#[test]
fn a_renewal_sent_before_the_acquisition_answer_caps_its_trust() {
    let mut n1 = member("n1");
    let view = View::led_by("n1", 7, &primary(1, 1000)).ttl(6_000, 1_500);
    // The key names n1, but no answer has come back yet: adopting, it renews (ttl 6 s).
    let d = n1.step(&obs(1_000, primary(1, 1000), &view, vec![]));
    assert!(has(&d, |a| matches!(
        a,
        Action::RenewLeader { ttl, .. } if *ttl == Ttl::from_millis(6_000)
    )));
    // Then the answer of an acquisition sent at 500 with the old 10 s ttl arrives.
    let acquired = Outcome::LeaderAcquired {
        requested_at: Millis(500),
        revision: 7,
        ttl: Ttl::from_millis(10_000),
    };
    n1.step(&obs(1_100, primary(1, 1000), &view, vec![acquired]));
    assert!(
        n1.fence_deadline().unwrap() < Millis(1_000 + 6_000),
        "{:?}",
        n1.fence_deadline()
    );
}

/// Found by the simulation (seed 2805 of the run with vetoes): n3 published its position with
/// no leader in an earlier vacancy, was then cut off from the store while it kept streaming
/// from the next leader (term 79), and a store outage kept its key alive. When term 79 ends,
/// that record's position is old although it saw no leader: n2 waits for n3 to publish again
/// instead of winning over a member that is in fact ahead of it.
#[test]
fn a_position_from_an_earlier_vacancy_is_not_current() {
    let n2_pg = standby(2, 9_000, Some("n1"));
    // n3's record from the vacancy before term 79: no leader seen, term 40 the newest it knew.
    let n3_old = MemberRecord {
        term_seen: Some(40),
        ..record(&standby(1, 5_000, None), None)
    };
    let led = View::led_by("n1", 79, &primary(2, 9_000))
        .with("n2", record(&n2_pg, Some("n1")))
        .with("n3", n3_old.clone());
    let mut n2 = member("n2");
    n2.step(&obs(0, n2_pg.clone(), &led, vec![]));
    let vacancy = View::new()
        .with("n2", record(&n2_pg, Some("n1")))
        .with("n3", n3_old);
    let d = n2.step(&obs(1_000, stopped_upstream(&n2_pg), &vacancy, vec![]));
    assert!(!acquires(&d), "won over n3's old position: {:?}", d.reason);
    assert!(
        matches!(&d.reason, Reason::WaitingForPositions { unconfirmed } if unconfirmed == &[name("n3")]),
        "{:?}",
        d.reason
    );
    // n3 publishes what it has now, read in this vacancy: it is ahead, and n2 defers to it.
    let n3_now = MemberRecord {
        term_seen: Some(79),
        ..record(&standby(2, 9_500, None), None)
    };
    let vacancy = vacancy.with("n3", n3_now);
    let d = n2.step(&obs(1_500, stopped_upstream(&n2_pg), &vacancy, vec![]));
    assert!(
        matches!(&d.reason, Reason::Behind { best } if best == &name("n3")),
        "{:?}",
        d.reason
    );
}

/// The same standby once its upstream is gone: not streaming.
fn stopped_upstream(pg: &LocalPg) -> LocalPg {
    LocalPg {
        streaming: false,
        ..pg.clone()
    }
}

/// Found by the simulation (seed 27061): once a member gives up waiting for another's fresh
/// position, that member's stale record still counts: WAL only grows, so a member known to be
/// ahead (here on a newer timeline) is never outrun by one far behind.
#[test]
fn a_stale_record_of_a_member_ahead_still_counts_after_giving_up_waiting() {
    let (behind, ahead) = (standby(2, 2_000, None), standby(3, 9_000, None));
    let (mut n2, view) = behind_a_stale_record("n2", &behind, &ahead, "n1");
    let ttl = ClusterConfig::default().ttl_ms;
    let mut now = 500;
    while now <= ttl + 2_000 {
        let d = n2.step(&obs(now, behind.clone(), &view, vec![]));
        assert!(!acquires(&d), "at {now} ms: {:?}", d.reason);
        now += 500;
    }
}

/// Found by the simulation (seed 944: ttl lowered live, then the store gone for everyone):
/// the confirming members promise for the ttl they saw, which may be shorter than the one this
/// leader still knows; it trusts the shortest promise, not its own ttl.
#[test]
fn failsafe_trust_ends_with_the_shortest_promise() {
    let (mut n1, _view) = established_leader();
    let confirmed = Outcome::FailsafeConfirmed {
        requested_at: Millis(6000),
        promised_ms: 6_000,
    };
    let mut down = store_down(6100, primary(1, 1200));
    down.outcomes = vec![confirmed];
    n1.step(&down);
    // The default margin (2.5 s) off the 6 s promise, not off the 10 s ttl.
    assert_eq!(n1.lease_deadline(), Some(Millis(6000 + 6_000 - 2_500)));
    assert!(n1.fence_deadline().unwrap() < Millis(6000 + 6_000));
}

/// Found by the simulation (seed 17054): a leader kept by failsafe promises renews the store's
/// lease in the very step it reads the store again, not up to half a loop later, while its
/// lease may be about to expire there.
#[test]
fn a_leader_back_from_a_store_outage_renews_at_once() {
    let (mut n1, view) = established_leader();
    let d = n1.step(&store_down(1_000, primary(1, 1100)));
    assert!(has(&d, |a| matches!(a, Action::RenewLeader { .. })));
    let d = n1.step(&obs(1_050, primary(1, 1100), &view, vec![]));
    assert!(
        has(&d, |a| matches!(a, Action::RenewLeader { revision: 7, .. })),
        "{:?}",
        d.actions
    );
}

/// Found by the simulation (seed 22959): the old leader died instead of handing over, and its
/// record still shows a position from before its last writes. The switchover target does not
/// take the lease over a standby known to be further ahead; the election decides.
#[test]
fn a_switchover_target_behind_another_standby_leaves_it_to_the_election() {
    let after = View::new()
        .with("n1", record(&standby(1, 1200, None), None))
        .with("n2", record(&standby(1, 1500, None), None))
        .with("n3", record(&standby(1, 1900, None), None))
        .switchover("n1", Some("n2"), 30);
    let d = member("n2").step(&obs(800, standby(1, 1500, None), &after, vec![]));
    assert!(!acquires(&d), "{:?}", d.reason);
}

/// Seen in the entry-point test: a planned switchover was refused because the target's
/// published position lagged by a WAL segment right after a clone. A switchover hands over
/// only once the target replayed the old leader's final position, so lag is no reason to
/// refuse it; a failover without --force still is.
#[test]
fn a_planned_switchover_is_not_refused_for_lag_but_a_failover_is() {
    let view = View::led_by("n1", 7, &primary(1, 20 << 20))
        .with("n2", record(&standby(1, 1 << 20, Some("n1")), Some("n1")));
    let switchover = SwitchoverRequest {
        from: Some(name("n1")),
        to: Some(name("n2")),
        kind: RequestKind::Switchover,
        at: None,
    };
    assert_eq!(
        switchover::check(&view.0, Lsn(20 << 20), &switchover),
        Ok(name("n2"))
    );
    let failover = SwitchoverRequest {
        kind: RequestKind::Failover {
            force: false,
            allow_data_loss: false,
        },
        ..switchover
    };
    assert!(switchover::check(&view.0, Lsn(20 << 20), &failover).is_err());

    // Without a leader there is nobody to hand over from: only a failover promotes.
    let mut leaderless = view.clone();
    leaderless.0.leader = None;
    let planned = SwitchoverRequest {
        from: None,
        to: Some(name("n2")),
        kind: RequestKind::Switchover,
        at: None,
    };
    let refused = switchover::check(&leaderless.0, Lsn(0), &planned).unwrap_err();
    assert_eq!(
        refused,
        switchover::Refusal::SwitchoverWithoutLeader(name("n2"))
    );
    assert!(refused.to_string().contains("pgha failover --to n2"));
}

/// Found by the simulation (seed 29247): a member outside the failsafe list counts how long a
/// listed member has been visible only over time it watched the store itself; time cut off
/// from the store does not count, or it could run while the old leader writes on promises.
#[test]
fn outside_the_failsafe_list_visibility_counts_only_while_watching() {
    let a = standby(1, 5000, None);
    let mut view = View::new()
        .with("n2", record(&a, None))
        .with("n3", record(&standby(1, 4000, None), None));
    view.0.failsafe = Some(failsafe_list("n1", &["n1", "n3"]));
    let ttl = ClusterConfig::default().ttl_ms;
    let mut n2 = member("n2");
    n2.step(&obs(0, a.clone(), &view, vec![]));
    // Cut off from the store for two ttls (n3 may have confirmed n1 meanwhile).
    for now in (1_000..2 * ttl).step_by(1_000) {
        n2.step(&store_down(now, a.clone()));
    }
    let d = n2.step(&obs(2 * ttl, a.clone(), &view, vec![]));
    assert_eq!(d.reason, Reason::OutsideFailsafeList { leader: name("n1") });
    let d = n2.step(&obs(2 * ttl + 1_000, a, &view, vec![]));
    assert_eq!(d.reason, Reason::OutsideFailsafeList { leader: name("n1") });
}

/// I4 across a live change of the synchronous set (found by modelling acknowledgements in the
/// simulation): n2 is tagged `nosync` and PostgreSQL now counts only n3, which lags far
/// behind. Commits acknowledged through n2 before the change are on n2 alone; were n2 taken
/// out of the published set now, a failover would promote n3 and lose them. n2 leaves the set
/// only once n3 has flushed what the primary had written by then.
#[test]
fn a_standby_leaves_the_synchronous_set_only_after_a_remaining_one_caught_up() {
    let mut n1 = member("n1");
    let mut leaving = record(&standby(1, 5000, Some("n1")), None);
    leaving.tags.nosync = true;
    let mut view = View::new()
        .leader("n1", 7)
        .with("n1", record(&primary(1, 5000), None))
        .with("n2", leaving)
        .with("n3", record(&standby(1, 1000, Some("n1")), None))
        .config(|c| c.synchronous_mode = SyncMode::On);
    view.0.sync = SyncSet {
        leader: Some(name("n1")),
        members: [name("n2"), name("n3")].into(),
        count: 1,
        method: SyncMethod::Priority,
    };
    let replica = |n: &str, flush: u64| ReplicaState {
        name: name(n),
        streaming: true,
        flush_lsn: Lsn(flush),
        replay_lsn: Lsn(flush),
    };
    let counting = |names: &[&str]| SyncApplied {
        method: SyncMethod::Priority,
        count: 1,
        names: names.iter().map(|n| name(n)).collect(),
    };
    let at = |lsn: u64, n3_flush: u64, counted: &[&str]| LocalPg {
        replicas: vec![replica("n2", lsn), replica("n3", n3_flush)],
        sync_applied: counting(counted),
        ..primary(1, lsn)
    };
    let pg = |n3_flush: u64| at(5000, n3_flush, &["n3"]);
    let drops_n2 = |d: &Decision| {
        has(
            d,
            |a| matches!(a, Action::PublishSync { set, .. } if !set.members.contains(&name("n2"))),
        )
    };
    let d = n1.step(&obs(0, pg(1000), &view, vec![acquired(0, 7)]));
    assert!(!drops_n2(&d), "n2 left the set while n3 lags: {d:?}");
    for t in [1000, 2000, 5000] {
        let d = n1.step(&obs(t, pg(4999), &view, vec![]));
        assert!(!drops_n2(&d), "n2 left the set while n3 lags: {d:?}");
    }
    let d = n1.step(&obs(6000, pg(5000), &view, vec![]));
    assert!(drops_n2(&d), "n3 caught up: n2 may leave the set: {d:?}");

    // Found by the long simulation campaign (seed 16733): a removal abandoned half-way (here
    // PostgreSQL counts n2 again) left its mark behind, and the next removal, much later,
    // trusted that old position: n2 left at once although n3 lagged.
    let mut n1 = member("n1");
    n1.step(&obs(0, pg(1000), &view, vec![acquired(0, 7)]));
    n1.step(&obs(1000, pg(1000), &view, vec![]));
    n1.step(&obs(2000, at(6000, 1000, &["n2", "n3"]), &view, vec![]));
    for t in [3000, 4000, 5000] {
        let d = n1.step(&obs(t, at(9000, 5000, &["n3"]), &view, vec![]));
        assert!(!drops_n2(&d), "n2 left the set on a stale mark: {d:?}");
    }
    let d = n1.step(&obs(6000, at(9000, 9000, &["n3"]), &view, vec![]));
    assert!(drops_n2(&d), "{d:?}");
}

/// Found by the simulation (seed 2, once it checked that the store's set covers what the
/// primary's PostgreSQL counts): n2 still carries `synchronous_standby_names` from its own
/// earlier term, counting n1, which is outside the published set. Promoted as it is, it would
/// acknowledge commits that only n1 confirmed, and the next failover, choosing inside the set,
/// could lose them. Before promoting it keeps only listed members of the set; strict mode
/// with none left waits on a placeholder.
#[test]
fn a_winner_drops_standbys_outside_the_published_set_before_promoting() {
    for mode in [SyncMode::On, SyncMode::Strict] {
        let mut n2 = member("n2");
        let stale = SyncApplied {
            method: SyncMethod::Priority,
            count: 1,
            names: vec![name("n1"), name("n3")],
        };
        let local = LocalPg {
            sync_applied: stale.clone(),
            ..standby(1, 5000, None)
        };
        let mut mine = View::new()
            .leader("n2", 11)
            .with("n2", record(&local, Some("n2")))
            .config(|c| c.synchronous_mode = mode);
        mine.0.sync = SyncSet {
            leader: Some(name("n1")),
            members: [name("n2"), name("n3")].into(),
            count: 1,
            method: SyncMethod::Priority,
        };
        let d = n2.step(&obs(200, local.clone(), &mine, vec![acquired(100, 11)]));
        assert_eq!(d.actions.last(), Some(&Action::Promote), "{mode:?}: {d:?}");
        let set = d.actions.iter().find_map(|a| match a {
            Action::SetSync(applied) => Some(applied.clone()),
            _ => None,
        });
        assert_eq!(
            set.map(|s| s.names),
            Some(vec![name("n3")]),
            "{mode:?}: n1 must not be counted: {d:?}"
        );

        // Nothing of the stale list in the set: `on` starts asynchronous, strict waits.
        let mut n2 = member("n2");
        mine.0.sync.members = [name("n2")].into();
        let d = n2.step(&obs(200, local.clone(), &mine, vec![acquired(100, 11)]));
        let set = d.actions.iter().find_map(|a| match a {
            Action::SetSync(applied) => Some(applied.clone()),
            _ => None,
        });
        let set = set.expect("the stale list is replaced before promoting");
        match mode {
            SyncMode::On => assert!(set.is_async(), "{d:?}"),
            _ => assert_eq!(set.names, vec![name(sync::NO_STANDBY)], "{d:?}"),
        }
    }
}

/// `pgha config set synchronous_mode=on` waits for what the leader publishes as in force
/// (`sync_in_force`): only once PostgreSQL counts the standbys the settings call for, the
/// store publishes the same set and `synchronous_commit` was reloaded; never in between, and
/// never while the commit level the settings ask for is not the one applied.
#[test]
fn the_leader_publishes_the_synchronous_settings_in_force_only_once_they_are() {
    for commit_applied in [Some(CommitLevel::On), Some(CommitLevel::Local), None] {
        let mut n1 = member("n1");
        let mut view = View::new()
            .leader("n1", 7)
            .with("n1", record(&primary(1, 5000), None))
            .with("n2", record(&standby(1, 5000, Some("n1")), None))
            .with("n3", record(&standby(1, 5000, Some("n1")), None))
            .config(|c| c.synchronous_mode = SyncMode::On);
        let replica = |n: &str| ReplicaState {
            name: name(n),
            streaming: true,
            flush_lsn: Lsn(5000),
            replay_lsn: Lsn(5000),
        };
        let mut local = LocalPg {
            replicas: vec![replica("n2"), replica("n3")],
            ..primary(1, 5000)
        };
        let mut in_force = Vec::new();
        for step in 0..6u64 {
            let outcomes = match step {
                0 => vec![acquired(0, 7)],
                _ => vec![],
            };
            let mut o = obs(step * 1000, local.clone(), &view, outcomes);
            o.commit_level_applied = commit_applied;
            let d = n1.step(&o);
            let changing = has(&d, |a| {
                matches!(a, Action::PublishSync { .. } | Action::SetSync(_))
            });
            // What the agent does with the actions: the store and PostgreSQL learn them.
            for a in &d.actions {
                match a {
                    Action::PublishSync { set, .. } => view.0.sync = set.clone(),
                    Action::SetSync(applied) => local.sync_applied = applied.clone(),
                    Action::PublishMember(r) => {
                        view.0.members.insert(name("n1"), r.clone());
                    }
                    _ => {}
                }
            }
            let published = view.0.members[&name("n1")].sync_in_force;
            if changing {
                assert_eq!(published, None, "in force while changing: {d:?}");
            }
            in_force.push(published);
        }
        let wanted = pgha_core::sync::SyncInForce::of(&view.0.config);
        let last = in_force.last().copied().flatten();
        match commit_applied {
            Some(CommitLevel::On) => {
                assert_eq!(last, Some(wanted), "{in_force:?}");
                assert!(!local.sync_applied.is_async(), "{local:?}");
            }
            _ => assert_eq!(last, None, "commit level not applied: {in_force:?}"),
        }
        assert!(
            in_force.first().copied().flatten().is_none(),
            "{in_force:?}"
        );
    }
}

/// Asynchronous replication has no synchronous set to publish, not even an empty one naming
/// its leader (it once recorded "synchronous set now []" in every cluster's history).
#[test]
fn an_asynchronous_leader_publishes_no_synchronous_set() {
    let mut n1 = member("n1");
    let view = View::led_by("n1", 7, &primary(1, 1000));
    for (t, outcomes) in [(0, vec![acquired(0, 7)]), (1000, vec![]), (2000, vec![])] {
        let d = n1.step(&obs(t, primary(1, 1000 + t), &view, outcomes));
        assert!(
            !has(&d, |a| matches!(
                a,
                Action::PublishSync { .. } | Action::SetSync(_)
            )),
            "{d:?}"
        );
    }
}

/// Found by `faults::leader_postgres_io_stall` (a stalled primary's agent could not renew in
/// time): a leader whose lease lapsed on its own clock demoted, its PostgreSQL came back as a
/// standby, and since the store had not yet expired the key, it adopted that very key again
/// and promoted the same data, bypassing the election (and, in synchronous modes, the rule
/// that a failed synchronous primary hands over). A term given up is never adopted again: the
/// key is released and the election decides.
#[test]
fn a_leader_never_adopts_again_the_term_its_lease_lapsed_in() {
    let (mut n1, view) = established_leader();
    // No renewal answered: past ttl - margin the lease is gone on n1's own clock.
    let d = n1.step(&obs(7600, primary(1, 1300), &view, vec![]));
    assert_eq!(d.reason, Reason::LeaseExpiredDemoting, "{d:?}");
    // The store still shows n1's key (it expires only at the ttl); the demotion is done and
    // PostgreSQL is a standby now.
    let demoted = job_done(JobKind::Demote);
    for (t, outcomes) in [(8000, vec![demoted]), (8500, vec![]), (9000, vec![])] {
        let d = n1.step(&obs(t, standby(1, 1300, None), &view, outcomes));
        assert!(
            !has(&d, |a| matches!(
                a,
                Action::RenewLeader { .. }
                    | Action::Promote
                    | Action::StartPostgres(StartRole::Primary)
            )),
            "n1 took its lapsed term back: {d:?}"
        );
        assert!(
            has(&d, |a| matches!(a, Action::ReleaseLeader { revision: 7 })),
            "the lapsed key is given up for an election: {d:?}"
        );
    }
    // A renewal answer arriving late for that term changes nothing.
    let late = renewed(7000);
    let d = n1.step(&obs(9100, standby(1, 1300, None), &view, vec![late]));
    assert!(
        !has(&d, |a| matches!(
            a,
            Action::Promote | Action::RenewLeader { .. }
        )),
        "a late renewal revived the lapsed term: {d:?}"
    );
}

/// The leader that published the synchronous set (n1, ahead of n2 by commits whose
/// synchronous wait was cut short) steps aside for the set's members when every one of them is
/// an eligible standby: the best of them holds every acknowledged commit. With a member of the
/// set missing, n1, which has every commit it acknowledged, competes on its position.
#[test]
fn the_sets_old_leader_steps_aside_only_for_a_complete_set() {
    let old_leader = standby(1, 5000, None);
    let member_of_set = standby(1, 4000, None);
    let mut view = View::new()
        .with("n1", record(&old_leader, None))
        .with("n2", record(&member_of_set, None))
        .with("n3", record(&standby(1, 3000, None), None))
        .sync_set("n1", &["n2"]);
    let d1 = member("n1").step(&obs(0, old_leader.clone(), &view, vec![]));
    assert_eq!(d1.reason, Reason::Behind { best: name("n2") }, "{d1:?}");
    let d2 = member("n2").step(&obs(0, member_of_set.clone(), &view, vec![]));
    assert!(acquires(&d2), "{d2:?}");

    // n2 gone: n1 is the only candidate that surely holds every acknowledged commit.
    view.0.members.remove(&name("n2"));
    let d1 = member("n1").step(&obs(0, old_leader, &view, vec![]));
    assert!(acquires(&d1), "{d1:?}");
}

#[test]
fn a_new_cluster_given_the_key_says_so_and_records_where_its_wal_begins() {
    let mut n1 = member("n1");
    // `pgha up` gives the key of a cluster without data to the member that bootstraps it.
    let seeded = View(ClusterView::default()).leader("n1", 1);
    let d = n1.step(&obs(0, LocalPg::default(), &seeded, vec![]));
    assert_eq!(d.reason, Reason::AdoptingLease { new_cluster: true });
    let line = d.reason.to_string();
    assert!(
        line.contains("new cluster") && !line.contains("from before"),
        "{line}"
    );
    let renewal = Outcome::LeaderRenewed {
        requested_at: Millis(0),
        revision: 1,
        ttl: ClusterConfig::default().ttl(),
    };
    let d = n1.step(&obs(10, LocalPg::default(), &seeded, vec![renewal]));
    assert_eq!(d.actions.last(), Some(&Action::Bootstrap));
    let bootstrapped = job_done(JobKind::Bootstrap);
    let d = n1.step(&obs(
        500,
        primary(1, 0x0150_0000),
        &seeded,
        vec![bootstrapped],
    ));
    let event = recorded(&d).unwrap_or_else(|| panic!("no history entry: {:?}", d.actions));
    assert_eq!(event.kind, EventKind::Bootstrap);
    assert_eq!(
        event.lsn,
        Lsn(0x0150_0000),
        "the position after initdb, not 0/0"
    );

    // A member that held the key before (with data) adopts it, and says that.
    let mut n1 = member("n1");
    let view = View::led_by("n1", 7, &primary(1, 1000));
    let d = n1.step(&obs(0, primary(1, 1000), &view, vec![]));
    assert_eq!(d.reason, Reason::AdoptingLease { new_cluster: false });
    assert!(d.reason.to_string().contains("from before"));
}

#[test]
fn a_first_clone_is_a_clone_and_a_reclone_says_it_moves_data_aside() {
    let mut n2 = member("n2");
    let view = View::led_by("n1", 7, &primary(1, 1000));
    let d = n2.step(&obs(0, LocalPg::default(), &view, vec![]));
    assert!(has(&d, |a| matches!(
        a,
        Action::Reclone {
            move_aside: false,
            ..
        }
    )));
    let d = n2.step(&obs(3, LocalPg::default(), &view, vec![]));
    assert_eq!(
        d.reason,
        Reason::JobRunning {
            job: JobWhat::CloneFrom(name("n1")),
            for_ms: 3
        }
    );
    assert_eq!(d.reason.to_string(), "clone from n1 running for 3 ms");
    assert_eq!(n2.running_job_what(), Some(&JobWhat::CloneFrom(name("n1"))));
    let reclone = Action::Reclone {
        from: name("n1"),
        move_aside: true,
    };
    let what = JobWhat::of(&reclone).unwrap();
    assert_eq!(what.kind(), JobKind::Reclone);
    assert_eq!(what.to_string(), "re-clone from n1 (old data moved aside)");
    assert_eq!(
        JobWhat::of(&Action::Bootstrap).unwrap().to_string(),
        "Bootstrap"
    );
}

/// A parameter pgha owns set with `ALTER SYSTEM` (postgresql.auto.conf, read after pgha's own
/// file) is reset, on a leader as on a standby; not while the cluster is paused, nor while
/// PostgreSQL is down.
#[test]
fn a_setting_pgha_owns_changed_by_alter_system_is_reset() {
    let undo = |d: &Decision| {
        d.actions
            .iter()
            .find_map(|a| match a {
                Action::UndoAlterSystem { parameters } => Some(parameters.clone()),
                _ => None,
            })
            .unwrap_or_default()
    };
    let altered = |pg: LocalPg| LocalPg {
        altered_by_alter_system: vec!["synchronous_commit".into()],
        ..pg
    };
    let (mut n1, view) = established_leader();
    let d = n1.step(&obs(100, altered(primary(1, 1000)), &view, vec![]));
    assert_eq!(undo(&d), ["synchronous_commit"]);
    let mut n2 = member("n2");
    let standby_view = View::led_by("n1", 7, &primary(1, 1000));
    let d = n2.step(&obs(
        0,
        altered(standby(1, 900, Some("n1"))),
        &standby_view,
        vec![],
    ));
    assert_eq!(undo(&d), ["synchronous_commit"]);
    let d = n2.step(&obs(
        1000,
        altered(stopped(standby(1, 900, None))),
        &standby_view,
        vec![],
    ));
    assert!(undo(&d).is_empty(), "{:?}", d.actions);
    let mut paused = standby_view.clone();
    paused.0.config.paused = true;
    let d = member("n3").step(&obs(
        0,
        altered(standby(1, 900, Some("n1"))),
        &paused,
        vec![],
    ));
    assert!(undo(&d).is_empty(), "{:?}", d.actions);
}

/// The leader n1 published the set [n2, n3] (`FIRST 1`: n2 acknowledged each commit, n3 was
/// potential); n1 is gone, and so is n2's record (its member key expired: its host cut from
/// the store, or down with n1). n2 may hold commits it acknowledged that n3 lacks, and nothing
/// tells how far it got: n3 does not run (before: it took the lease at once, a loss of every
/// commit acknowledged in the moments n3 lagged n2). Once n2's fresh record is back, the
/// better of the two runs; an operator who would rather lose those commits names n3 by hand.
#[test]
fn a_priority_set_member_whose_record_is_gone_keeps_the_others_from_running() {
    let b = standby(1, 4000, None);
    let view = View::new()
        .with("n3", record(&b, None))
        .sync_set("n1", &["n2", "n3"]);
    let mut n3 = member("n3");
    let ttl = ClusterConfig::default().ttl_ms;
    let mut now = 0;
    while now <= 3 * ttl {
        let d = n3.step(&obs(now, b.clone(), &view, vec![]));
        assert!(!acquires(&d), "at {now} ms: {}", d.reason);
        assert_eq!(
            d.reason,
            Reason::QuorumIncomplete {
                confirmed: 1,
                needed: 2
            }
        );
        now += 2500;
    }
    // n2 back, behind n3: n3 runs; ahead: n2 does.
    let back = view
        .clone()
        .with("n2", record(&standby(1, 3500, None), None));
    assert!(acquires(&n3.step(&obs(now, b.clone(), &back, vec![]))));
    let ahead = view
        .clone()
        .with("n2", record(&standby(1, 4500, None), None));
    let d = member("n3").step(&obs(now, b.clone(), &ahead, vec![]));
    assert_eq!(d.reason, Reason::Behind { best: name("n2") });
    // By hand: `pgha failover --to n3`.
    let by_hand = view.clone().failover_to("n3");
    let d = member("n3").step(&obs(now, b, &by_hand, vec![]));
    assert!(acquires(&d), "{}", d.reason);
}

/// Found by review (2026-12-03): the sole synchronous standby stopped (`pgha stop`, a rolling
/// restart) while the only other standby is tagged `nosync` and lags. In `on` mode the leader
/// goes asynchronous, and it used to publish the empty set at once; with an empty set every
/// standby is eligible and the most advanced running one wins, so a leader crash next
/// promoted n3, which lacked the commits n2 alone had confirmed. The empty set now waits,
/// like any removal, until a standby that streams holds the primary's position; with none
/// streaming the old set stays (only n2, once back, may then take over).
#[test]
fn the_set_empties_only_once_a_streaming_standby_holds_what_the_stopped_one_confirmed() {
    let mut n1 = member("n1");
    let mut lagging = record(&standby(1, 1000, Some("n1")), None);
    lagging.tags.nosync = true;
    let mut view = View::new()
        .leader("n1", 7)
        .with("n1", record(&primary(1, 5000), None))
        .with("n2", record(&stopped(standby(1, 5000, Some("n1"))), None))
        .with("n3", lagging)
        .config(|c| c.synchronous_mode = SyncMode::On);
    view.0.sync = SyncSet {
        leader: Some(name("n1")),
        members: [name("n2")].into(),
        count: 1,
        method: SyncMethod::Priority,
    };
    let pg = |replicas: Vec<ReplicaState>| LocalPg {
        replicas,
        sync_applied: SyncApplied {
            method: SyncMethod::Priority,
            ..SyncApplied::default()
        },
        ..primary(1, 5000)
    };
    let n3_at = |flush: u64| ReplicaState {
        name: name("n3"),
        streaming: true,
        flush_lsn: Lsn(flush),
        replay_lsn: Lsn(flush),
    };
    let empties = |d: &Decision| {
        has(
            d,
            |a| matches!(a, Action::PublishSync { set, .. } if set.members.is_empty()),
        )
    };
    let d = n1.step(&obs(0, pg(vec![]), &view, vec![acquired(0, 7)]));
    assert!(!empties(&d), "no standby holds n2's commits: {d:?}");
    for t in [1000, 2000, 3000] {
        let d = n1.step(&obs(t, pg(vec![]), &view, vec![]));
        assert!(!empties(&d), "no standby streams, the set emptied: {d:?}");
    }
    for t in [4000, 5000, 6000] {
        let d = n1.step(&obs(t, pg(vec![n3_at(4999)]), &view, vec![]));
        assert!(
            !empties(&d),
            "n3 lags behind n2's commits, the set emptied: {d:?}"
        );
    }
    // A WAL stream that is no member's (a clone in progress, pg_receivewal) holds commits for
    // no failover.
    let clone = ReplicaState {
        name: name("pgha_clone_n4"),
        ..n3_at(5000)
    };
    let d = n1.step(&obs(6500, pg(vec![n3_at(4999), clone]), &view, vec![]));
    assert!(!empties(&d), "a clone's stream counted as a holder: {d:?}");
    let d = n1.step(&obs(7000, pg(vec![n3_at(5000)]), &view, vec![]));
    assert!(
        empties(&d),
        "n3 holds every commit: the set may empty: {d:?}"
    );
}

/// Found by review (2026-12-03): maintenance mode disarms the leader's supervisor, so a leader
/// whose agent died while paused (the upgrade recipe's new binary failing to start) kept a
/// writable PostgreSQL with nothing to fence it; its lease lapsed, and `pgha resume` let
/// another member take over: two writers. The paused leader first publishes its position
/// marked unfenced, and its fencing is off only once the store shows that mark (in its term);
/// resumed, it publishes the mark cleared.
#[test]
fn a_paused_leader_disarms_its_fencing_only_once_the_store_marks_it_unfenced() {
    let (mut n1, view) = established_leader();
    let paused = view.clone().config(|c| c.paused = true);
    let marks = |d: &Decision, unfenced: bool| {
        has(d, |a| {
            matches!(a, Action::PublishPosition { position, leader_revision: 7 }
                if position.unfenced == unfenced && position.term == Some(7))
        })
    };
    let d = n1.step(&obs(1000, primary(1, 1000), &paused, vec![]));
    assert_eq!(d.reason, Reason::Paused);
    assert!(marks(&d, true), "{d:?}");
    assert!(
        !n1.pause_disarms_fencing(&paused.0),
        "fencing off before the store shows the mark"
    );
    let mut marked = paused.clone();
    marked.0.leader_position = Some(LeaderPosition {
        leader: name("n1"),
        timeline: Timeline(1),
        lsn: Lsn(1000),
        term: Some(7),
        unfenced: true,
    });
    let d = n1.step(&obs(2000, primary(1, 1000), &marked, vec![]));
    assert!(!marks(&d, true), "marked already: {d:?}");
    assert!(n1.pause_disarms_fencing(&marked.0));
    // A mark of an earlier term is not this one's.
    let mut earlier = marked.clone();
    earlier.0.leader_position.as_mut().unwrap().term = Some(6);
    assert!(!n1.pause_disarms_fencing(&earlier.0));
    // Resumed: the mark is cleared at once (the fence armed again before, in the same step).
    let mut resumed = marked.clone().config(|c| c.paused = false);
    resumed.0.config.paused = false;
    let d = n1.step(&obs(2100, primary(1, 1000), &resumed, vec![]));
    assert!(marks(&d, false), "{d:?}");
    assert!(!n1.pause_disarms_fencing(&resumed.0));
}

/// The other side of the mark: resumed, with the leader key gone and the last leader's
/// position marked unfenced, nobody takes over while no record of that leader shows its
/// PostgreSQL not writable (its agent gone: its record expired; or its record still says
/// primary). Once its agent is back and has demoted it, the election goes on.
#[test]
fn nobody_takes_over_from_a_leader_that_lost_its_lease_unfenced() {
    let (a, b) = (standby(1, 5000, None), standby(1, 4000, None));
    let mut view = leaderless(&a, &b, None);
    view.0.leader_position = Some(LeaderPosition {
        leader: name("n1"),
        timeline: Timeline(1),
        lsn: Lsn(5000),
        term: Some(7),
        unfenced: true,
    });
    let d = member("n2").step(&obs(0, a.clone(), &view, vec![]));
    assert_eq!(
        d.reason,
        Reason::FormerLeaderUnfenced { leader: name("n1") }
    );
    assert!(!acquires(&d));
    let still_primary = view.clone().with("n1", record(&primary(1, 5000), None));
    let d = member("n2").step(&obs(0, a.clone(), &still_primary, vec![]));
    assert!(!acquires(&d), "{:?}", d.reason);
    let demoted = view
        .clone()
        .with("n1", record(&standby(1, 4500, None), None));
    let d = member("n2").step(&obs(0, a.clone(), &demoted, vec![]));
    assert!(acquires(&d), "{:?}", d.reason);
    let stopped_by_its_agent = view
        .clone()
        .with("n1", record(&stopped(primary(1, 4500)), None));
    let d = member("n2").step(&obs(0, a.clone(), &stopped_by_its_agent, vec![]));
    assert!(acquires(&d), "{:?}", d.reason);
    // The operator's `pgha failover --to n2` (its PostgreSQL stopped by hand) is not held back.
    let named = view.failover_to("n2");
    let d = member("n2").step(&obs(0, a, &named, vec![]));
    assert!(acquires(&d), "{:?}", d.reason);
}

/// Found by review (2026-12-03): a leader that has just written a failsafe list naming a member
/// back in the cluster (n3) asked, once cut off from the store, only the members of the list it
/// had last read (n2): n2, cut off as well, confirmed it and it kept writing, while n3, on the
/// store's side and named by the list there, ran for leader without waiting once the lease
/// lapsed. The leader asks every member of the lists it sent in its term since its list was
/// last seen, too.
#[test]
fn a_leader_asks_the_members_of_the_failsafe_list_it_sent_not_only_of_the_one_it_read() {
    let (mut n1, view) = established_leader();
    let mut view = view
        .with("n2", record(&standby(1, 900, Some("n1")), Some("n1")))
        .with("n3", record(&standby(1, 900, Some("n1")), Some("n1")));
    view.0.failsafe = Some(failsafe_list("n1", &["n1", "n2"]));
    let d = n1.step(&obs(1000, primary(1, 1000), &view, vec![]));
    assert!(has(&d, |a| *a
        == Action::PublishFailsafe {
            list: failsafe_list("n1", &["n1", "n2", "n3"]),
            leader_revision: 7
        }));
    let asked = n1.failsafe_confirmers(&view.0).expect("a list to go by");
    assert_eq!(
        asked,
        [name("n2"), name("n3")].into(),
        "the list sent may be the store's"
    );
    // Once a read shows the list written since, that list alone counts.
    let mut shown = view.clone();
    shown.0.failsafe = Some(failsafe_list("n1", &["n1", "n2", "n3"]));
    shown.0.failsafe_revision = 5;
    let d = n1.step(&obs(1500, primary(1, 1000), &shown, vec![]));
    assert!(
        !has(&d, |a| matches!(a, Action::PublishFailsafe { .. })),
        "{d:?}"
    );
    // n3 leaves, and the list without it lands: that list alone counts.
    let mut gone = shown.clone();
    gone.0.members.remove(&name("n3"));
    n1.step(&obs(2000, primary(1, 1000), &gone, vec![]));
    gone.0.failsafe = Some(failsafe_list("n1", &["n1", "n2"]));
    gone.0.failsafe_revision = 8;
    n1.step(&obs(2500, primary(1, 1000), &gone, vec![]));
    assert_eq!(n1.failsafe_confirmers(&gone.0), Some([name("n2")].into()));
    // n3 back: the list naming it is sent, and its answer lost; n3 gone again before a read
    // shows it, the wanted list equals the read once more, but the lost write may still land:
    // n3 is asked, and the list is sent again, until a read shows the last one written since
    // (found by review of the fix: what was sent was forgotten as soon as the read matched).
    let mut back = gone.clone();
    back.0
        .members
        .insert(name("n3"), record(&standby(1, 900, Some("n1")), Some("n1")));
    n1.step(&obs(3500, primary(1, 1000), &back, vec![]));
    let d = n1.step(&obs(4000, primary(1, 1000), &gone, vec![]));
    assert!(
        has(&d, |a| matches!(a, Action::PublishFailsafe { .. })),
        "sent again until a read shows it: {d:?}"
    );
    assert_eq!(
        n1.failsafe_confirmers(&gone.0),
        Some([name("n2"), name("n3")].into())
    );
    let mut landed = gone.clone();
    landed.0.failsafe_revision = 9;
    n1.step(&obs(4500, primary(1, 1000), &landed, vec![]));
    assert_eq!(n1.failsafe_confirmers(&landed.0), Some([name("n2")].into()));
    // Without a lease there is nobody to ask.
    assert_eq!(member("n1").failsafe_confirmers(&view.0), None);
}

/// n1 leads (term 7) at 5000 with n2 (at 5000) and n3 (at `n3_lsn`) streaming from it, mode
/// `on`, `ANY synchronous_count`.
fn quorum_leader_view(n3_lsn: u64, synchronous_count: u32) -> View {
    View::new()
        .leader("n1", 7)
        .with("n1", record(&primary(1, 5000), None))
        .with("n2", record(&standby(1, 5000, Some("n1")), None))
        .with("n3", record(&standby(1, n3_lsn, Some("n1")), None))
        .config(|c| {
            c.synchronous_mode = SyncMode::On;
            c.synchronous_method = SyncMethod::Quorum;
            c.synchronous_count = synchronous_count;
        })
}

/// Found by review (2026-12-03): a publication of a smaller synchronous set whose answer was
/// lost may still land. Meanwhile the leader, reading the old set, let PostgreSQL count a
/// member that set lacks (n3, streaming again); when the late write landed, the store's set
/// no longer covered a standby PostgreSQL counted, and a commit n3 alone confirmed could be
/// lost to a failover choosing inside the set. Until a read shows the set it sent last, the
/// leader counts only members every set it may have put in the store names.
#[test]
fn a_set_published_without_an_answer_still_bounds_what_postgresql_may_count() {
    let mut n1 = member("n1");
    let mut view = quorum_leader_view(5000, 1);
    let set = |names: &[&str]| SyncSet {
        leader: Some(name("n1")),
        members: names.iter().map(|n| name(n)).collect(),
        count: 1,
        method: SyncMethod::Quorum,
    };
    view.0.sync = set(&["n2", "n3"]);
    view.0.sync_revision = 10;
    let counting = |names: &[&str]| SyncApplied {
        method: SyncMethod::Quorum,
        count: 1,
        names: names.iter().map(|n| name(n)).collect(),
    };
    let replica = |n: &str, streaming: bool| ReplicaState {
        name: name(n),
        streaming,
        flush_lsn: Lsn(5000),
        replay_lsn: Lsn(5000),
    };
    let pg = |n3_streams: bool, counted: &[&str]| LocalPg {
        replicas: vec![replica("n2", true), replica("n3", n3_streams)],
        sync_applied: counting(counted),
        ..primary(1, 5000)
    };
    let counts_n3 = |d: &Decision| {
        has(
            d,
            |a| matches!(a, Action::SetSync(applied) if applied.names.contains(&name("n3"))),
        )
    };
    let publishes = |d: &Decision, names: &[&str]| {
        has(
            d,
            |a| matches!(a, Action::PublishSync { set: s, .. } if *s == set(names)),
        )
    };
    n1.step(&obs(
        0,
        pg(true, &["n2", "n3"]),
        &view,
        vec![acquired(0, 7)],
    ));
    // n3 stops streaming: PostgreSQL stops counting it, then the store drops it once n2,
    // which stays, holds the primary's position.
    let d = n1.step(&obs(1000, pg(false, &["n2", "n3"]), &view, vec![]));
    assert!(
        has(&d, |a| *a == Action::SetSync(counting(&["n2"]))),
        "{d:?}"
    );
    let mut sent = Vec::new();
    for t in [2000, 3000, 3500, 4500] {
        let d = n1.step(&obs(t, pg(false, &["n2"]), &view, vec![]));
        sent.push(publishes(&d, &["n2"]));
    }
    // Sent once n2 held the position, and again (after the same wait) while no read shows it
    // landed: the write may have failed for good, and the store would keep n3 in the set.
    assert_eq!(
        sent,
        [false, true, false, true],
        "the smaller set is sent until it shows"
    );
    // Its answer was lost: the store still shows both when n3 streams again.
    let d = n1.step(&obs(5000, pg(true, &["n2"]), &view, vec![]));
    assert!(
        !counts_n3(&d),
        "n3 counted while a set without it may still land: {d:?}"
    );
    assert!(publishes(&d, &["n2", "n3"]), "{d:?}");
    // Reads showing the same set at the same revision tell nothing: the late write may come.
    let d = n1.step(&obs(6000, pg(true, &["n2"]), &view, vec![]));
    assert!(!counts_n3(&d), "{d:?}");
    // A read shows the set it sent last, written since: what it sent before has landed or
    // never will, and PostgreSQL may count n3 again.
    view.0.sync_revision = 12;
    let d = n1.step(&obs(7000, pg(true, &["n2"]), &view, vec![]));
    assert!(counts_n3(&d), "{d:?}");
}

/// Found by review (2026-12-03): `synchronous_count` raised from 1 to 2 over {n2, n3} was
/// published at once. With count 2 an election needs one member's record only, but the commits
/// acknowledged under count 1 may be on n3 or n2 alone: n2's record alone (n3 cut from the
/// store as the leader crashed) let n2 run without the commits only n3 had. A higher count is
/// published, like a removal, only once `count` members that stay hold the primary's position.
#[test]
fn a_raised_synchronous_count_is_published_once_that_many_members_caught_up() {
    let mut n1 = member("n1");
    let mut view = quorum_leader_view(4000, 2);
    view.0.sync = SyncSet {
        leader: Some(name("n1")),
        members: [name("n2"), name("n3")].into(),
        count: 1,
        method: SyncMethod::Quorum,
    };
    let replica = |n: &str, flush: u64| ReplicaState {
        name: name(n),
        streaming: true,
        flush_lsn: Lsn(flush),
        replay_lsn: Lsn(flush),
    };
    let pg = |n3_flush: u64| LocalPg {
        replicas: vec![replica("n2", 5000), replica("n3", n3_flush)],
        sync_applied: SyncApplied {
            method: SyncMethod::Quorum,
            count: 2,
            names: vec![name("n2"), name("n3")],
        },
        ..primary(1, 5000)
    };
    let raises = |d: &Decision| {
        has(
            d,
            |a| matches!(a, Action::PublishSync { set, .. } if set.count == 2),
        )
    };
    let d = n1.step(&obs(0, pg(4000), &view, vec![acquired(0, 7)]));
    assert!(!raises(&d), "count 2 published while n3 lags: {d:?}");
    for t in [1000, 2000, 3000] {
        let d = n1.step(&obs(t, pg(4999), &view, vec![]));
        assert!(!raises(&d), "count 2 published while n3 lags: {d:?}");
    }
    let d = n1.step(&obs(4000, pg(5000), &view, vec![]));
    assert!(raises(&d), "both hold every commit: {d:?}");
}
