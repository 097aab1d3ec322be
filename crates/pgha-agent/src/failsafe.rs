//! Failsafe for store outages: while the store is unreachable, the leader asks every other
//! member (over its REST API) to confirm it; a member confirms only if it cannot reach the
//! store either, and then promises not to take the lease for a ttl. If all confirm, the
//! leader keeps its primary; a leader cut off from a store the others still reach gets no
//! confirmation and demotes in time (I1).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

mod asks;
pub use asks::{ask_all, ask_until_confirmed, FailsafeAnswer, Round, ASK_AGAIN_AFTER};

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
    /// This member confirmed a leader and must not take the lease before this instant.
    promised_until: Option<Instant>,
    /// Where the promise is kept, so that a restarted agent still keeps it.
    file: Option<PathBuf>,
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
}

/// This boot's identity: a boot-clock instant means nothing after a reboot.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Writes "BOOT_ID DEADLINE_MS LENGTH_MS" (the deadline on the boot clock, and how long the
/// promise ran from when it was written) atomically.
fn write_promise(file: &Path, until: Instant) -> std::io::Result<()> {
    let left = until.saturating_duration_since(Instant::now()).as_millis() as u64;
    let deadline = pgha_pg::lease_file::boot_clock_ms() + left;
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(format!("{} {deadline} {left}\n", boot_id()).as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, file)
}

/// The promise kept in `file` that may still run. One written during this boot runs to its
/// deadline. One written before a reboot may still run: the leader it confirmed writes on it
/// as long as it lasts, whatever happened to this host, and a reboot can take less than a
/// ttl; it was written before the reboot, so it runs for its length from now at the most.
fn read_promise(file: &Path) -> Option<Instant> {
    let text = std::fs::read_to_string(file).ok()?;
    let mut fields = text.split_whitespace();
    let (boot, deadline) = (fields.next()?, fields.next()?.parse::<u64>().ok()?);
    let length = fields.next().and_then(|l| l.parse::<u64>().ok());
    let left = if boot == boot_id() {
        deadline.checked_sub(pgha_pg::lease_file::boot_clock_ms())?
    } else {
        // written by an agent older than the length in the file: nothing to go by
        length?
    };
    Some(Instant::now() + Duration::from_millis(left))
}

impl Failsafe {
    /// Failsafe state whose promises survive an agent restart or a reboot in `file`
    /// (root-owned, next to the member directory): see `read_promise` for what is in force.
    pub fn persisted(file: PathBuf) -> Self {
        let promised_until = read_promise(&file);
        if let Some(until) = promised_until {
            tracing::info!(
                "failsafe: a promise not to take the lease for {} ms more, made before a restart",
                until.saturating_duration_since(Instant::now()).as_millis()
            );
        }
        Failsafe(Arc::new(Mutex::new(Inner {
            promised_until,
            file: Some(file),
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
    /// which it returns) or refuse.
    pub fn confirm(&self, request: &FailsafeRequest) -> Result<Duration, Refusal> {
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
        let until = Instant::now() + s.ttl;
        let until = s.promised_until.map_or(until, |u| u.max(until));
        if let Some(file) = &s.file {
            // Kept before it is given: a confirmation the agent could forget is no promise.
            if let Err(e) = write_promise(file, until) {
                tracing::error!(
                    "failsafe: cannot keep the promise in {}: {e}",
                    file.display()
                );
                return Err(Refusal::CannotKeepPromise);
            }
        }
        s.promised_until = Some(until);
        Ok(s.ttl)
    }

    /// The promise in force, if any.
    pub fn promised_until(&self) -> Option<Instant> {
        self.0
            .lock()
            .expect("failsafe lock")
            .promised_until
            .filter(|u| *u > Instant::now())
    }
}

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

    #[test]
    fn a_promise_survives_an_agent_restart_and_a_reboot() {
        let dir = std::env::temp_dir().join(format!("pgha-failsafe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("n2.failsafe");
        let f = Failsafe::persisted(file.clone());
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
        let again = Failsafe::persisted(file.clone());
        let left = again
            .promised_until()
            .expect("promise kept across the restart")
            .saturating_duration_since(Instant::now());
        assert!(left > Duration::from_secs(25), "{left:?}");
        // From another boot its deadline means nothing, but the promise may still run: it
        // was written before the reboot and lasts its length from now at the most.
        std::fs::write(&file, "another-boot 99999999999 20000\n").unwrap();
        let left = Failsafe::persisted(file.clone())
            .promised_until()
            .expect("a promise from before a reboot is kept")
            .saturating_duration_since(Instant::now());
        assert!(left > Duration::from_secs(15), "{left:?}");
        // ... and one that had run out before it was written again is no promise.
        std::fs::write(&file, "another-boot 99999999999 0\n").unwrap();
        assert!(Failsafe::persisted(file).promised_until().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
