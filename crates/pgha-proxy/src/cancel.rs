//! Cancel routing: the keys seen in BackendKeyData, and forwarding of CancelRequests.
//!
//! Choice: while a plaintext session starts, the proxy scans the backend's first messages up to
//! ReadyForQuery and records its BackendKeyData key (pid and a 4-byte secret in protocol 3.0,
//! up to 256 bytes from 3.2) with the backend address, before relaying the key to the client; a
//! CancelRequest carrying that key goes to that backend only. A CancelRequest may come alone, or
//! after an SSLRequest or GSSENCRequest the proxy answered 'N' (libpq 17 and newer open their
//! cancel connection with the session's sslmode): the backend that answered the SSLRequest was
//! chosen like any new session's, so it is let go and the key decides where the request goes.
//!
//! Sessions whose key the proxy cannot read (TLS passed through) are counted per backend. A
//! request whose key matches no session the proxy saw goes only to the backends holding such
//! sessions (PostgreSQL ignores it unless pid and secret both match), and nowhere when there are
//! none: it is counted in `cancels_unmatched` and dropped. Cancels sent inside TLS (libpq 17+'s
//! new API on a TLS session, after SSLRequest or by direct TLS) are not readable either: they
//! are relayed to the backend the listener chooses for a new connection — the primary on the
//! read-write listener, which owns every session there; on the read-only listener with several
//! eligible standbys it may be another standby than the session's, where PostgreSQL ignores it.
//! When the proxy terminates TLS (`ProxyConfig::tls`) it reads every session's key and every
//! cancel, so those route by key like plaintext ones, and it forwards them inside TLS to the
//! member that issued the key (its name kept with the key), which must prove that name; never
//! in plaintext, even when the member is no longer a target.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::error::ProxyError;
use crate::listener::ListenerCtx;
use crate::startup::CancelKey;

/// The backend a session was opened on: its address and member name (which its certificate
/// must carry when the proxy terminates TLS).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    pub addr: Arc<str>,
    pub member: Arc<str>,
}

impl Owner {
    pub fn new(member: &str, addr: &str) -> Owner {
        Owner {
            addr: Arc::from(addr),
            member: Arc::from(member),
        }
    }
}

#[derive(Debug, Default)]
struct Entries {
    /// Live session keys → the backend that issued them.
    keys: HashMap<CancelKey, Owner>,
    /// Backend → number of live sessions on it whose key the proxy could not read.
    unreadable: HashMap<Owner, usize>,
}

/// Live session keys → the backend that issued them; backends with unreadable keys.
#[derive(Debug, Default)]
pub struct CancelRegistry {
    entries: Mutex<Entries>,
}

/// Where a CancelRequest goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelRoute {
    /// The backend that issued the key.
    Owner(Owner),
    /// Key unknown: the backends holding sessions whose key the proxy could not read (TLS).
    Unreadable(Vec<Owner>),
    /// Key unknown and no session with an unreadable key: nowhere.
    Nowhere,
}

impl CancelRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().expect("cancel registry poisoned")
    }

    /// Records `key` for `owner`; the entry lives as long as the returned guard.
    pub fn register(self: &Arc<Self>, key: CancelKey, owner: Owner) -> CancelGuard {
        self.lock().keys.insert(key.clone(), owner);
        CancelGuard {
            registry: Arc::clone(self),
            entry: Entry::Key(key),
        }
    }

    /// Records a session on `owner` whose key the proxy cannot read, as long as the guard lives.
    pub fn register_unreadable(self: &Arc<Self>, owner: Owner) -> CancelGuard {
        *self.lock().unreadable.entry(owner.clone()).or_insert(0) += 1;
        CancelGuard {
            registry: Arc::clone(self),
            entry: Entry::Unreadable(owner),
        }
    }

    /// The backend that owns `key`, if the proxy saw it.
    pub fn lookup(&self, key: &CancelKey) -> Option<Owner> {
        self.lock().keys.get(key).cloned()
    }

    /// Where a CancelRequest with `key` must go.
    pub fn route(&self, key: &CancelKey) -> CancelRoute {
        let entries = self.lock();
        if let Some(owner) = entries.keys.get(key) {
            return CancelRoute::Owner(owner.clone());
        }
        let mut addrs: Vec<Owner> = entries.unreadable.keys().cloned().collect();
        if addrs.is_empty() {
            return CancelRoute::Nowhere;
        }
        addrs.sort();
        CancelRoute::Unreadable(addrs)
    }

    /// Number of sessions with a known key.
    pub fn len(&self) -> usize {
        self.lock().keys.len()
    }

    /// Whether no session key is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug)]
enum Entry {
    Key(CancelKey),
    Unreadable(Owner),
}

/// Removes a session's entry from its registry when the session ends.
#[derive(Debug)]
pub struct CancelGuard {
    registry: Arc<CancelRegistry>,
    entry: Entry,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        let Ok(mut entries) = self.registry.entries.lock() else {
            return;
        };
        match &self.entry {
            Entry::Key(key) => {
                entries.keys.remove(key);
            }
            Entry::Unreadable(addr) => {
                if let Some(n) = entries.unreadable.get_mut(addr) {
                    *n -= 1;
                    if *n == 0 {
                        entries.unreadable.remove(addr);
                    }
                }
            }
        }
    }
}

/// Forwards a CancelRequest to the backend that owns `key`; for a key the proxy never saw, only
/// to the backends holding sessions whose key it could not read (TLS), else nowhere. When the
/// proxy terminates TLS, inside TLS to the member that issued the key, only.
pub(crate) async fn cancel(ctx: &ListenerCtx, key: CancelKey) {
    ctx.metrics.cancels.fetch_add(1, Relaxed);
    let timeout = ctx.shared.config.connect_timeout;
    let owners = match ctx.shared.cancels.route(&key) {
        CancelRoute::Owner(owner) => vec![owner],
        CancelRoute::Unreadable(owners) => {
            ctx.metrics.cancels_unmatched.fetch_add(1, Relaxed);
            owners
        }
        CancelRoute::Nowhere => {
            ctx.metrics.cancels_unmatched.fetch_add(1, Relaxed);
            tracing::debug!(
                pid = key.pid,
                listener = ctx.router.role().as_str(),
                "cancel request for a session the proxy does not know: dropped"
            );
            Vec::new()
        }
    };
    for owner in owners {
        ctx.metrics.cancel_forwards.fetch_add(1, Relaxed);
        let (member, addr) = (&*owner.member, &*owner.addr);
        let sent = match &ctx.shared.terminator {
            Some(t) => Box::pin(t.forward_cancel(member, addr, &key, timeout)).await,
            None => forward_cancel(addr, &key, timeout)
                .await
                .map_err(ProxyError::Io),
        };
        if let Err(e) = sent {
            tracing::debug!(backend = %addr, member, error = %e, "cancel forward failed");
        }
    }
}

/// Sends a CancelRequest for `key` to `addr` (best effort, bounded by `timeout`).
pub async fn forward_cancel(addr: &str, key: &CancelKey, timeout: Duration) -> std::io::Result<()> {
    let send = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(&key.request()).await?;
        s.shutdown().await
    };
    tokio::time::timeout(timeout, send).await.map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::TimedOut, "cancel forward timed out")
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_routes_to_owner_unreadable_or_nowhere() {
        let at = |name: &str, port: u16| Owner::new(name, &format!("127.0.0.1:{port}"));
        let r = Arc::new(CancelRegistry::default());
        let key = CancelKey::new(1, &[2; 32]).unwrap();
        let g = r.register(key.clone(), at("n1", 1));
        // The member's name is kept with the key: a cancel is sent to the member that issued
        // it (inside TLS, verified by that name) even once it left the targets.
        assert_eq!(r.lookup(&key), Some(at("n1", 1)));
        assert_eq!(&*r.lookup(&key).unwrap().member, "n1");
        assert_eq!(r.route(&key), CancelRoute::Owner(at("n1", 1)));
        // Same pid, other secret (or a prefix of it): not the owner's key.
        let wrong = CancelKey::new(1, &[2; 31]).unwrap();
        assert_eq!(r.route(&wrong), CancelRoute::Nowhere);
        assert_eq!(r.route(&CancelKey::v3_0(1, 2)), CancelRoute::Nowhere);
        let t1 = r.register_unreadable(at("n2", 2));
        let t2 = r.register_unreadable(at("n2", 2));
        let t3 = r.register_unreadable(at("n3", 3));
        assert_eq!(
            r.route(&wrong),
            CancelRoute::Unreadable(vec![at("n2", 2), at("n3", 3)])
        );
        assert_eq!(r.route(&key), CancelRoute::Owner(at("n1", 1)));
        drop((t1, t3));
        assert_eq!(r.route(&wrong), CancelRoute::Unreadable(vec![at("n2", 2)]));
        drop(t2);
        assert_eq!(r.route(&wrong), CancelRoute::Nowhere);
        drop(g);
        assert!(r.lookup(&key).is_none());
        assert_eq!(r.route(&key), CancelRoute::Nowhere);
    }
}
