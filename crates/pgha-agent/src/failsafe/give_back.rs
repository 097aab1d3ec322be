//! A leader's failsafe promises, kept per term, and given back once it no longer writes on
//! them: demoted for a switchover, it tells each member that confirmed it which promises of
//! that term it returns, so that the switchover's target need not wait them out.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::held_file::HeldFile;

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

/// One promise a member gave this leader: who (and where to reach it), its identifier, and
/// until when it runs at the latest (from the answer, later than the member counts it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub member: String,
    pub api: String,
    pub promise: u64,
    pub(super) until: Instant,
}

/// The promises this member was given as leader in its newest term, still running.
#[derive(Debug, Clone, Default)]
pub struct PromisesHeld(Arc<Mutex<HeldState>>);

#[derive(Debug, Default)]
struct HeldState {
    term: u64,
    held: Vec<Held>,
    /// Terms up to this one are over (given back): a confirmation of theirs arriving late is
    /// not kept (it runs out).
    returned: u64,
    /// Where they are kept for an agent restarted in the same term.
    file: Option<HeldFile>,
}

impl PromisesHeld {
    /// The promises kept in `file` by an agent of this member before it restarted, still
    /// running, and kept there from now on.
    pub fn persisted(file: std::path::PathBuf) -> Self {
        let (term, held) = super::held_file::read(&file);
        if !held.is_empty() {
            tracing::info!(
                "failsafe: {} promise(s) this member was given as leader in term {term} before a \
                 restart, given back once its PostgreSQL no longer writes in that term",
                held.len()
            );
        }
        PromisesHeld(Arc::new(Mutex::new(HeldState {
            term,
            held,
            returned: 0,
            file: Some(HeldFile::open(file)),
        })))
    }

    /// `member` (at `api`) promised, naming `promise`, for `length`, in this member's term
    /// `term`. Only the newest term's running promises are kept (a round of an earlier term,
    /// or one answered after its term was given back, keeps nothing).
    pub fn record(&self, term: u64, member: &str, api: &str, promise: u64, length: Duration) {
        if promise == 0 {
            return; // an agent too old to name its promises: they run out
        }
        let mut s = self.0.lock().expect("promises lock");
        if term <= s.returned || term < s.term {
            return;
        }
        if term > s.term {
            s.term = term;
            s.held.clear();
        }
        let now = Instant::now();
        s.held.retain(|h| h.until > now);
        s.held.push(Held {
            member: member.to_string(),
            api: api.to_string(),
            promise,
            until: now + length,
        });
        if let Some(file) = &s.file {
            file.keep(s.term, &s.held);
        }
    }

    /// The running promises of `term`, forgotten here; the term is over for this record.
    pub fn take(&self, term: u64) -> Vec<Held> {
        let mut s = self.0.lock().expect("promises lock");
        s.returned = s.returned.max(term);
        if s.term != term {
            return Vec::new();
        }
        let now = Instant::now();
        let taken = std::mem::take(&mut s.held);
        if let Some(file) = &s.file {
            file.keep(term, &[]);
        }
        taken.into_iter().filter(|h| h.until > now).collect()
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
    fn only_the_newest_terms_running_promises_are_kept_until_given_back() {
        let held = PromisesHeld::default();
        let ttl = Duration::from_secs(10);
        held.record(6, "n2", "a:1", 11, ttl);
        held.record(7, "n2", "a:1", 12, ttl);
        held.record(6, "n3", "b:1", 10, ttl); // a round of term 6 answered late
        held.record(7, "n3", "b:1", 13, ttl);
        held.record(7, "n3", "b:1", 0, ttl); // an older agent's: nothing to name
        held.record(7, "n3", "b:1", 14, Duration::ZERO); // run out already
        let taken: Vec<u64> = held.take(7).iter().map(|h| h.promise).collect();
        assert_eq!(taken, [12, 13]);
        held.record(7, "n2", "a:1", 15, ttl); // answered after the give-back
        assert!(held.take(7).is_empty(), "term 7 is over");
        held.record(8, "n3", "b:1", 16, ttl);
        assert!(held.take(6).is_empty());
        assert_eq!(held.take(8).len(), 1, "a later term is its own");
    }

    /// Found by `bench/chaos_dist.sh` with `OVERLAP=1`: the leader's agent was killed and
    /// started again after the members had confirmed it while etcd was paused; the new agent
    /// knew of no promise, so the `pgha stop` that followed gave none back, and the next
    /// leader waited the rest of them out (5 s without writes).
    #[test]
    fn promises_held_outlive_an_agent_restart_until_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("n1.failsafe-held");
        let ttl = Duration::from_secs(30);
        let held = PromisesHeld::persisted(file.clone());
        held.record(7, "n2", "10.0.0.2:8008", 21, ttl);
        held.record(7, "n3", "10.0.0.3:8008", 22, ttl);
        let written = |lines: usize| {
            (0..200).any(|_| {
                let text = std::fs::read_to_string(&file).unwrap_or_default();
                let done = text.lines().count() == lines;
                if !done {
                    std::thread::sleep(Duration::from_millis(10));
                }
                done
            })
        };
        assert!(written(2), "{:?}", std::fs::read_to_string(&file));
        drop(held);
        let restarted = PromisesHeld::persisted(file.clone());
        let taken: Vec<(String, String, u64)> = restarted
            .take(7)
            .into_iter()
            .map(|h| (h.member, h.api, h.promise))
            .collect();
        assert_eq!(
            taken,
            [
                ("n2".into(), "10.0.0.2:8008".into(), 21),
                ("n3".into(), "10.0.0.3:8008".into(), 22)
            ]
        );
        assert!(written(0), "given back: the file keeps none");
        assert!(PromisesHeld::persisted(file).take(7).is_empty());
    }
}
