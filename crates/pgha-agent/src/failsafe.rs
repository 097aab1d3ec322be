//! Failsafe for store outages: while the store is unreachable, the leader asks every other
//! member (over its REST API) to confirm it; a member confirms only if it cannot reach the
//! store either, and then promises not to take the lease for a ttl. If all confirm, the
//! leader keeps its primary; a leader cut off from a store the others still reach gets no
//! confirmation and demotes in time (I1).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

mod asks;
mod give_back;
mod held_file;
mod member_calls;
mod promises;
pub use asks::{ask_all, ask_until_confirmed, FailsafeAnswer, Round, ASK_AGAIN_AFTER};
pub use give_back::{give_back, PromisesHeld, PromisesReturned, Taken, RETURN_PATH};
use promises::Promise;

/// REST path the leader posts to.
pub const FAILSAFE_PATH: &str = "/failsafe";

/// Body of POST /failsafe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailsafeRequest {
    /// The member asking to be confirmed as leader.
    pub leader: String,
    /// Its term: the revision of the leader key it holds (0 from an agent too old to say).
    #[serde(default)]
    pub term: u64,
}

/// What this member's agent and its REST API share about failsafe.
#[derive(Debug, Default)]
struct Inner {
    /// The agent's last store read failed.
    store_down: bool,
    /// Store reads the agent made that the store answered.
    reads_answered: u64,
    /// The leader (and its term) in the last view the agent read.
    last_leader: Option<(String, u64)>,
    /// The lease ttl in force.
    ttl: Duration,
    /// The promises this member gave (not to take the lease before their instant).
    promises: Vec<Promise>,
    /// Where the promises are kept, so that a restarted agent still keeps them.
    file: Option<PathBuf>,
    /// The promises this member was given as leader, per term.
    held: PromisesHeld,
}

/// Shared between the agent loop and the REST handler.
#[derive(Debug, Clone, Default)]
pub struct Failsafe(Arc<Mutex<Inner>>);

/// Why a confirmation is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("the store is reachable from here: ask it, not me")]
    StoreReachable,
    #[error("{asked} is not the leader this member last saw ({seen})")]
    NotTheLeader { asked: String, seen: String },
    #[error("{leader}'s term {asked} is not the one this member last saw ({seen})")]
    OtherTerm {
        leader: String,
        asked: u64,
        seen: u64,
    },
    #[error("this member cannot record its promise on disk")]
    CannotKeepPromise,
    #[error("this member cannot record on disk the promises given back: they still run")]
    CannotRecordGiveBack,
}

/// A confirmation: how long this member promised, and the promise's identifier (what the
/// leader names to give it back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmation {
    pub promised: Duration,
    pub promise: u64,
}

impl Failsafe {
    /// Failsafe state whose promises survive an agent restart or a reboot in `file`
    /// (root-owned, next to the member directory): see [`promises::read`] for what is in force.
    /// A file that cannot be read counts as a promise for `ttl` from now (the longest this
    /// member gives under the configuration it starts with), not as none.
    pub fn persisted(file: PathBuf, ttl: Duration) -> Self {
        let (promises, read) = match promises::read(&file) {
            Ok(promises) => (promises, true),
            Err(e) => {
                tracing::warn!(
                    "failsafe: cannot read the promises kept in {} ({e}): taken for a promise \
                     not to take the lease for {} ms",
                    file.display(),
                    ttl.as_millis()
                );
                (vec![promises::Promise::unknown(ttl)], false)
            }
        };
        if let Some(until) = promises.iter().map(|p| p.until).max() {
            tracing::info!(
                "failsafe: a promise not to take the lease for {} ms more, made before a restart",
                until.saturating_duration_since(Instant::now()).as_millis()
            );
            // Written again with this boot's identity: one from before a reboot runs its
            // length from this start, not again from every later start of this boot.
            if read {
                if let Err(e) = promises::write(&file, &promises) {
                    tracing::warn!(
                        "failsafe: cannot write the promises kept in {} again ({e}): one made \
                         before a reboot runs its whole length again at the next start",
                        file.display()
                    );
                }
            }
        }
        let held = PromisesHeld::persisted(held_file::path_beside(&file));
        Failsafe(Arc::new(Mutex::new(Inner {
            promises,
            file: Some(file),
            held,
            ..Inner::default()
        })))
    }

    /// The agent records what its last store read said.
    pub fn observe(&self, store_down: bool, leader: Option<(String, u64)>, ttl: Duration) {
        let mut s = self.0.lock().expect("failsafe lock");
        s.store_down = store_down;
        if !store_down {
            s.reads_answered += 1;
            s.last_leader = leader;
            s.ttl = ttl;
        }
    }

    /// How many of this member's store reads the store answered: a leader asks again only
    /// while this stays as it was (an answered read may name other members to ask).
    pub fn reads_answered(&self) -> u64 {
        self.0.lock().expect("failsafe lock").reads_answered
    }

    /// Handles a leader's request: confirm (and promise, for the ttl this member last saw,
    /// which it returns with the promise's identifier) or refuse.
    pub fn confirm(&self, request: &FailsafeRequest) -> Result<Confirmation, Refusal> {
        let mut s = self.0.lock().expect("failsafe lock");
        if !s.store_down {
            return Err(Refusal::StoreReachable);
        }
        let Some((leader, term)) = s.last_leader.clone().filter(|(l, _)| *l == request.leader)
        else {
            return Err(Refusal::NotTheLeader {
                asked: request.leader.clone(),
                seen: s
                    .last_leader
                    .as_ref()
                    .map_or_else(|| "none".into(), |(l, _)| l.clone()),
            });
        };
        if term != request.term {
            return Err(Refusal::OtherTerm {
                leader,
                asked: request.term,
                seen: term,
            });
        }
        // Kept a fifth longer than said: this host's clock may run fast, the leader's slow
        // (NTP slewing; the leader's margin covers its own clock a tenth slow).
        let promise = Promise::new(&leader, term, s.ttl + s.ttl / 5);
        let now = Instant::now();
        let mut kept: Vec<Promise> = s
            .promises
            .iter()
            .filter(|p| p.until > now)
            .cloned()
            .collect();
        kept.push(promise.clone());
        if let Some(file) = &s.file {
            // Kept before it is given: a confirmation the agent could forget is no promise.
            if let Err(e) = promises::write(file, &kept) {
                tracing::error!(
                    "failsafe: cannot keep the promise in {}: {e}",
                    file.display()
                );
                return Err(Refusal::CannotKeepPromise);
            }
        }
        s.promises = kept;
        Ok(Confirmation {
            promised: s.ttl,
            promise: promise.id,
        })
    }

    /// A leader gives back the promises `returned` names, given to it in its term: it no
    /// longer writes on them (demoted for a switchover). Only those are dropped; the file is
    /// written first. Answers how many were given back.
    pub fn give_back(&self, returned: &PromisesReturned) -> Result<usize, Refusal> {
        let mut s = self.0.lock().expect("failsafe lock");
        let now = Instant::now();
        let (back, kept): (Vec<Promise>, Vec<Promise>) = s
            .promises
            .iter()
            .filter(|p| p.until > now)
            .cloned()
            .partition(|p| p.given_back_by(&returned.leader, returned.term, &returned.promises));
        if back.is_empty() {
            return Ok(0);
        }
        if let Some(file) = &s.file {
            if let Err(e) = promises::write(file, &kept) {
                tracing::error!(
                    "failsafe: cannot record promises given back in {}: {e}",
                    file.display()
                );
                return Err(Refusal::CannotRecordGiveBack);
            }
        }
        s.promises = kept;
        tracing::info!(
            "failsafe: {} gave back {} promise(s) of term {}; {}",
            returned.leader,
            back.len(),
            returned.term,
            match s.promises.iter().map(|p| p.until).max() {
                Some(until) => format!(
                    "another still runs for {} ms",
                    until.saturating_duration_since(now).as_millis()
                ),
                None => "none runs any more".to_string(),
            }
        );
        Ok(back.len())
    }

    /// The promises this member was given as leader (its failsafe rounds record them; it gives
    /// them back once demoted for a switchover).
    pub fn held(&self) -> PromisesHeld {
        self.0.lock().expect("failsafe lock").held.clone()
    }

    /// The promise in force, if any: the latest instant of those this member gave.
    pub fn promised_until(&self) -> Option<Instant> {
        let now = Instant::now();
        self.0
            .lock()
            .expect("failsafe lock")
            .promises
            .iter()
            .map(|p| p.until)
            .filter(|u| *u > now)
            .max()
    }
}

#[cfg(test)]
#[path = "failsafe/persisted_tests.rs"]
mod persisted_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirms_only_when_the_store_is_down_and_for_the_known_leader() {
        let f = Failsafe::default();
        f.observe(false, Some(("n1".into(), 7)), Duration::from_secs(3));
        let ask = |l: &str, term: u64| FailsafeRequest {
            leader: l.into(),
            term,
        };
        assert_eq!(f.confirm(&ask("n1", 7)), Err(Refusal::StoreReachable));
        f.observe(true, None, Duration::from_secs(99));
        assert!(matches!(
            f.confirm(&ask("n2", 7)),
            Err(Refusal::NotTheLeader { .. })
        ));
        // The leader's name in another term (an earlier lease of the same member) is not it.
        assert!(matches!(
            f.confirm(&ask("n1", 3)),
            Err(Refusal::OtherTerm {
                asked: 3,
                seen: 7,
                ..
            })
        ));
        assert!(f.promised_until().is_none());
        f.confirm(&ask("n1", 7)).unwrap();
        let until = f.promised_until().unwrap();
        assert!(
            until > Instant::now() + Duration::from_millis(2500),
            "promise lasts the ttl seen before the outage"
        );
    }

    /// Found by review: a promises file that could not be read (an I/O error; here a directory
    /// stands at its name) read as no promise, and a restarted member could take the lease
    /// while the leader it had confirmed still wrote on its promise. It counts as a promise for
    /// the ttl the agent starts with.
    #[test]
    fn an_unreadable_promises_file_counts_as_a_promise() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("n2.failsafe");
        let none = Failsafe::persisted(file.clone(), Duration::from_secs(10));
        assert!(none.promised_until().is_none(), "no file: no promise");
        std::fs::create_dir(&file).unwrap();
        let until = Failsafe::persisted(file, Duration::from_secs(10)).promised_until();
        let left = until.map(|u| u.saturating_duration_since(Instant::now()));
        assert!(
            left.is_some_and(|l| l > Duration::from_secs(9)),
            "promised for {left:?}"
        );
    }

    /// A leader demoted for a switchover gives back the promises of its term it names; a
    /// promise of another term, of another leader, or one it does not name keeps running, and
    /// so does what is given back after a restart (the file is written first).
    #[test]
    fn a_leader_gives_back_only_the_promises_it_names_of_its_term() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("n2.failsafe");
        let f = Failsafe::persisted(file.clone(), Duration::from_secs(10));
        let confirm = |leader: &str, term: u64| {
            f.observe(false, Some((leader.into(), term)), Duration::from_secs(30));
            f.observe(true, None, Duration::from_secs(99));
            f.confirm(&FailsafeRequest {
                leader: leader.into(),
                term,
            })
            .unwrap()
        };
        let first = confirm("n1", 7);
        let second = confirm("n1", 7);
        assert_ne!(first.promise, second.promise);
        assert_eq!(first.promised, Duration::from_secs(30));
        let back = |leader: &str, term: u64, promises: Vec<u64>| {
            f.give_back(&PromisesReturned {
                leader: leader.into(),
                term,
                promises,
            })
            .unwrap()
        };
        assert_eq!(back("n1", 8, vec![first.promise]), 0, "another term");
        assert_eq!(back("n3", 7, vec![first.promise]), 0, "another leader");
        assert_eq!(back("n1", 7, vec![first.promise]), 1);
        assert!(f.promised_until().is_some(), "the second still runs");
        assert!(Failsafe::persisted(file.clone(), Duration::from_secs(10))
            .promised_until()
            .is_some());
        assert_eq!(back("n1", 7, vec![first.promise, second.promise]), 1);
        assert_eq!(f.promised_until(), None);
        assert_eq!(
            Failsafe::persisted(file, Duration::from_secs(10)).promised_until(),
            None,
            "given back before a restart"
        );
    }

    #[test]
    fn a_promise_survives_an_agent_restart_and_a_reboot() {
        let dir = std::env::temp_dir().join(format!("pgha-failsafe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("n2.failsafe");
        let f = Failsafe::persisted(file.clone(), Duration::from_secs(10));
        assert!(f.promised_until().is_none());
        f.observe(false, Some(("n1".into(), 7)), Duration::from_secs(30));
        f.observe(true, None, Duration::from_secs(99));
        f.confirm(&FailsafeRequest {
            leader: "n1".into(),
            term: 7,
        })
        .unwrap();
        drop(f);
        // A new agent process reads the promise back.
        let again = Failsafe::persisted(file.clone(), Duration::from_secs(10));
        let left = again
            .promised_until()
            .expect("promise kept across the restart")
            .saturating_duration_since(Instant::now());
        assert!(left > Duration::from_secs(25), "{left:?}");
        // From another boot its deadline means nothing, but the promise may still run: it
        // was written before the reboot and lasts its length from now at the most.
        std::fs::write(&file, "another-boot 99999999999 20000\n").unwrap();
        let left = Failsafe::persisted(file.clone(), Duration::from_secs(10))
            .promised_until()
            .expect("a promise from before a reboot is kept")
            .saturating_duration_since(Instant::now());
        assert!(left > Duration::from_secs(15), "{left:?}");
        // ... and one that had run out before it was written again is no promise.
        std::fs::write(&file, "another-boot 99999999999 0\n").unwrap();
        assert!(Failsafe::persisted(file, Duration::from_secs(10))
            .promised_until()
            .is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
