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
        flushed_lsn: Lsn(lsn),
        ..LocalPg::default()
    }
}

fn standby(tl: u32, lsn: u64, upstream: Option<&str>) -> LocalPg {
    LocalPg {
        in_recovery: true,
        upstream: upstream.map(name),
        streaming: upstream.is_some(),
        // without an upstream: the stream its agent stopped for an election
        stream_stopped: upstream.is_none(),
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
        stream_stopped: Some(pg.stream_stopped),
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
            mode: None,
        };
        self
    }
    /// The store's `position` key: `leader` led last (term 7) and reached (`tl`, `lsn`).
    fn led_last(mut self, leader: &str, tl: u32, lsn: u64) -> Self {
        self.0.leader_position = Some(LeaderPosition {
            leader: name(leader),
            timeline: Timeline(tl),
            lsn: Lsn(lsn),
            term: Some(7),
            unfenced: false,
        });
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
            request: failover_request(to, false, false),
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

/// `pgha failover --to TO` with its flags, naming no leader.
fn failover_request(to: &str, force: bool, allow_data_loss: bool) -> SwitchoverRequest {
    SwitchoverRequest {
        from: None,
        to: Some(name(to)),
        kind: RequestKind::Failover {
            force,
            allow_data_loss,
        },
        at: None,
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

/// Panics unless `decision` gives back the failsafe promises of `term` before it releases
/// the leader key of that term.
fn gives_back_promises_then_releases(decision: &Decision, term: u64) {
    let at = |pred: &dyn Fn(&Action) -> bool| decision.actions.iter().position(pred);
    let returned = at(&|a| *a == Action::ReturnPromises { term });
    let released = at(&|a| *a == Action::ReleaseLeader { revision: term });
    assert!(
        returned.is_some() && returned < released,
        "{:?}",
        decision.actions
    );
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

/// The failsafe list of `leader` naming `members`.
fn failsafe_list(leader: &str, members: &[&str]) -> FailsafeList {
    FailsafeList {
        leader: name(leader),
        members: members.iter().map(|m| name(m)).collect(),
    }
}

fn leaderless(n2: &LocalPg, n3: &LocalPg, seen: Option<&str>) -> View {
    View::new()
        .with("n2", record(n2, seen))
        .with("n3", record(n3, seen))
}

/// The history event `decision` records, if any.
fn recorded(decision: &Decision) -> Option<HistoryEvent> {
    decision.actions.iter().find_map(|a| match a {
        Action::RecordHistory(e) => Some(e.clone()),
        _ => None,
    })
}

/// n2 leading (revision 20) on timeline 2, which it started at 5000 by `kind` from n1.
fn n2_leads_after(kind: EventKind) -> View {
    View::led_by("n2", 20, &primary(2, 9000)).event(kind, "n1", "n2", 2, 5000)
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

/// n1 leads (term 7) with n2 and n3 streaming, mode `mode`, PostgreSQL counting `counted`
/// (priority, one standby), the store's set naming the same members.
fn leading(mode: SyncMode, counted: &[&str]) -> (Member, View, SyncApplied) {
    let mut view = View::new()
        .leader("n1", 7)
        .with("n1", record(&primary(1, 5000), None))
        .with("n2", record(&standby(1, 5000, Some("n1")), None))
        .with("n3", record(&standby(1, 5000, Some("n1")), None))
        .config(|c| c.synchronous_mode = mode);
    let applied = SyncApplied {
        method: SyncMethod::Priority,
        count: 1,
        names: counted.iter().map(|n| name(n)).collect(),
    };
    view.0.sync = SyncSet {
        leader: Some(name("n1")),
        members: applied.names.iter().cloned().collect(),
        count: 1,
        method: SyncMethod::Priority,
        mode: None,
    };
    (member("n1"), view, applied)
}

/// The primary at `lsn`, PostgreSQL counting `applied`, its standbys at these positions.
fn at(lsn: u64, applied: &SyncApplied, standbys: &[(&str, u64)]) -> LocalPg {
    LocalPg {
        replicas: standbys
            .iter()
            .map(|(n, flush)| ReplicaState {
                name: name(n),
                streaming: true,
                flush_lsn: Lsn(*flush),
                replay_lsn: Lsn(*flush),
            })
            .collect(),
        sync_applied: applied.clone(),
        ..primary(1, lsn)
    }
}

/// n2, a standby at 5000, has just taken term 11 and asked to promote: it, its PostgreSQL
/// and the view it read.
fn winner_promoting() -> (Member, LocalPg, View) {
    let mut n2 = member("n2");
    let a = standby(1, 5000, None);
    let mine = View::new()
        .leader("n2", 11)
        .with("n2", record(&a, Some("n2")));
    let d = n2.step(&obs(0, a.clone(), &mine, vec![acquired(0, 11)]));
    assert!(matches!(d.actions.last(), Some(Action::Promote { .. })));
    (n2, a, mine)
}

/// A step of the leader at `t`, its lease renewed then.
fn tick(n1: &mut Member, t: u64, local: LocalPg, view: &View) -> Decision {
    n1.step(&obs(t, local, view, vec![renewed(t)]))
}

/// What `synchronous_standby_names` a decision applies, if it changes it.
fn applies(d: &Decision) -> Option<SyncApplied> {
    d.actions.iter().find_map(|a| match a {
        Action::SetSync(s) => Some(s.clone()),
        _ => None,
    })
}

#[path = "scenarios/acquisitions.rs"]
mod acquisitions;
#[path = "scenarios/bootstrap_and_clone.rs"]
mod bootstrap_and_clone;
#[path = "scenarios/crashes_and_restarts.rs"]
mod crashes_and_restarts;
#[path = "scenarios/failed_promotions.rs"]
mod failed_promotions;
#[path = "scenarios/failover_history.rs"]
mod failover_history;
#[path = "scenarios/failsafe.rs"]
mod failsafe;
#[path = "scenarios/failsafe_key_lost.rs"]
mod failsafe_key_lost;
#[path = "scenarios/failsafe_withdrawal.rs"]
mod failsafe_withdrawal;
#[path = "scenarios/fencing.rs"]
mod fencing;
#[path = "scenarios/identity.rs"]
mod identity;
#[path = "scenarios/leaderless_election.rs"]
mod leaderless_election;
#[path = "scenarios/lease.rs"]
mod lease;
#[path = "scenarios/lease_caps.rs"]
mod lease_caps;
#[path = "scenarios/live_ttl_changes.rs"]
mod live_ttl_changes;
#[path = "scenarios/pause.rs"]
mod pause;
#[path = "scenarios/reasons.rs"]
mod reasons;
#[path = "scenarios/rewind_and_reclone.rs"]
mod rewind_and_reclone;
#[path = "scenarios/rewind_or_follow.rs"]
mod rewind_or_follow;
#[path = "scenarios/slots_and_settings.rs"]
mod slots_and_settings;
#[path = "scenarios/stalled_standbys.rs"]
mod stalled_standbys;
#[path = "scenarios/switchover_and_manual_failover.rs"]
mod switchover_and_manual_failover;
#[path = "scenarios/sync_records_gone.rs"]
mod sync_records_gone;
#[path = "scenarios/synchronous_election.rs"]
mod synchronous_election;
#[path = "scenarios/synchronous_promotion.rs"]
mod synchronous_promotion;
#[path = "scenarios/synchronous_set.rs"]
mod synchronous_set;
#[path = "scenarios/unresponsive_postgres.rs"]
mod unresponsive_postgres;
#[path = "scenarios/unseen_sync_sets.rs"]
mod unseen_sync_sets;
