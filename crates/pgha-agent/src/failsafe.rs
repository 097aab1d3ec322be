//! Failsafe for store outages: while the store is unreachable, the leader asks every other
//! member (over its REST API) to confirm it; a member confirms only if it cannot reach the
//! store either, and then promises not to take the lease for a ttl. If all confirm, the
//! leader keeps its primary; a leader cut off from a store the others still reach gets no
//! confirmation and demotes in time (I1).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// REST path the leader posts to.
pub const FAILSAFE_PATH: &str = "/failsafe";
/// Each confirmation must arrive within this.
const ASK_TIMEOUT: Duration = Duration::from_millis(1000);

/// Body of POST /failsafe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailsafeRequest {
    /// The member asking to be confirmed as leader.
    pub leader: String,
}

/// What this member's agent and its REST API share about failsafe.
#[derive(Debug, Default)]
struct Inner {
    /// The agent's last store read failed.
    store_down: bool,
    /// The leader in the last view the agent read.
    last_leader: Option<String>,
    /// The lease ttl in force.
    ttl: Duration,
    /// This member confirmed a leader and must not take the lease before this instant.
    promised_until: Option<Instant>,
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
}

impl Failsafe {
    /// The agent records what its last store read said.
    pub fn observe(&self, store_down: bool, leader: Option<String>, ttl: Duration) {
        let mut s = self.0.lock().expect("failsafe lock");
        s.store_down = store_down;
        if !store_down {
            s.last_leader = leader;
            s.ttl = ttl;
        }
    }

    /// Handles a leader's request: confirm (and promise) or refuse.
    pub fn confirm(&self, request: &FailsafeRequest) -> Result<(), Refusal> {
        let mut s = self.0.lock().expect("failsafe lock");
        if !s.store_down {
            return Err(Refusal::StoreReachable);
        }
        if s.last_leader.as_deref() != Some(request.leader.as_str()) {
            return Err(Refusal::NotTheLeader {
                asked: request.leader.clone(),
                seen: s.last_leader.clone().unwrap_or_else(|| "none".into()),
            });
        }
        let until = Instant::now() + s.ttl;
        s.promised_until = Some(s.promised_until.map_or(until, |u| u.max(until)));
        Ok(())
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

/// Asks every member in `apis` (name → REST address) to confirm `leader`; true only if all
/// did. With no other member there is nobody who could take over: that counts as confirmed.
pub async fn ask_all(leader: &str, apis: BTreeMap<String, String>) -> bool {
    let asks = apis.into_iter().map(|(name, api)| {
        let leader = leader.to_string();
        tokio::task::spawn_blocking(move || {
            let agent = ureq::AgentBuilder::new().timeout(ASK_TIMEOUT).build();
            let result = agent
                .post(&format!("http://{api}{FAILSAFE_PATH}"))
                .send_json(FailsafeRequest {
                    leader: leader.clone(),
                });
            match result {
                Ok(_) => true,
                Err(e) => {
                    tracing::info!("{leader}: failsafe: {name} did not confirm ({e})");
                    false
                }
            }
        })
    });
    futures_all(asks).await
}

async fn futures_all(handles: impl Iterator<Item = tokio::task::JoinHandle<bool>>) -> bool {
    let mut all = true;
    for h in handles {
        all &= h.await.unwrap_or(false);
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirms_only_when_the_store_is_down_and_for_the_known_leader() {
        let f = Failsafe::default();
        f.observe(false, Some("n1".into()), Duration::from_secs(3));
        let ask = |l: &str| FailsafeRequest { leader: l.into() };
        assert_eq!(f.confirm(&ask("n1")), Err(Refusal::StoreReachable));
        f.observe(true, None, Duration::from_secs(99));
        assert!(matches!(
            f.confirm(&ask("n2")),
            Err(Refusal::NotTheLeader { .. })
        ));
        assert!(f.promised_until().is_none());
        f.confirm(&ask("n1")).unwrap();
        let until = f.promised_until().unwrap();
        assert!(
            until > Instant::now() + Duration::from_millis(2500),
            "promise lasts the ttl seen before the outage"
        );
    }
}
