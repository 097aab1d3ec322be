//! This member's record in the store: what it publishes, and when (on change, or as a heartbeat).

use super::{Member, Plan};
use crate::action::Action;
use crate::observe::{ClusterView, LocalPg, MemberRecord, Observation};
use crate::types::{Lsn, Millis};

/// The record this member published last, when, and the ttl of the lease its key went on.
#[derive(Clone, Debug)]
pub(crate) struct Published {
    pub record: MemberRecord,
    pub at: Millis,
    pub lease_ttl_ms: u64,
}

impl Published {
    /// Whether the key wants a heartbeat: a third of the shorter of its lease's ttl and the
    /// one in force has passed. A ttl raised live leaves the key on the old, shorter lease
    /// until the next put (found by the simulation, seed 435: a ttl raised from 3 s to 10 s,
    /// the heartbeat due after 3.3 s, and the key gone after 3 s; an election that did not
    /// see the member furthest ahead passed it over).
    pub(crate) fn heartbeat_due(&self, now: Millis, ttl_ms: u64) -> bool {
        now.since(self.at) >= self.lease_ttl_ms.min(ttl_ms) / 3
    }
}

impl Member {
    /// The record this member would publish now.
    pub(crate) fn record(&self, local: &LocalPg, view: &ClusterView) -> MemberRecord {
        MemberRecord {
            running: local.running,
            in_recovery: local.in_recovery,
            timeline: local.timeline,
            lsn: local.lsn,
            replay_lsn: local.replay_lsn,
            streaming_from: local.upstream.clone().filter(|_| local.streaming),
            tags: self.settings.tags.clone(),
            leader_seen: view.leader.as_ref().map(|l| l.holder.clone()),
            term_seen: self.newest_term_in(view),
            addresses: self.settings.addresses.clone(),
            synced_slots: local.synced_slots,
            replaying_local_wal: local.replaying_local_wal,
            stream_stopped: Some(local.stream_stopped),
            promotion_vetoed: self.vetoed_until.is_some(),
            data_dir_stalled: self.data_dir_stalled,
            failsafe_promise_ms: Some(self.promises_run_ms),
            stepped_down: self.stepped_down,
            sync_in_force: self.sync.in_force.filter(|_| {
                view.leader
                    .as_ref()
                    .is_some_and(|l| &l.holder == self.name())
            }),
            pgha_version: Some(crate::VERSION.to_string()),
        }
    }

    /// Publishes when something other than positions changed, when positions changed and a
    /// loop has passed, or as a heartbeat.
    pub(crate) fn publish_if_due(
        &mut self,
        obs: &Observation,
        view: &ClusterView,
        plan: &mut Plan,
    ) {
        let record = self.record(&obs.local, view);
        let in_store = view.members.get(self.name());
        let due = match (&self.published, in_store) {
            (_, None) | (None, _) => true,
            (Some(published), Some(_)) => {
                let (last, elapsed) = (&published.record, obs.now.since(published.at));
                // (a promise's time left is exact in any record published after it was given)
                let shape = |r: &MemberRecord| MemberRecord {
                    lsn: Lsn(0),
                    replay_lsn: Lsn(0),
                    failsafe_promise_ms: None,
                    ..r.clone()
                };
                shape(last) != shape(&record)
                    || (last != &record && elapsed >= self.config.loop_wait_ms)
                    || published.heartbeat_due(obs.now, self.config.ttl_ms)
            }
        };
        if due {
            self.publish(record, obs.now, plan);
        }
    }

    pub(crate) fn publish(&mut self, record: MemberRecord, now: Millis, plan: &mut Plan) {
        self.published = Some(Published {
            record: record.clone(),
            at: now,
            lease_ttl_ms: self.config.ttl_ms,
        });
        plan.actions
            .retain(|a| !matches!(a, Action::PublishMember(_)));
        plan.push(Action::PublishMember(record));
    }
}
