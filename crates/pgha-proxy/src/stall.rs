//! Notices when this process stopped running for a while (SIGSTOP, a paused VM, a starved
//! runtime), or a read-write session met a standby: a primary confirmed before such an event
//! is not routed to after it until a check begun after it confirms the primary again (I2
//! holds across a pause of the proxy, and new sessions wait instead of being refused).

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How often the watch looks at the clock.
const TICK: Duration = Duration::from_millis(100);
/// A gap between two looks longer than this is a stall.
const STALL: Duration = Duration::from_millis(500);

/// Now on the boot clock (ms), which counts a suspend of the host, as the agents' fencing
/// does: a proxy whose host was suspended through a failover saw a stall, not a short tick.
pub fn now_ms() -> u64 {
    pgha_pg::lease_file::boot_clock_ms()
}

/// Stalls seen, and which of them a confirmation of the primary has covered since.
#[derive(Debug)]
pub struct StallWatch {
    /// When the clock was last looked at ([`now_ms`]).
    last_look_ms: AtomicU64,
    /// How many stalls were seen, and read-write sessions that met a standby.
    stalls: AtomicU64,
    /// The number of stalls a confirmation begun after them has covered.
    covered: AtomicU64,
    /// Asks the prober for a check now (a session met a standby where the primary was).
    recheck: Notify,
}

impl StallWatch {
    /// A watch that has seen no stall; [`StallWatch::run`] makes it look.
    pub fn new() -> Arc<Self> {
        Arc::new(StallWatch {
            last_look_ms: AtomicU64::new(now_ms()),
            stalls: AtomicU64::new(0),
            covered: AtomicU64::new(0),
            recheck: Notify::new(),
        })
    }

    /// Looks at the clock: a gap since the last look longer than `STALL` (0.5 s) counts a stall.
    /// Returns the gap when it was one. One caller looks (`run`; tests).
    pub fn look(&self, now_ms: u64) -> Option<Duration> {
        let last = self.last_look_ms.load(SeqCst);
        let gap = Duration::from_millis(now_ms.saturating_sub(last));
        let stalled = gap > STALL;
        if stalled {
            // Counted before the look is: a router that sees this look must see the stall.
            self.stalls.fetch_add(1, SeqCst);
        }
        self.last_look_ms.store(now_ms, SeqCst);
        stalled.then_some(gap)
    }

    /// Looks every `TICK` (100 ms) until `shutdown`, saying so when the process stalled.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        self.look(now_ms());
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
            if let Some(gap) = self.look(now_ms()) {
                tracing::warn!(
                    "the proxy did not run for {} ms (paused or starved): new read-write \
                     sessions wait until the primary is confirmed again",
                    gap.as_millis()
                );
            }
        }
    }

    /// A read-write session found the confirmed primary in recovery (it was demoted since):
    /// the confirmations made before are not trusted, as after a stall, so the next sessions
    /// wait for a check begun after this instead of meeting the standby too; the prober is
    /// asked for that check now.
    pub fn met_a_standby(&self) {
        self.stalls.fetch_add(1, SeqCst);
        self.recheck_now();
    }

    /// Asks the prober to check every target now rather than at the end of its interval (a
    /// read-only session found a standby promoted): the confirmations stay trusted.
    pub fn recheck_now(&self) {
        self.recheck.notify_one();
    }

    /// Returns when [`StallWatch::met_a_standby`] or [`StallWatch::recheck_now`] asks for a
    /// check (at once if one did since the last time this returned).
    pub async fn recheck_asked(&self) {
        self.recheck.notified().await;
    }

    /// What a check begun now must pass to [`StallWatch::confirmed`].
    pub fn epoch(&self) -> u64 {
        self.stalls.load(SeqCst)
    }

    /// A check begun at `epoch` confirmed the primary; whether that covered a stall (then
    /// sessions held meanwhile may go).
    pub fn confirmed(&self, epoch: u64) -> bool {
        self.covered.fetch_max(epoch, SeqCst) < epoch
    }

    /// Whether a primary confirmed by the last checks may be routed to at `now`: every stall
    /// seen has been covered by a check begun after it, and no stall is under way unseen (the
    /// clock was looked at within `STALL` (0.5 s): just after a resume, this runs before the watch
    /// has looked).
    pub fn trusts_confirmations(&self, now_ms: u64) -> bool {
        let looked_ms = self.last_look_ms.load(SeqCst);
        let unseen = now_ms.saturating_sub(looked_ms) > STALL.as_millis() as u64;
        !unseen && self.covered.load(SeqCst) >= self.stalls.load(SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_is_trusted_again_only_after_a_check_begun_after_it() {
        let w = StallWatch::new();
        let t0 = w.last_look_ms.load(SeqCst);
        let at = |ms: u64| t0 + ms;
        assert!(w.look(at(100)).is_none());
        assert!(w.trusts_confirmations(at(150)));
        // Paused: before the watch looks again, nothing is trusted.
        assert!(!w.trusts_confirmations(at(5_000)));
        let before = w.epoch();
        assert_eq!(w.look(at(5_000)), Some(Duration::from_millis(4_900)));
        assert!(!w.trusts_confirmations(at(5_010)));
        // A check begun before the stall was seen covers nothing.
        assert!(!w.confirmed(before));
        assert!(!w.trusts_confirmations(at(5_020)));
        // One begun after it does, once.
        assert!(w.confirmed(w.epoch()));
        assert!(!w.confirmed(w.epoch()));
        assert!(w.trusts_confirmations(at(5_030)));
        // Ticks within the bound are no stall.
        assert!(w.look(at(5_400)).is_none());
        assert!(w.trusts_confirmations(at(5_850)));
    }

    #[tokio::test]
    async fn a_session_that_met_a_standby_asks_for_a_check_and_is_trusted_again_after_it() {
        let w = StallWatch::new();
        let now = w.last_look_ms.load(SeqCst);
        assert!(w.look(now).is_none());
        let before = w.epoch();
        w.met_a_standby();
        assert!(!w.trusts_confirmations(now));
        // The prober, busy when it was asked, finds the request waiting.
        tokio::time::timeout(Duration::from_secs(1), w.recheck_asked())
            .await
            .expect("a check asked for");
        assert!(!w.confirmed(before), "a check begun before covers nothing");
        assert!(w.confirmed(w.epoch()));
        assert!(w.trusts_confirmations(now));
    }
}
