//! A prober's run loop started for a test: the candidates it is fed, the targets it publishes.

#![allow(dead_code)] // each test binary uses part of it

use std::time::{Duration, Instant};

use pgha_proxy::{Backend, CancellationToken, Candidates, Member, Prober, ProberConfig, Targets};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The member a backend stands for.
pub fn member(b: Backend) -> Member {
    Member::new(b.name, b.addr)
}

/// [`Prober::run`] on `candidates`, a round every 100 ms, `check_timeout` per check.
pub struct ProberRun {
    pub candidates: watch::Sender<Candidates>,
    pub targets: watch::Receiver<Targets>,
    pub stop: CancellationToken,
    pub task: JoinHandle<()>,
}

impl ProberRun {
    pub fn start(candidates: Candidates, check_timeout: Duration) -> ProberRun {
        Self::start_as("postgres", candidates, check_timeout)
    }

    /// [`ProberRun::start`], checking as `user`.
    pub fn start_as(user: &str, candidates: Candidates, check_timeout: Duration) -> ProberRun {
        let (candidates, crx) = watch::channel(candidates);
        let (ttx, targets) = watch::channel(Targets::none());
        let stop = CancellationToken::new();
        let mut cfg = ProberConfig::new(user);
        cfg.interval = Duration::from_millis(100);
        cfg.check_timeout = check_timeout;
        let task = tokio::spawn(Prober::new(cfg).run(crx, ttx, stop.clone()));
        ProberRun {
            candidates,
            targets,
            stop,
            task,
        }
    }

    /// How long until published targets satisfy `ok` (`None`: not within `limit`).
    pub async fn within(
        &mut self,
        limit: Duration,
        ok: impl Fn(&Targets) -> bool,
    ) -> Option<Duration> {
        let started = Instant::now();
        let waited = tokio::time::timeout(limit, self.targets.wait_for(|t| ok(t))).await;
        waited.ok()?.ok()?;
        Some(started.elapsed())
    }
}
