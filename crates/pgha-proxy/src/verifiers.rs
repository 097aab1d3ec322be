//! Roles' SCRAM verifiers, read from `pg_authid` over the proxy's own superuser connection to
//! the member a session goes to (over TLS verified by the member's name, as the prober
//! connects), cached briefly: bounded in entries and age, never logged. One connection per
//! member, opened by one login at a time; reads bounded in number; none tried for a moment
//! after one failed (logins are then relayed to PostgreSQL).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngCore;
use tokio::sync::Semaphore;
use tokio_postgres::Client;

use crate::error::ProbeError;
use crate::prober::{connect, ProberConfig};
use crate::scram::{b64, hmac, Key, Verifier};

/// How long a verifier read is used (a password changed meanwhile costs the client one
/// failed login, which makes the proxy read it again).
const MAX_AGE: Duration = Duration::from_secs(10);
/// Most (member, role) pairs remembered at once.
const MAX_ENTRIES: usize = 1024;
/// Iterations of a made-up verifier (PostgreSQL's default `scram_iterations`).
const MOCK_ITERATIONS: u32 = 4096;
/// Most verifier reads under way at once (more logins wait their turn).
const MAX_FETCHES: usize = 8;
/// How long no read is tried on a member after a connect or query failed there.
const BACKOFF: Duration = Duration::from_secs(1);
/// The query PgBouncer's auth_query runs, with the role as a parameter.
const QUERY: &str = "select rolpassword from pg_authid where rolname = $1";

/// What is known of one role on one member: its SCRAM verifier, or that it has none.
struct Cached {
    verifier: Option<Verifier>,
    at: Instant,
}

/// A lookup's answer.
pub(crate) struct Found {
    /// `None`: no such role, no password, or not a SCRAM verifier (md5).
    pub(crate) verifier: Option<Verifier>,
    /// From the cache rather than read now.
    pub(crate) cached: bool,
}

/// The verifier source of a proxy that authenticates its TLS clients itself.
pub(crate) struct Verifiers {
    superuser: ProberConfig,
    /// Random, for made-up salts that stay the same for a role.
    mock_secret: Key,
    max_age: Duration,
    max_entries: usize,
    cache: Mutex<HashMap<(String, String), Cached>>,
    /// One connection per member address, reused while open.
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    /// Bounds the reads under way.
    fetches: Semaphore,
    backoff: Duration,
}

/// A verifier read that was not made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum VerifierError {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    /// A connect or query failed on this member a moment ago.
    #[error("reading verifiers on {addr} failed less than {backoff:?} ago")]
    BackingOff { addr: String, backoff: Duration },
}

/// The proxy's connection to one member address: opened by one login at a time (the others
/// wait for it), not tried again for a while after a failure.
#[derive(Default)]
struct Slot {
    conn: tokio::sync::Mutex<Option<Arc<Client>>>,
    /// When a connect or query last failed.
    failed_at: Mutex<Option<Instant>>,
}

impl Slot {
    fn failed(&self) {
        *self.failed_at.lock().expect("verifier slot poisoned") = Some(Instant::now());
    }

    fn backing_off(&self, addr: &str, backoff: Duration) -> Result<(), VerifierError> {
        let failed_at = *self.failed_at.lock().expect("verifier slot poisoned");
        match failed_at.filter(|at| at.elapsed() < backoff) {
            Some(_) => Err(VerifierError::BackingOff {
                addr: addr.to_string(),
                backoff,
            }),
            None => Ok(()),
        }
    }
}

impl Verifiers {
    /// Reads verifiers as `superuser` (bounded by its `check_timeout`).
    pub(crate) fn new(superuser: ProberConfig) -> Verifiers {
        Verifiers {
            superuser,
            mock_secret: random_key(),
            max_age: MAX_AGE,
            max_entries: MAX_ENTRIES,
            cache: Mutex::default(),
            slots: Mutex::default(),
            fetches: Semaphore::new(MAX_FETCHES),
            backoff: BACKOFF,
        }
    }

    /// The verifier of `role` on `member` at `addr`: remembered, or read now.
    pub(crate) async fn get(
        &self,
        member: &str,
        addr: &str,
        role: &str,
    ) -> Result<Found, VerifierError> {
        if let Some(verifier) = self.cached(addr, role) {
            return Ok(Found {
                verifier,
                cached: true,
            });
        }
        let verifier = self.fetch(member, addr, role).await?;
        Ok(Found {
            verifier,
            cached: false,
        })
    }

    /// A verifier for a role that has none, that no proof matches: the same salt for the same
    /// role every time, as PostgreSQL's mock authentication does.
    pub(crate) fn mock(&self, role: &str) -> Verifier {
        let salt = hmac(&self.mock_secret, &[role.as_bytes()]);
        Verifier {
            iterations: MOCK_ITERATIONS,
            salt: b64(&salt[..16]),
            stored_key: random_key(),
            server_key: random_key(),
        }
    }

    /// Reads the verifier of `role` now, and remembers it.
    pub(crate) async fn fetch(
        &self,
        member: &str,
        addr: &str,
        role: &str,
    ) -> Result<Option<Verifier>, VerifierError> {
        let within = self.superuser.check_timeout;
        let slot = self.slot(addr);
        let work = async {
            let _turn = self.fetches.acquire().await.expect("never closed");
            slot.backing_off(addr, self.backoff)?;
            let (c, fresh) = self.open(&slot, member, addr, None).await?;
            match query(&c, addr, role).await {
                Ok(v) => Ok(v),
                // The connection broke since it was opened (member restarted, backend
                // terminated): once more on a new one.
                Err(_) if !fresh => {
                    let (c, _) = self.open(&slot, member, addr, Some(&c)).await?;
                    Ok(query(&c, addr, role).await?)
                }
                Err(e) => Err(e.into()),
            }
        };
        let verifier = match tokio::time::timeout(within, work).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                if !matches!(e, VerifierError::BackingOff { .. }) {
                    slot.failed();
                }
                return Err(e);
            }
            Err(_) => {
                slot.failed();
                let addr = addr.to_string();
                return Err(ProbeError::Timeout {
                    addr,
                    after: within,
                }
                .into());
            }
        };
        self.remember(addr, role, verifier.clone());
        Ok(verifier)
    }

    /// The slot of `addr`.
    fn slot(&self, addr: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().expect("verifier slots poisoned");
        Arc::clone(slots.entry(addr.to_string()).or_default())
    }

    /// The open connection of `slot` (unless it is `stale`), or a new one (true: new).
    async fn open(
        &self,
        slot: &Slot,
        member: &str,
        addr: &str,
        stale: Option<&Arc<Client>>,
    ) -> Result<(Arc<Client>, bool), VerifierError> {
        let mut conn = slot.conn.lock().await;
        let is_stale = |c: &Arc<Client>| stale.is_some_and(|s| Arc::ptr_eq(s, c));
        if let Some(c) = conn.as_ref().filter(|c| !c.is_closed() && !is_stale(c)) {
            return Ok((Arc::clone(c), false));
        }
        *conn = None;
        // Another login's connect may have failed while this one waited.
        slot.backing_off(addr, self.backoff)?;
        let c = connect(&self.superuser, member, addr, "pgha-proxy-auth").await?;
        let c = Arc::new(c);
        *conn = Some(Arc::clone(&c));
        Ok((c, true))
    }

    /// The remembered answer for `role` on `addr`, if young enough.
    fn cached(&self, addr: &str, role: &str) -> Option<Option<Verifier>> {
        let cache = self.cache.lock().expect("verifier cache poisoned");
        let entry = cache.get(&(addr.to_string(), role.to_string()))?;
        (entry.at.elapsed() < self.max_age).then(|| entry.verifier.clone())
    }

    /// Forgets what is remembered of `role` on `addr`.
    pub(crate) fn forget(&self, addr: &str, role: &str) {
        let mut cache = self.cache.lock().expect("verifier cache poisoned");
        cache.remove(&(addr.to_string(), role.to_string()));
    }

    /// Remembers an answer; when full, forgets the expired ones, then the oldest.
    fn remember(&self, addr: &str, role: &str, verifier: Option<Verifier>) {
        let mut cache = self.cache.lock().expect("verifier cache poisoned");
        let key = (addr.to_string(), role.to_string());
        if !cache.contains_key(&key) && cache.len() >= self.max_entries {
            cache.retain(|_, e| e.at.elapsed() < self.max_age);
            if cache.len() >= self.max_entries {
                let oldest = cache
                    .iter()
                    .min_by_key(|(_, e)| e.at)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    cache.remove(&k);
                }
            }
        }
        let at = Instant::now();
        cache.insert(key, Cached { verifier, at });
    }
}

fn random_key() -> Key {
    let mut key = Key::default();
    rand::rngs::OsRng.fill_bytes(&mut key);
    key
}

/// The role's verifier, if it has a SCRAM-SHA-256 one.
async fn query(client: &Client, addr: &str, role: &str) -> Result<Option<Verifier>, ProbeError> {
    let row = client
        .query_opt(QUERY, &[&role])
        .await
        .map_err(|source| ProbeError::Postgres {
            addr: addr.to_string(),
            source,
        })?;
    let text: Option<String> = row.and_then(|r| r.get(0));
    Ok(text.as_deref().and_then(Verifier::parse))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scram::tests::verifier_for;

    fn verifiers(max_entries: usize, max_age: Duration) -> Verifiers {
        Verifiers {
            max_age,
            max_entries,
            ..Verifiers::new(ProberConfig::new("postgres"))
        }
    }

    #[test]
    fn the_cache_is_bounded_in_entries_and_age() {
        let v = Verifier::parse(&verifier_for("pw", "c2FsdA==", 4096));
        let cache = verifiers(2, Duration::from_secs(60));
        cache.remember("a:1", "app", v.clone());
        std::thread::sleep(Duration::from_millis(2));
        cache.remember("a:1", "md5role", None);
        assert_eq!(cache.cached("a:1", "app"), Some(v.clone()));
        assert_eq!(cache.cached("a:1", "md5role"), Some(None));
        assert_eq!(cache.cached("b:1", "app"), None, "per member");
        cache.remember("a:1", "third", None);
        assert_eq!(cache.cache.lock().unwrap().len(), 2);
        assert_eq!(cache.cached("a:1", "app"), None, "the oldest went");
        cache.forget("a:1", "third");
        assert_eq!(cache.cached("a:1", "third"), None);
        let (a, b) = (cache.mock("ghost"), cache.mock("ghost"));
        assert_eq!((a.salt.as_str(), a.iterations), (b.salt.as_str(), 4096));
        assert_ne!(a.stored_key, b.stored_key);
        assert_ne!(cache.mock("other").salt, a.salt);
        let young = verifiers(2, Duration::ZERO);
        young.remember("a:1", "app", v);
        assert_eq!(young.cached("a:1", "app"), None, "expired");
    }

    #[tokio::test]
    async fn after_a_failed_connect_reads_back_off_for_a_while() {
        let v = verifiers(2, Duration::from_secs(60));
        let addr = "127.0.0.1:1";
        let first = v.fetch("n1", addr, "app").await;
        assert!(matches!(first, Err(VerifierError::Probe(_))), "{first:?}");
        let next = v.get("n1", addr, "other").await.err();
        assert!(
            matches!(next, Some(VerifierError::BackingOff { .. })),
            "{next:?}"
        );
        let later = Verifiers {
            backoff: Duration::ZERO,
            ..verifiers(2, Duration::from_secs(60))
        };
        assert!(matches!(
            later.fetch("n1", addr, "app").await,
            Err(VerifierError::Probe(_))
        ));
        assert!(matches!(
            later.fetch("n1", addr, "app").await,
            Err(VerifierError::Probe(_))
        ));
    }
}
