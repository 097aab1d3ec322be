//! The leader's failsafe round: with the store down, ask every listed member to confirm it.

use std::collections::BTreeMap;
use std::time::Duration;

use pgha_core::{Millis, Outcome};
use tokio::time::Instant;

use super::Agent;

impl Agent {
    /// Starts a failsafe round (if none runs): every other member of the last view is asked to
    /// confirm this leader; the answer comes back as an outcome when all confirmed.
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
        let requested_at = self.now();
        let tx = self.job_tx.clone();
        let token = self.spec.api_token.clone();
        let tls = self
            .spec
            .tls
            .as_ref()
            .filter(|_| self.spec.api_https)
            .map(|t| t.client.rustls());
        tokio::spawn(async move {
            let promised =
                crate::failsafe::ask_all(me.as_str(), term, apis, token.as_deref(), tls).await;
            if let Some(ms) = promised {
                tracing::info!(
                    "{me}: store unreachable, every member confirmed this leader for {ms} ms (failsafe)"
                );
            }
            let _ = tx.send(Outcome::FailsafeConfirmed {
                requested_at: if promised.is_some() {
                    requested_at
                } else {
                    Millis(0)
                },
                promised_ms: promised.unwrap_or(0),
            });
        });
    }
}
