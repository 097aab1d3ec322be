//! A leader's failsafe promises, kept per term, and given back once it no longer writes on
//! them: demoted for a switchover, it tells each member that confirmed it which promises of
//! that term it returns, so that the switchover's target need not wait them out.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// REST path a leader posts the promises it gives back to.
pub const RETURN_PATH: &str = "/failsafe/return";

/// How long each member is given to take the promises back.
const RETURN_TIMEOUT: Duration = Duration::from_millis(1000);

/// Body of POST /failsafe/return: `leader` gives back the promises named, given in `term`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromisesReturned {
    pub leader: String,
    pub term: u64,
    pub promises: Vec<u64>,
}

/// One promise a member gave this leader: who (and where to reach it), and its identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub member: String,
    pub api: String,
    pub promise: u64,
}

/// The promises this member was given as leader, per term.
#[derive(Debug, Clone, Default)]
pub struct PromisesHeld(Arc<Mutex<BTreeMap<u64, Vec<Held>>>>);

impl PromisesHeld {
    /// `member` (at `api`) promised, naming `promise`, for this member's term `term`.
    pub fn record(&self, term: u64, member: &str, api: &str, promise: u64) {
        if promise == 0 {
            return; // an agent too old to name its promises: they run out
        }
        let mut held = self.0.lock().expect("promises lock");
        held.entry(term).or_default().push(Held {
            member: member.to_string(),
            api: api.to_string(),
            promise,
        });
    }

    /// The promises of `term`, forgotten here (with those of earlier terms, which nothing
    /// gives back any more).
    pub fn take(&self, term: u64) -> Vec<Held> {
        let mut held = self.0.lock().expect("promises lock");
        let taken = held.remove(&term).unwrap_or_default();
        held.retain(|t, _| *t > term);
        taken
    }
}

/// Gives back `held` (promises `leader` was given in `term`) to each member that gave them,
/// all at once, with the cluster's API token; answers how many each member took back (`None`
/// where the call failed: those promises run out instead).
pub async fn give_back(
    leader: &str,
    term: u64,
    held: Vec<Held>,
    token: Option<&str>,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> BTreeMap<String, Option<usize>> {
    let calls = super::member_calls::MemberCalls::new(token, tls, RETURN_TIMEOUT);
    let mut by_member: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for h in held {
        by_member
            .entry((h.member, h.api))
            .or_default()
            .push(h.promise);
    }
    let calls: Vec<(String, tokio::task::JoinHandle<Option<usize>>)> = by_member
        .into_iter()
        .map(|((member, api), promises)| {
            let body = PromisesReturned {
                leader: leader.to_string(),
                term,
                promises,
            };
            let calls = calls.clone();
            let call = tokio::task::spawn_blocking(move || {
                let answer = calls.post::<_, Taken>(&api, RETURN_PATH, &body);
                match answer {
                    Ok(taken) => Some(taken.returned),
                    Err(e) => {
                        tracing::info!(
                            "{}: failsafe: could not give back promises to {api}: {e}",
                            body.leader
                        );
                        None
                    }
                }
            });
            (member, call)
        })
        .collect();
    let mut answers = BTreeMap::new();
    for (member, call) in calls {
        answers.insert(member, call.await.ok().flatten());
    }
    answers
}

/// Answer of POST /failsafe/return: how many of the promises named were given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taken {
    pub returned: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_term_taken_forgets_the_terms_before_it() {
        let held = PromisesHeld::default();
        held.record(6, "n2", "a:1", 11);
        held.record(7, "n2", "a:1", 12);
        held.record(7, "n3", "b:1", 13);
        held.record(7, "n3", "b:1", 0);
        held.record(8, "n3", "b:1", 14);
        let taken = held.take(7);
        assert_eq!(
            taken.iter().map(|h| h.promise).collect::<Vec<_>>(),
            [12, 13],
            "an unnamed promise is not kept"
        );
        assert!(held.take(6).is_empty(), "forgotten with term 7");
        assert_eq!(held.take(8).len(), 1, "a later term is kept");
    }
}
