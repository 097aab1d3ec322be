//! Confirms routing targets by asking candidates `pg_is_in_recovery()` and their WAL position.
//!
//! It publishes [`Targets`] where `rw` is the lease holder only if it answered "not in recovery"
//! in this round: a failed or late answer means unknown, never "still primary" (the holder is
//! then `unanswered`: the sessions open to it stay, no new one goes there).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::error::ProbeError;
use crate::stall::StallWatch;
use crate::targets::{Backend, Standby, Targets};

mod check;
mod explain;
pub(crate) use check::connect;
use check::query;
pub use check::{ProbeResult, ProberConfig};
use explain::{FailingChecks, WriteRoute};

/// A cluster member the prober may check.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Member {
    /// Member name.
    pub name: String,
    /// PostgreSQL `host:port`.
    pub addr: String,
}

impl Member {
    /// Member `name` at `addr` (`host:port`).
    pub fn new(name: impl Into<String>, addr: impl Into<String>) -> Self {
        Member {
            name: name.into(),
            addr: addr.into(),
        }
    }
}

/// What the caller knows from the store: who holds the leader lease, and the other members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Candidates {
    /// The current lease holder, if any.
    pub leader: Option<Member>,
    /// Members expected to be standbys.
    pub standbys: Vec<Member>,
}

/// Checks candidates with one cached connection per member.
pub struct Prober {
    config: ProberConfig,
    clients: HashMap<String, Client>,
    /// The proxy's [`StallWatch`], told when a check begun after a stall confirms the primary.
    stalls: Option<Arc<StallWatch>>,
    /// The members whose last check failed (said when that begins and ends).
    failing: FailingChecks,
}

impl Prober {
    /// A prober with no connection yet.
    pub fn new(config: ProberConfig) -> Self {
        Prober {
            config,
            clients: HashMap::new(),
            stalls: None,
            failing: FailingChecks::default(),
        }
    }

    /// Tells `stalls` (the one the proxy's routers were given, [`crate::Proxy::guard_stalls`])
    /// when a check begun after a stall has confirmed the primary again.
    pub fn with_stalls(mut self, stalls: Arc<StallWatch>) -> Self {
        self.stalls = Some(stalls);
        self
    }

    /// Checks one member, reusing `client` when it is still open (retrying once on a fresh
    /// connection otherwise); the whole check is bounded by `check_timeout`.
    async fn check_one(
        config: ProberConfig,
        name: String,
        addr: String,
        client: Option<Client>,
    ) -> (String, Result<(ProbeResult, Client), ProbeError>) {
        let timeout = config.check_timeout;
        let work = async {
            if let Some(c) = client.filter(|c| !c.is_closed()) {
                if let Ok(r) = query(&c, &addr).await {
                    return Ok((r, c));
                }
            }
            let c = connect(&config, &name, &addr, "pgha-proxy-prober").await?;
            let r = query(&c, &addr).await?;
            Ok((r, c))
        };
        let res = match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(ProbeError::Timeout {
                addr: addr.clone(),
                after: timeout,
            }),
        };
        (addr, res)
    }

    /// Checks every member once, concurrently.
    pub async fn check_all(
        &mut self,
        members: &[&Member],
    ) -> HashMap<String, Result<ProbeResult, ProbeError>> {
        self.check_all_reporting(members, |_, _| {}).await
    }

    /// [`Prober::check_all`], handing each answer to `on_answer` as it comes in.
    async fn check_all_reporting(
        &mut self,
        members: &[&Member],
        mut on_answer: impl FnMut(&str, &Result<ProbeResult, ProbeError>),
    ) -> HashMap<String, Result<ProbeResult, ProbeError>> {
        let mut set = JoinSet::new();
        for m in members {
            let client = self.clients.remove(&m.addr);
            set.spawn(Self::check_one(
                self.config.clone(),
                m.name.clone(),
                m.addr.clone(),
                client,
            ));
        }
        let mut out = HashMap::new();
        while let Some(joined) = set.join_next().await {
            let Ok((addr, res)) = joined else { continue };
            let res = res.map(|(r, c)| {
                self.clients.insert(addr.clone(), c);
                r
            });
            on_answer(&addr, &res);
            out.insert(addr, res);
        }
        out
    }

    /// One round: the lease holder becomes `rw` only if it answered not-in-recovery now; standbys
    /// that answered in-recovery become `ro`, with lag measured against that primary (unknown
    /// without one). `generation` is left at 0 for the caller.
    pub async fn probe(&mut self, c: &Candidates) -> Targets {
        self.probe_reporting(c, |_, _| {}).await
    }

    /// [`Prober::probe`], handing what the lease holder's answer makes of `rw` and
    /// `unanswered` to `on_leader` as soon as it is in: the slowest standby (a hung one takes
    /// the whole `check_timeout`) delays no primary.
    async fn probe_reporting(
        &mut self,
        c: &Candidates,
        mut on_leader: impl FnMut(Option<Backend>, Option<Backend>),
    ) -> Targets {
        let members: Vec<&Member> = c.leader.iter().chain(c.standbys.iter()).collect();
        let as_primary = |m: &Member, answer: Option<&ProbeResult>| match answer {
            Some(r) if !r.in_recovery => Some((Backend::new(&m.name, &m.addr), r.lsn)),
            _ => None,
        };
        let silent = |m: &Member, res: Option<&Result<ProbeResult, ProbeError>>| match res {
            Some(Ok(_)) => None,
            _ => Some(Backend::new(&m.name, &m.addr)),
        };
        let results = self
            .check_all_reporting(&members, |addr, res| {
                if let Some(leader) = c.leader.as_ref().filter(|l| l.addr == addr) {
                    let rw = as_primary(leader, res.as_ref().ok()).map(|(b, _)| b);
                    on_leader(rw, silent(leader, Some(res)));
                }
            })
            .await;
        self.failing.note(&members, &results);
        let answer = |m: &Member| match results.get(&m.addr) {
            Some(Ok(r)) => Some(r.clone()),
            Some(Err(_)) | None => None,
        };
        let leader_answer = c.leader.as_ref().and_then(answer);
        let primary = c
            .leader
            .as_ref()
            .and_then(|m| as_primary(m, leader_answer.as_ref()));
        // With a lease holder named, a standby streams only if that holder, confirmed as the
        // primary, sends it WAL: one streaming from elsewhere (the demoted old primary, its
        // WAL past the new timeline's fork) would read as caught up, holding writes the
        // cluster does not have. With none named, its WAL receiver's status goes.
        let receivers = c.leader.as_ref().map(|_| match (&primary, leader_answer) {
            (Some(_), Some(r)) => r.receivers,
            _ => Vec::new(),
        });
        let ro = c
            .standbys
            .iter()
            .filter(|m| Some(&m.addr) != c.leader.as_ref().map(|l| &l.addr))
            .filter_map(|m| {
                let r = answer(m).filter(|r| r.in_recovery)?;
                let fed = receivers
                    .as_ref()
                    .is_none_or(|names| names.contains(&m.name));
                Some(Standby {
                    backend: Backend::new(&m.name, &m.addr),
                    lag_bytes: primary.as_ref().map(|(_, lsn)| lsn.saturating_sub(r.lsn)),
                    streaming: r.streaming && fed,
                })
            })
            .collect();
        let ro_unanswered = (c.standbys.iter())
            .filter(|m| Some(&m.addr) != c.leader.as_ref().map(|l| &l.addr))
            .filter_map(|m| silent(m, results.get(&m.addr)))
            .collect();
        Targets {
            rw: primary.map(|(b, _)| b),
            unanswered: c
                .leader
                .as_ref()
                .and_then(|m| silent(m, results.get(&m.addr))),
            ro,
            ro_unanswered,
            generation: 0,
        }
    }

    /// Probes every `interval`, and at once when the candidates change or the stall watch asks
    /// (a read-write session met a standby), publishing changed targets
    /// with a new generation. When the lease holder changes, `rw` is withdrawn immediately
    /// (the round under way is dropped), before the new one is confirmed; the holder's answer
    /// is published as soon as it is in, whatever the standbys take. Returns on shutdown, or
    /// when either channel closes (then with no target left: nothing feeds or reads it).
    pub async fn run(
        mut self,
        mut candidates: watch::Receiver<Candidates>,
        targets: watch::Sender<Targets>,
        shutdown: CancellationToken,
    ) {
        let mut generation = targets.borrow().generation;
        let publish = |mut t: Targets, generation: &mut u64| {
            targets.send_if_modified(|cur| {
                t.generation = cur.generation;
                if *cur == t {
                    return false;
                }
                *generation += 1;
                t.generation = *generation;
                *cur = t;
                true
            });
        };
        // The lease holder the published standbys were checked against.
        let mut checked_against: Option<String> = None;
        // Where read-write sessions go, as last said.
        let mut said: Option<WriteRoute> = None;
        loop {
            let cands = candidates.borrow_and_update().clone();
            let leader_addr = cands.leader.as_ref().map(|m| m.addr.clone());
            // A holder the store no longer names is withdrawn at once (unchanged targets are
            // not published again).
            let holds = |b: &Backend| Some(&b.addr) == leader_addr.as_ref();
            let mut t = targets.borrow().clone();
            t.rw = t.rw.filter(holds);
            t.unanswered = t.unanswered.filter(holds);
            // So is a standby it no longer lists (one taking the lease leaves the list): it
            // may be a primary before this round ends.
            t.ro.retain(|s| listed(&cands, &s.backend));
            t.ro_unanswered.retain(|b| listed(&cands, b));
            // Whom a standby streams from was judged against the holder of then: under a new
            // one, none counts as fed until a check against it says so.
            if checked_against != leader_addr {
                for s in &mut t.ro {
                    s.streaming = false;
                    s.lag_bytes = None;
                }
            }
            publish(t, &mut generation);
            let latest = candidates.clone();
            let stalls = self.stalls.clone();
            let epoch = stalls.as_ref().map(|w| w.epoch());
            let early = |rw: Option<Backend>, unanswered: Option<Backend>| {
                if latest.borrow().leader != cands.leader {
                    return; // about a leader the store no longer names
                }
                let confirmed = rw.is_some();
                let mut t = targets.borrow().clone();
                t.ro.retain(|s| listed(&cands, &s.backend) && Some(&s.backend) != rw.as_ref());
                (t.ro_unanswered).retain(|b| listed(&cands, b) && Some(b) != rw.as_ref());
                t.rw = rw;
                t.unanswered = unanswered;
                let route = WriteRoute::of(&cands, &t);
                publish(t, &mut generation);
                route.say_once(&mut said, generation);
                if let (Some(w), Some(epoch), true) = (&stalls, epoch, confirmed) {
                    if w.confirmed(epoch) {
                        // the same primary, trusted again: sessions held meanwhile may go
                        targets.send_modify(|_| {});
                    }
                }
            };
            let round = tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = leader_change(&mut candidates, &cands.leader) => match changed {
                    Ok(()) => continue,
                    Err(_) => None,
                },
                t = self.probe_reporting(&cands, early) => Some(t),
            };
            let Some(mut t) = round else {
                publish(Targets::none(), &mut generation);
                return;
            };
            let now = candidates.borrow().clone();
            if now.leader == cands.leader {
                // Standbys may have changed meanwhile: only those still listed.
                t.ro.retain(|s| listed(&now, &s.backend));
                t.ro_unanswered.retain(|b| listed(&now, b));
                let route = WriteRoute::of(&cands, &t);
                publish(t, &mut generation);
                route.say_once(&mut said, generation);
                checked_against = leader_addr;
            }
            if targets.is_closed() {
                return;
            }
            if now != cands {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = candidates.changed() => if r.is_err() {
                    publish(Targets::none(), &mut generation);
                    return;
                },
                _ = tokio::time::sleep(self.config.interval) => {}
                _ = recheck_asked(self.stalls.as_deref()) => {}
            }
        }
    }
}

/// Returns when `stalls` asks for a check now (a read-write session met a standby); never
/// without a watch.
async fn recheck_asked(stalls: Option<&StallWatch>) {
    match stalls {
        Some(w) => w.recheck_asked().await,
        None => std::future::pending().await,
    }
}

/// Whether `standby` is among the standbys `c` lists.
fn listed(c: &Candidates, standby: &Backend) -> bool {
    c.standbys.iter().any(|m| m.addr == standby.addr)
}

/// Waits until the candidates name a leader other than `leader` (`Err`: their sender is gone).
async fn leader_change(
    candidates: &mut watch::Receiver<Candidates>,
    leader: &Option<Member>,
) -> Result<(), watch::error::RecvError> {
    loop {
        candidates.changed().await?;
        if candidates.borrow().leader != *leader {
            return Ok(());
        }
    }
}
