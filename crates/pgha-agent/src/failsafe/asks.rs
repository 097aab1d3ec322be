//! A leader's asks for failsafe confirmations: one round asks every listed member over REST,
//! and a refused round is asked again until one confirms or the caller stops it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{FailsafeRequest, FAILSAFE_PATH};

/// Each confirmation must arrive within this.
const ASK_TIMEOUT: Duration = Duration::from_millis(1000);
/// The pause before a leader asks again after a round that not every member confirmed.
pub const ASK_AGAIN_AFTER: Duration = Duration::from_millis(100);

/// What a member answers when it confirms: who it is, whom it confirmed in which term, how
/// long it promised not to take the lease, and the promise's identifier (0 from an agent too
/// old to name it: such a promise is never given back, it runs out).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailsafeAnswer {
    pub member: String,
    pub confirmed: String,
    pub term: u64,
    pub promised_ms: u64,
    #[serde(default)]
    pub promise: u64,
}

impl FailsafeAnswer {
    /// Whether this answers exactly what `name` was asked: an answer from another member (a
    /// stale or wrong address) or about another leader or term confirms nothing.
    fn answers(&self, name: &str, leader: &str, term: u64) -> bool {
        self.member == name && self.confirmed == leader && self.term == term
    }
}

/// Which round of asks this is: the first one's refusals are logged, the ones after it are
/// only traced (a round may be repeated every [`ASK_AGAIN_AFTER`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Round {
    First,
    Again,
}

/// Asks every member of `members` until each has confirmed: `round(which, waiting)` asks those
/// still `waiting` (at once) and gives each one's promise (ms), `None` for a refusal. A member
/// confirms only once its own store read has failed, which may come up to a store call's
/// bound after the leader's: one refused is asked again [`ASK_AGAIN_AFTER`] later, one that
/// confirmed is not asked again. Nothing is asked, and nothing counts, unless `go_on()` holds
/// before the round and once all have confirmed (the caller's view of whom to ask may have
/// changed meanwhile). Returns the start of the earliest round a confirmation counted from
/// (by `now`, the caller's clock: each member promised from its answer, after that) and the
/// shortest promise; `None` when told to stop first, or for nobody to ask.
pub async fn ask_until_confirmed<T: Copy + Ord, F, Fut>(
    members: &BTreeSet<String>,
    mut round: F,
    mut go_on: impl FnMut() -> bool,
    now: impl Fn() -> T,
) -> Option<(T, u64)>
where
    F: FnMut(Round, BTreeSet<String>) -> Fut,
    Fut: std::future::Future<Output = BTreeMap<String, Option<u64>>>,
{
    let mut confirmed: BTreeMap<String, (T, u64)> = BTreeMap::new();
    let mut which = Round::First;
    loop {
        if members.is_empty() || !go_on() {
            return None;
        }
        let began = now();
        let waiting: BTreeSet<String> = members
            .iter()
            .filter(|m| !confirmed.contains_key(*m))
            .cloned()
            .collect();
        for (member, answer) in round(which, waiting).await {
            if let Some(promised) = answer.filter(|_| members.contains(&member)) {
                confirmed.insert(member, (began, promised));
            }
        }
        if confirmed.len() == members.len() {
            if !go_on() {
                return None;
            }
            let since = confirmed.values().map(|(at, _)| *at).min()?;
            let shortest = confirmed.values().map(|(_, ms)| *ms).min()?;
            return Some((since, shortest));
        }
        tokio::time::sleep(ASK_AGAIN_AFTER).await;
        which = Round::Again;
    }
}

/// Asks every member in `apis` (name → REST address), all at once, to confirm `leader` in
/// `term`, with the cluster's API token (a confirmation is control: the members refuse an ask
/// without it): each member's promise (ms), `None` for one that gave none; each promise is
/// recorded in `held` (to be given back). Refusals are logged in the first round only.
pub async fn ask_all(
    leader: &str,
    term: u64,
    apis: BTreeMap<String, String>,
    token: Option<&str>,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    which: Round,
    held: super::PromisesHeld,
) -> BTreeMap<String, Option<u64>> {
    let calls = super::member_calls::MemberCalls::new(token, tls, ASK_TIMEOUT);
    // Spawned before any is awaited: the asks run side by side, not one after the other.
    let asks: Vec<(String, tokio::task::JoinHandle<Option<u64>>)> = apis
        .into_iter()
        .map(|(name, api)| {
            let leader = leader.to_string();
            let calls = calls.clone();
            let asked = name.clone();
            let held = held.clone();
            let ask = tokio::task::spawn_blocking(move || {
                let request = FailsafeRequest {
                    leader: leader.clone(),
                    term,
                };
                let answer = calls
                    .post::<_, FailsafeAnswer>(&api, FAILSAFE_PATH, &request)
                    .map_err(NotConfirmed::Call)
                    .and_then(|a| {
                        if a.answers(&name, &leader, term) {
                            Ok(a)
                        } else {
                            Err(NotConfirmed::AnotherQuestion(a))
                        }
                    });
                match answer {
                    Ok(a) => {
                        let length = Duration::from_millis(a.promised_ms);
                        held.record(term, &name, &api, a.promise, length);
                        Some(a.promised_ms)
                    }
                    Err(e) => {
                        let why = e.explain(&name, &leader, term);
                        match which {
                            Round::First => {
                                tracing::info!("{leader}: failsafe: {name} did not confirm ({why})")
                            }
                            Round::Again => {
                                tracing::debug!(
                                    "{leader}: failsafe: {name} did not confirm ({why})"
                                )
                            }
                        }
                        None
                    }
                }
            });
            (asked, ask)
        })
        .collect();
    let mut answers = BTreeMap::new();
    for (name, ask) in asks {
        answers.insert(name, ask.await.ok().flatten());
    }
    answers
}

/// Why a member's confirmation did not count.
enum NotConfirmed {
    Call(super::member_calls::CallError),
    /// It answered, but for another member, leader or term (an address now another's).
    AnotherQuestion(FailsafeAnswer),
}

impl NotConfirmed {
    /// The text for the log of asking `name` to confirm `leader` in `term`.
    fn explain(&self, name: &str, leader: &str, term: u64) -> String {
        match self {
            NotConfirmed::Call(e) => e.to_string(),
            NotConfirmed::AnotherQuestion(a) => format!(
                "answered for {} confirming {} in term {}, not {name} confirming {leader} in \
                 term {term}",
                a.member, a.confirmed, a.term
            ),
        }
    }
}

#[cfg(test)]
#[path = "asks_tests.rs"]
mod tests;
