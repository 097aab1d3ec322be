//! The leader's failsafe round: with the store down, ask every listed member to confirm it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use pgha_core::{FailsafeUncounted, Millis, Outcome};
use pgha_pg::lease_file::boot_clock_ms;
use tokio::time::Instant;

use super::Agent;
use crate::failsafe::{ask_all, ask_until_confirmed, give_back};

/// This leader's failsafe rounds: whether one is asking, when the last began, whether every
/// member confirmed it since the store was last read, and the channel their answers come on
/// (apart from the jobs': a step takes them as late as it can).
pub(crate) struct Rounds {
    last: Option<Instant>,
    asking: bool,
    pub(crate) confirmed: bool,
    tx: tokio::sync::mpsc::UnboundedSender<Outcome>,
    pub(crate) answers: tokio::sync::mpsc::UnboundedReceiver<Outcome>,
}

impl Rounds {
    pub(crate) fn new() -> Self {
        let (tx, answers) = tokio::sync::mpsc::unbounded_channel();
        Rounds {
            last: None,
            asking: false,
            confirmed: false,
            tx,
            answers,
        }
    }
}

impl Agent {
    /// Starts a failsafe round (if none runs): every other member of the last view is asked to
    /// confirm this leader, again while some refuse ([`ask_until_confirmed`]); the answer
    /// comes back as an outcome when all confirmed in one round.
    pub(crate) fn ask_failsafe(&mut self) {
        // One round per half loop at most (like renewals), never a tight loop.
        let interval = Duration::from_millis((self.ttl().millis() / 6).max(100));
        if self.rounds.asking || self.rounds.last.is_some_and(|at| at.elapsed() < interval) {
            return;
        }
        self.rounds.last = Some(Instant::now());
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
        self.rounds.asking = true;
        // Asked again until the lease deadline while no read of this agent's is answered (one
        // may show lists naming other members to ask): a member whose own read has not failed
        // yet refuses, and may confirm a moment later.
        let boot_origin = self.boot_origin;
        let now = move || Millis(boot_clock_ms().saturating_sub(boot_origin));
        let until = self.member.lease_deadline().unwrap_or(now());
        let failsafe = self.failsafe.clone();
        let reads = failsafe.reads_answered();
        let held = failsafe.held();
        let tx = self.rounds.tx.clone();
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
    /// A round's answer (a confirmation, or `requested_at` 0: none), for the next step.
    pub(crate) fn failsafe_answered(&mut self, answer: Outcome) {
        self.rounds.asking = false;
        if let Outcome::FailsafeConfirmed { requested_at, .. } = answer {
            if requested_at.0 > 0 {
                self.rounds.confirmed = true;
                self.outcomes.push(answer);
                self.report_lease();
                self.extend_fencing();
            }
        }
    }

    /// Says why the last step did not count a confirmation (routine when a renewal answered
    /// since the round's ask already vouches for more).
    pub(crate) fn say_failsafe_uncounted(&self) {
        let Some((asked_at, why)) = self.member.failsafe_uncounted() else {
            return;
        };
        let name = &self.spec.name;
        let asked = asked_at.0;
        if matches!(why, FailsafeUncounted::TrustedSince { .. }) {
            tracing::debug!("{name}: failsafe confirmation asked at {asked} ms not counted: {why}");
        } else {
            tracing::info!("{name}: failsafe confirmation asked at {asked} ms not counted: {why}");
        }
    }

    /// Takes the answers of the rounds that ended since the last look. A step takes them
    /// once more just before its observation is complete: one that began observing before a
    /// confirmation came (its store read bounded by the trust the confirmation extends)
    /// must not demote on the trust it had.
    pub(crate) fn take_failsafe_answers(&mut self) {
        while let Ok(answer) = self.rounds.answers.try_recv() {
            self.failsafe_answered(answer);
        }
    }

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
