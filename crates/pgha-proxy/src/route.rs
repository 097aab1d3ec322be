//! Connect-time routing: backend choice, holding while there is none, revoking stale sessions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cancel::Owner;
use crate::metrics::ListenerMetrics;
use crate::stall::StallWatch;
use crate::targets::Targets;

/// Which sessions a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Read-write: the confirmed primary only.
    ReadWrite,
    /// Read-only: standbys within the lag bound, then (if allowed) the primary.
    ReadOnly,
}

impl Role {
    /// `rw` or `ro`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ReadWrite => "rw",
            Role::ReadOnly => "ro",
        }
    }
}

/// In which capacity a backend was chosen; a session stays valid while that capacity holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Served {
    /// Chosen as the primary.
    Primary,
    /// Chosen as a standby.
    Standby,
}

/// Routing options of one listener.
#[derive(Debug, Clone)]
pub struct RoutePolicy {
    /// Listener kind.
    pub role: Role,
    /// Read-only: maximum replay lag in bytes (`None`: any, unknown included).
    pub max_lag_bytes: Option<u64>,
    /// Read-only: use the primary when no standby qualifies.
    pub fallback_to_primary: bool,
}

struct Slot {
    id: u64,
    active: usize,
    token: CancellationToken,
}

type Key = (Arc<str>, Served);

/// Chooses backends for one listener and tracks its sessions per backend.
pub struct Router {
    policy: RoutePolicy,
    targets: watch::Receiver<Targets>,
    slots: Mutex<HashMap<Key, Slot>>,
    next_id: AtomicUsize,
    rotor: AtomicUsize,
    /// When set, the primary is a candidate only while this trusts its confirmation.
    stalls: OnceLock<Arc<StallWatch>>,
}

/// A session's claim on a backend: its address, and a token cancelled when the backend stops
/// being a valid target for this listener. Dropping it releases the claim.
pub struct Lease {
    router: Arc<Router>,
    key: Key,
    id: u64,
    name: Arc<str>,
    /// Cancelled on a leader change affecting this session.
    pub token: CancellationToken,
}

impl Lease {
    /// Backend address (`host:port`).
    pub fn addr(&self) -> &Arc<str> {
        &self.key.0
    }

    /// The backend's member name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it was chosen as the primary or as a standby.
    pub(crate) fn served(&self) -> Served {
        self.key.1
    }

    /// The backend, as the cancel registry keeps it with a session's key.
    pub(crate) fn owner(&self) -> Owner {
        Owner {
            addr: Arc::clone(&self.key.0),
            member: Arc::clone(&self.name),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut slots = self.router.slots.lock().expect("router poisoned");
        if let Some(slot) = slots.get_mut(&self.key) {
            if slot.id == self.id {
                slot.active -= 1;
                if slot.active == 0 {
                    slots.remove(&self.key);
                }
            }
        }
    }
}

impl Router {
    /// A router reading `targets`.
    pub fn new(policy: RoutePolicy, targets: watch::Receiver<Targets>) -> Arc<Self> {
        Arc::new(Router {
            policy,
            targets,
            slots: Mutex::new(HashMap::new()),
            next_id: AtomicUsize::new(1),
            rotor: AtomicUsize::new(0),
            stalls: OnceLock::new(),
        })
    }

    /// Routes new sessions to the primary only while `stalls` trusts the confirmations
    /// published before (set once, before the proxy runs).
    pub(crate) fn guard_stalls(&self, stalls: Arc<StallWatch>) {
        let _ = self.stalls.set(stalls);
    }

    /// A read-write session found the published primary in recovery: new sessions wait for a
    /// check begun after this (see [`StallWatch::met_a_standby`]), when the stalls are guarded.
    pub(crate) fn met_a_standby(&self) {
        if let Some(stalls) = self.stalls.get() {
            stalls.met_a_standby();
        }
    }

    /// A read-only session found a published standby out of recovery (promoted since its
    /// check): the prober checks every target again now, when the stalls are guarded.
    pub(crate) fn met_a_primary(&self) {
        if let Some(stalls) = self.stalls.get() {
            stalls.recheck_now();
        }
    }

    /// Whether the published primary may take a new session now.
    fn primary_trusted(&self) -> bool {
        self.stalls
            .get()
            .is_none_or(|s| s.trusts_confirmations(crate::stall::now_ms()))
    }

    /// Listener kind.
    pub fn role(&self) -> Role {
        self.policy.role
    }

    /// A fresh receiver of the targets.
    pub fn targets(&self) -> watch::Receiver<Targets> {
        self.targets.clone()
    }

    /// Backends new sessions may go to now, with their member names, in preference groups:
    /// standbys first (read-only), the primary otherwise.
    fn candidates(&self, t: &Targets) -> Vec<(Key, Arc<str>)> {
        let rw = t.rw.as_ref().map(|b| b.addr.as_str());
        let mut out = Vec::new();
        if self.policy.role == Role::ReadOnly {
            for s in &t.ro {
                let lag_ok = match (self.policy.max_lag_bytes, s.lag_bytes) {
                    (None, _) => true,
                    (Some(max), Some(lag)) => lag <= max,
                    (Some(_), None) => false,
                };
                if s.streaming && lag_ok && Some(s.backend.addr.as_str()) != rw {
                    let key = (Arc::from(s.backend.addr.as_str()), Served::Standby);
                    out.push((key, Arc::from(s.backend.name.as_str())));
                }
            }
            if !out.is_empty() || !self.policy.fallback_to_primary {
                return out;
            }
        }
        if let Some(b) = t.rw.as_ref().filter(|_| self.primary_trusted()) {
            let key = (Arc::from(b.addr.as_str()), Served::Primary);
            out.push((key, Arc::from(b.name.as_str())));
        }
        out
    }

    /// Whether a session on `key` may stay open under targets `t`.
    fn still_valid(&self, key: &Key, t: &Targets) -> bool {
        let rw = t.rw.as_ref().map(|b| b.addr.as_str());
        let unanswered = t.unanswered.as_ref().map(|b| b.addr.as_str());
        match key.1 {
            Served::Primary => {
                (Some(&*key.0) == rw || Some(&*key.0) == unanswered)
                    && (self.policy.role == Role::ReadWrite || self.policy.fallback_to_primary)
            }
            Served::Standby => {
                let unanswered = t.ro_unanswered.iter().any(|b| b.addr.as_str() == &*key.0);
                Some(&*key.0) != rw
                    && (t.ro.iter().any(|s| s.backend.addr.as_str() == &*key.0) || unanswered)
            }
        }
    }

    /// Picks the least-loaded candidate now, or `None` when there is none.
    pub fn try_pick(self: &Arc<Self>) -> Option<Lease> {
        let mut slots = self.slots.lock().expect("router poisoned");
        let cands = self.candidates(&self.targets.borrow());
        if cands.is_empty() {
            return None;
        }
        let load = |k: &Key| -> usize {
            slots
                .iter()
                .filter(|(key, _)| key.0 == k.0)
                .map(|(_, s)| s.active)
                .sum()
        };
        let start = self.rotor.fetch_add(1, Relaxed) % cands.len();
        let (key, name) = (0..cands.len())
            .map(|i| &cands[(start + i) % cands.len()])
            .min_by_key(|(k, _)| load(k))
            .expect("non-empty")
            .clone();
        let slot = slots.entry(key.clone()).or_insert_with(|| Slot {
            id: self.next_id.fetch_add(1, Relaxed) as u64,
            active: 0,
            token: CancellationToken::new(),
        });
        slot.active += 1;
        Some(Lease {
            router: Arc::clone(self),
            key,
            id: slot.id,
            name,
            token: slot.token.clone(),
        })
    }

    /// Closes the sessions whose backend is no longer valid under the current targets; returns
    /// how many sessions were told to close.
    pub fn enforce(&self) -> u64 {
        let mut slots = self.slots.lock().expect("router poisoned");
        let t = self.targets.borrow().clone();
        let mut closed = 0;
        slots.retain(|key, slot| {
            let keep = self.still_valid(key, &t);
            if !keep {
                slot.token.cancel();
                closed += slot.active as u64;
            }
            keep
        });
        closed
    }
}

/// How a hold ended without a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldFailure {
    /// No target (or none reachable) before the deadline.
    TimedOut,
    /// The proxy is shutting down.
    Shutdown,
}

/// Counts a session as held (gauge, total, time) from its first wait until it is dropped.
pub(crate) struct HoldMeter<'a> {
    metrics: &'a ListenerMetrics,
    since: Option<Instant>,
}

impl<'a> HoldMeter<'a> {
    /// A meter that has not started.
    pub(crate) fn new(metrics: &'a ListenerMetrics) -> Self {
        HoldMeter {
            metrics,
            since: None,
        }
    }

    /// Marks the session as waiting (once).
    pub(crate) fn start(&mut self) {
        if self.since.is_none() {
            self.since = Some(Instant::now());
            self.metrics.held.fetch_add(1, Relaxed);
            self.metrics.held_total.fetch_add(1, Relaxed);
        }
    }
}

impl Drop for HoldMeter<'_> {
    fn drop(&mut self) {
        if let Some(since) = self.since {
            self.metrics.held.fetch_sub(1, Relaxed);
            self.metrics.add_hold(since.elapsed());
        }
    }
}

/// Pause before trying again after a backend could not serve a new session.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// After a failed attempt at a backend: counts the session as held and waits [`RETRY_PAUSE`];
/// fails once `deadline` has passed, or on shutdown.
pub(crate) async fn pause_before_retry(
    deadline: Instant,
    shutdown: &CancellationToken,
    meter: &mut HoldMeter<'_>,
) -> Result<(), HoldFailure> {
    meter.start();
    if Instant::now() >= deadline {
        return Err(HoldFailure::TimedOut);
    }
    tokio::select! {
        _ = shutdown.cancelled() => Err(HoldFailure::Shutdown),
        _ = tokio::time::sleep_until((Instant::now() + RETRY_PAUSE).min(deadline)) => Ok(()),
    }
}

/// Picks a backend and connects to it, waiting — until `deadline` — for targets to appear or
/// change while there is no candidate or the chosen one refuses the connection (a primary that
/// just died, before its successor is confirmed). Waiting is counted by `meter`.
pub(crate) async fn connect_held(
    router: &Arc<Router>,
    deadline: Instant,
    connect_timeout: Duration,
    shutdown: &CancellationToken,
    meter: &mut HoldMeter<'_>,
) -> Result<(TcpStream, Lease), HoldFailure> {
    let mut rx = router.targets();
    loop {
        rx.borrow_and_update();
        let mut wait_for_change = true;
        if let Some(lease) = router.try_pick() {
            let attempt = deadline
                .saturating_duration_since(Instant::now())
                .min(connect_timeout);
            let connect = tokio::time::timeout(attempt, TcpStream::connect(&**lease.addr()));
            match connect.await {
                // Withdrawn while connecting: nothing was sent, the current target takes it.
                Ok(Ok(_)) if lease.token.is_cancelled() => continue,
                Ok(Ok(stream)) => return Ok((stream, lease)),
                Ok(Err(e)) => {
                    tracing::debug!(backend = %lease.addr(), error = %e, "backend connect failed");
                    // A refused connect usually means the target is going away: retry shortly
                    // even if the targets do not change (a restart on the same address).
                    wait_for_change = false;
                }
                Err(_) => {
                    tracing::debug!(backend = %lease.addr(), "backend connect timed out");
                    wait_for_change = false;
                }
            }
        }
        meter.start();
        if Instant::now() >= deadline {
            return Err(HoldFailure::TimedOut);
        }
        let retry_at = if wait_for_change {
            deadline
        } else {
            (Instant::now() + Duration::from_millis(100)).min(deadline)
        };
        tokio::select! {
            _ = shutdown.cancelled() => return Err(HoldFailure::Shutdown),
            changed = rx.changed() => {
                if changed.is_err() {
                    // Publisher gone: targets are frozen; retry at a slow pace until the deadline.
                    let next = (Instant::now() + Duration::from_millis(100)).min(deadline);
                    tokio::select! {
                        _ = shutdown.cancelled() => return Err(HoldFailure::Shutdown),
                        _ = tokio::time::sleep_until(next) => {}
                    }
                }
            }
            _ = tokio::time::sleep_until(retry_at) => {}
        }
    }
}
