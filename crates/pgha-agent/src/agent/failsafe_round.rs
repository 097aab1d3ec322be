//! The leader's failsafe round: with the store down, ask every listed member to confirm it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use pgha_core::{Millis, Outcome};
use pgha_pg::lease_file::boot_clock_ms;
use tokio::time::Instant;

use super::Agent;
use crate::failsafe::{ask_all, ask_until_confirmed, give_back};

impl Agent {
    /// Starts a failsafe round (if none runs): every other member of the last view is asked to
    /// confirm this leader, again while some refuse ([`ask_until_confirmed`]); the answer
    /// comes back as an outcome when all confirmed in one round.
    pub(crate) fn ask_failsafe(&mut self) {
        // One round per half loop at most (like renewals), never a tight loop.
        let interval = Duration::from_millis((self.ttl().millis() / 6).max(100));
        if self.failsafe_asking
            || self
                .last_failsafe_round
                .is_some_and(|at| at.elapsed() < interval)
        {
            return;
        }
        self.last_failsafe_round = Some(Instant::now());
        let me = self.spec.name.clone();
        let Some(view) = self.view.as_ref() else {
            return;
        };
        // Every member of the failsafe lists this leader may have put in the store (a member
        // outside them does not run for leader meanwhile): the one it last read, and those it
        // sent since; nobody to ask confirms nothing.
        let Some(confirmers) = self.member.failsafe_confirmers(view) else {
            return;
        };
        let Some(term) = self.member.lease_revision() else {
            return;
        };
        let apis: BTreeMap<String, String> = confirmers
            .iter()
            .filter_map(|n| {
                let api = view
                    .members
                    .get(n)?
                    .addresses
                    .get(crate::spec::API_ADDRESS)?;
                Some((n.to_string(), api.clone()))
            })
            .collect();
        if confirmers.is_empty() || apis.len() < confirmers.len() {
            return; // a listed member we cannot ask cannot confirm: no failsafe
        }
        self.failsafe_asking = true;
        // Asked again until the lease deadline while no read of this agent's is answered (one
        // may show lists naming other members to ask): a member whose own read has not failed
        // yet refuses, and may confirm a moment later.
        let boot_origin = self.boot_origin;
        let now = move || Millis(boot_clock_ms().saturating_sub(boot_origin));
        let until = self.member.lease_deadline().unwrap_or(now());
        let failsafe = self.failsafe.clone();
        let reads = failsafe.reads_answered();
        let held = failsafe.held();
        let tx = self.job_tx.clone();
        let token = self.spec.api_token.clone();
        let tls = self.api_client_tls();
        tokio::spawn(async move {
            let members = apis.keys().cloned().collect();
            let round = |which, waiting: BTreeSet<String>| {
                let apis: BTreeMap<String, String> = apis
                    .iter()
                    .filter(|(name, _)| waiting.contains(*name))
                    .map(|(name, api)| (name.clone(), api.clone()))
                    .collect();
                let (me, token, tls, held) = (me.clone(), token.clone(), tls.clone(), held.clone());
                async move { ask_all(me.as_str(), term, apis, token.as_deref(), tls, which, held).await }
            };
            let go_on = || failsafe.reads_answered() == reads && now() < until;
            let confirmed = ask_until_confirmed(&members, round, go_on, now).await;
            if let Some((_, ms)) = confirmed {
                tracing::info!(
                    "{me}: store unreachable, every member confirmed this leader for {ms} ms (failsafe)"
                );
            }
            let (requested_at, promised_ms) = confirmed.unwrap_or((Millis(0), 0));
            let _ = tx.send(Outcome::FailsafeConfirmed {
                requested_at,
                promised_ms,
            });
        });
    }
}

impl Agent {
    /// Reports at once the trust a failsafe confirmation answered between steps gives the
    /// lease, as the next step will count it: `/primary` must not answer 503 for the rest of
    /// the loop while the leader, confirmed, goes on writing (a renewal answered in a step
    /// shows in that step's report already).
    pub(crate) fn report_lease(&mut self) {
        let until = self
            .member
            .lease_deadline_after(&self.outcomes, self.now())
            .map(|d| self.instant_of(d));
        self.report.send_modify(|r| {
            if let Some(observed) = r.observed.as_mut() {
                observed.lease_until = until;
            }
        });
    }

    /// The TLS of this member's calls to the other members' API, when it is HTTPS.
    fn api_client_tls(&self) -> Option<std::sync::Arc<rustls::ClientConfig>> {
        let tls = self.spec.tls.as_ref().filter(|_| self.spec.api_https)?;
        Some(tls.client.rustls())
    }

    /// Gives back, in a task of its own, the failsafe promises this member was given as leader
    /// in `term`: it gives up the term with PostgreSQL not writable, nothing it writes relies
    /// on them, and the next leader need not wait them out. Those not taken back run out.
    pub(crate) fn return_promises(&self, term: u64) {
        if let Some(giving) = self.promises_given_back(term, "giving up the term") {
            tokio::spawn(giving);
        }
    }

    /// The give-back of the promises held for `term` (none held: `None`), as a task owning
    /// what it needs; `why` ends its log line. Only once this member's PostgreSQL no longer
    /// writes in that term: demoted, or stopped as it leaves.
    pub(crate) fn promises_given_back(
        &self,
        term: u64,
        why: &'static str,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let held = self.failsafe.held().take(term);
        if held.is_empty() {
            return None;
        }
        let me = self.spec.name.to_string();
        let token = self.spec.api_token.clone();
        let tls = self.api_client_tls();
        Some(async move {
            let count = held.len();
            let taken = give_back(&me, term, held, token.as_deref(), tls).await;
            let back: usize = taken.values().flatten().sum();
            tracing::info!(
                "{me}: failsafe: gave back {back} of the {count} promise(s) of term {term} \
                 ({why})"
            );
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::sync::Arc;

    use std::time::Duration;

    use pgha_core::{
        ClusterView, FailsafeList, LeaderKey, LocalPg, MemberName, MemberRecord, Millis,
        Observation, Outcome, StoreView,
    };
    use pgha_store::{MemoryStore, TokioClock};

    use crate::agent::Agent;
    use crate::failsafe::{FailsafeAnswer, ASK_AGAIN_AFTER};
    use crate::test_spec::spec;

    /// A member's REST API on a fresh port that refuses the first `refusals` asks (409: its
    /// own store read has not failed yet), then confirms n1 in term 7; its address.
    fn member_confirming_after(refusals: usize) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for (i, conn) in listener.incoming().enumerate() {
                let Ok(mut conn) = conn else { return };
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let (status, body) = if i < refusals {
                    ("409 Conflict", "{}".to_string())
                } else {
                    let answer = FailsafeAnswer {
                        member: "n2".into(),
                        confirmed: "n1".into(),
                        term: 7,
                        promised_ms: 3000,
                        promise: 9,
                    };
                    ("200 OK", serde_json::to_string(&answer).unwrap())
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes());
            }
        });
        addr
    }

    /// n1's agent, leading in term 7 (the lease taken `taken_ms_ago`, for the default 10 s)
    /// with a failsafe list naming n2, whose API refuses the first `refusals` asks; its store
    /// reads fail from now on.
    fn leader_asking_n2(dir: &std::path::Path, refusals: usize, taken_ms_ago: u64) -> Agent {
        let store = Arc::new(MemoryStore::new(Arc::new(TokioClock::new())));
        let (mut agent, _report) = Agent::new(spec(dir), store, Default::default());
        // The agent's clock started 20 s ago (a lease taken before it started is one taken
        // by this agent before its step).
        agent.boot_origin = agent.boot_origin.saturating_sub(20_000);
        let api = member_confirming_after(refusals);
        let n2 = MemberRecord {
            addresses: [(crate::spec::API_ADDRESS.to_string(), api)].into(),
            ..MemberRecord::default()
        };
        let view = ClusterView {
            leader: Some(LeaderKey {
                holder: MemberName::new("n1"),
                revision: 7,
            }),
            members: [(MemberName::new("n2"), n2)].into(),
            failsafe: Some(FailsafeList {
                leader: MemberName::new("n1"),
                members: [MemberName::new("n1"), MemberName::new("n2")].into(),
            }),
            // written in this term (the leader key's revision is 7)
            failsafe_revision: 8,
            ..ClusterView::default()
        };
        let now = agent.now();
        let acquired = Outcome::LeaderAcquired {
            requested_at: Millis(now.0 - taken_ms_ago),
            revision: 7,
            ttl: view.config.ttl(),
        };
        agent.member.step(&Observation::new(
            now,
            LocalPg::default(),
            StoreView::Up(Box::new(view.clone())),
            vec![acquired],
        ));
        assert!(agent.member.holds_lease(now));
        agent.view = Some(view);
        agent.failsafe.observe(true, None, Duration::ZERO);
        agent
    }

    /// The failsafe outcome the round started now reports: (requested at, promised ms).
    async fn round_outcome(agent: &mut Agent, within: Duration) -> (Millis, u64) {
        let outcome = tokio::time::timeout(within, agent.job_rx.recv())
            .await
            .expect("the failsafe round ends")
            .expect("an outcome");
        match outcome {
            Outcome::FailsafeConfirmed {
                requested_at,
                promised_ms,
            } => (requested_at, promised_ms),
            other => panic!("not a failsafe outcome: {other:?}"),
        }
    }

    /// Found by `faults::etcd_stalls::etcd_member_disk_stalled` under load: with etcd's leader
    /// stalled, the leader's one round of asks came 13 ms before n3's own store read failed;
    /// n3 refused, and no round came again before the leader's lease lapsed (the next one
    /// waited for a step, itself waiting on store calls): the leader demoted and n2 took over,
    /// although every member would have confirmed it a moment later. A refused round is asked
    /// again.
    #[tokio::test]
    async fn a_round_refused_by_a_member_whose_read_had_not_failed_yet_is_asked_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut agent = leader_asking_n2(dir.path(), 2, 0);
        let asked_at = agent.now();
        agent.ask_failsafe();
        let (requested_at, promised_ms) = round_outcome(&mut agent, Duration::from_secs(5)).await;
        assert_eq!(promised_ms, 3000, "confirmed once n2 confirms");
        let third_round = asked_at.plus(2 * ASK_AGAIN_AFTER.as_millis() as u64);
        assert!(
            requested_at >= third_round,
            "trusted from the round n2 confirmed ({requested_at:?}), not from an earlier one \
             (asked first at {asked_at:?})"
        );
    }

    /// Found by `faults::etcd_stalls::etcd_member_stalled` under load: with etcd's leader
    /// stalled, every member confirmed the leader 110 ms after its step, but its report kept
    /// the lease trust of that step until the next one: `/primary` answered 503 for 200 ms
    /// while it went on writing. A confirmation answered between steps shows at once.
    #[tokio::test]
    async fn a_confirmation_between_steps_shows_in_the_report_at_once() {
        let dir = tempfile::tempdir().unwrap();
        // Taken 7.4 s ago for 10 s with a 2.5 s margin: trusted 100 ms more.
        let mut agent = leader_asking_n2(dir.path(), 0, 7_400);
        let trusted_until = agent.instant_of(agent.member.lease_deadline().unwrap());
        agent.report.send_modify(|r| {
            r.observed = Some(crate::report::Observed {
                at: tokio::time::Instant::now(),
                stale_after: Duration::from_secs(3),
                local: LocalPg::default(),
                leader: None,
                leader_lsn: None,
                initialized: false,
                lease_until: Some(trusted_until),
                synchronous: false,
                store_reachable: false,
            })
        });
        agent.ask_failsafe();
        let (requested_at, promised_ms) = round_outcome(&mut agent, Duration::from_secs(2)).await;
        assert_eq!(promised_ms, 3000);
        agent.job_done(Outcome::FailsafeConfirmed {
            requested_at,
            promised_ms,
        });
        let reported = agent.report.borrow().observed.as_ref().unwrap().lease_until;
        let reported = reported.expect("a lease trusted");
        // Trusted until the promise's end less the margin: 500 ms past the round's ask, 400
        // ms past the trust before it (the instants are taken a few microseconds apart).
        let confirmed_until = agent.instant_of(requested_at.plus(500));
        let off = reported.max(confirmed_until) - reported.min(confirmed_until);
        assert!(
            off < Duration::from_millis(20),
            "{reported:?} {confirmed_until:?}"
        );
        assert!(
            reported > trusted_until + Duration::from_millis(300),
            "reported {reported:?}, trusted before {trusted_until:?}"
        );
    }

    /// Once a read of the leader's is answered, its rounds stop: that read may show a list
    /// naming members the round does not ask (the next step's round asks them).
    #[tokio::test]
    async fn the_rounds_stop_once_a_read_is_answered() {
        let dir = tempfile::tempdir().unwrap();
        let mut agent = leader_asking_n2(dir.path(), usize::MAX, 0);
        agent.ask_failsafe();
        tokio::time::sleep(Duration::from_millis(250)).await;
        agent.failsafe.observe(false, None, Duration::ZERO);
        let (requested_at, _) = round_outcome(&mut agent, Duration::from_secs(2)).await;
        assert_eq!(requested_at, Millis(0), "no confirmation");
    }

    /// The rounds stop at the lease deadline they were started under (past it the leader
    /// demotes: asking on would only keep the members promising for nothing).
    #[tokio::test]
    async fn the_rounds_stop_at_the_lease_deadline() {
        let dir = tempfile::tempdir().unwrap();
        // Taken 7.2 s ago for 10 s with a 2.5 s margin: trusted 300 ms more.
        let mut agent = leader_asking_n2(dir.path(), usize::MAX, 7_200);
        agent.ask_failsafe();
        let (requested_at, _) = round_outcome(&mut agent, Duration::from_secs(2)).await;
        assert_eq!(requested_at, Millis(0), "no confirmation");
    }
}
